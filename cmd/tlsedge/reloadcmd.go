package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/tlsedge/tlsedge/config"
)

// tlsedge reload [--admin ADDR] [--admin-token-file FILE] [--config ...]:
// asks the running instance, through its admin API, to read its
// configuration again. A bad configuration is refused by the instance,
// which keeps the running one; the error is printed and the exit code
// is 1. (kill -HUP does the same without the API.)
func runReloadCmd(ctx context.Context, cfg *config.Config, stdout, stderr io.Writer) int {
	if cfg.Admin == config.Off {
		fmt.Fprintln(stderr, "tlsedge reload: the admin listener is off (--admin off); send SIGHUP to the process instead")
		return exitUsage
	}
	if cfg.AdminTokenFile == "" {
		fmt.Fprintln(stderr, "tlsedge reload: needs --admin-token-file (the instance's token for changes)")
		return exitUsage
	}
	b, err := os.ReadFile(cfg.AdminTokenFile)
	if err != nil {
		fmt.Fprintf(stderr, "tlsedge reload: %v\n", err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+cfg.Admin+"/api/reload", nil)
	if err != nil {
		fmt.Fprintf(stderr, "tlsedge reload: %v\n", err)
		return exitUsage
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(b)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "tlsedge reload: no instance answers at %s: %v\n", cfg.Admin, err)
		return exitFailed
	}
	defer resp.Body.Close()
	var body struct {
		Error      string `json:"error"`
		ConfigHash string `json:"config_hash"`
	}
	json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body) //nolint:errcheck // the status decides
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "tlsedge reload: refused (%d): %s\n", resp.StatusCode, body.Error)
		return exitFailed
	}
	fmt.Fprintf(stdout, "reloaded (configuration %s)\n", body.ConfigHash)
	return exitOK
}
