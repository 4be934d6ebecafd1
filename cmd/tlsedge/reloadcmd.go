package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/tlsedge/tlsedge/config"
)

// The subcommands that talk to a running instance through its admin API:
// reload, reload --dry-run, check --diff, and explain without a
// configuration of its own.

// adminClient calls the admin API of the instance cfg describes.
type adminClient struct {
	addr  string
	token string // empty: only read-only calls
}

// newAdminClient checks that the instance has an admin listener and, with
// needToken, reads the token file. Its errors are usage errors.
func newAdminClient(cfg *config.Config, needToken bool) (*adminClient, error) {
	if cfg.Admin == config.Off {
		return nil, errors.New("the admin listener is off (--admin off)")
	}
	c := &adminClient{addr: cfg.Admin}
	if !needToken {
		return c, nil
	}
	if cfg.AdminTokenFile == "" {
		return nil, errors.New("needs --admin-token-file (the instance's token for changes)")
	}
	b, err := os.ReadFile(cfg.AdminTokenFile)
	if err != nil {
		return nil, err
	}
	c.token = strings.TrimSpace(string(b))
	return c, nil
}

// post sends body to path and decodes a JSON answer into out. A refusal
// is an error carrying the instance's message.
func (c *adminClient) post(ctx context.Context, path, contentType string, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.addr+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("no instance answers at %s: %w", c.addr, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("reading the answer of %s: %w", c.addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(raw))
		}
		return fmt.Errorf("refused (%d): %s", resp.StatusCode, e.Error)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("the answer of %s is not what tlsedge sends: %w", c.addr, err)
	}
	return nil
}

// tlsedge reload [--dry-run] [--admin ADDR] [--admin-token-file FILE]:
// asks the running instance, through its admin API, to read its
// configuration again. A bad configuration is refused by the instance,
// which keeps the running one; the error is printed and the exit code
// is 1. (kill -HUP does the same without the API.) With --dry-run the
// instance reads and compiles it, and says what a reload would change.
func runReloadCmd(ctx context.Context, cfg *config.Config, dryRun bool, stdout, stderr io.Writer) int {
	c, err := newAdminClient(cfg, true)
	if err != nil {
		fmt.Fprintf(stderr, "tlsedge reload: %v\n", err)
		if cfg.Admin == config.Off {
			fmt.Fprintln(stderr, "(send SIGHUP to the process instead)")
		}
		return exitUsage
	}
	if dryRun {
		return printPlan(ctx, c, nil, "tlsedge reload --dry-run", stdout, stderr)
	}
	var body struct {
		ConfigHash string `json:"config_hash"`
	}
	if err := c.post(ctx, "/api/reload", "application/json", nil, &body); err != nil {
		fmt.Fprintf(stderr, "tlsedge reload: %v\n", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "reloaded (configuration %s)\n", body.ConfigHash)
	return exitOK
}

// printPlan asks the instance what replacing its configuration with cfg
// (YAML; nil: its own, read again) would change, and prints it.
func printPlan(ctx context.Context, c *adminClient, cfg []byte, who string, stdout, stderr io.Writer) int {
	var plan struct {
		Lines      []string `json:"lines"`
		ConfigHash string   `json:"config_hash"`
	}
	if err := c.post(ctx, "/api/plan", "application/yaml", cfg, &plan); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", who, err)
		return exitFailed
	}
	if len(plan.Lines) == 0 {
		fmt.Fprintf(stdout, "no changes (configuration %s)\n", plan.ConfigHash)
		return exitOK
	}
	for _, l := range plan.Lines {
		fmt.Fprintln(stdout, l)
	}
	fmt.Fprintf(stdout, "%d change(s); nothing was applied (configuration %s)\n", len(plan.Lines), plan.ConfigHash)
	return exitOK
}

// takeSwitch removes a boolean switch of one subcommand from args.
func takeSwitch(args []string, name string) (bool, []string) {
	found := false
	var rest []string
	for _, a := range args {
		if a == name || a == name+"=true" {
			found = true
			continue
		}
		rest = append(rest, a)
	}
	return found, rest
}
