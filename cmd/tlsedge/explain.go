package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/tlsedge/tlsedge/admin"
	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/tlsedge"
)

// tlsedge explain URL [--method M] [--cookie C] [--header 'K: V']... [--from IP]
// with the usual configuration flags: what tlsedge would do with that
// request under that configuration (tlsedge.Explain).

type explainArgs struct {
	url, method, cookie, from string
	headers                   []string
}

// splitExplainArgs takes explain's own arguments out of args, leaving the
// configuration flags for the usual flag set.
func splitExplainArgs(args []string) (explainArgs, []string, error) {
	ex := explainArgs{method: http.MethodGet}
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(a, "=")
		take := func() (string, error) {
			if hasVal {
				return val, nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("%s needs a value", name)
			}
			i++
			return args[i], nil
		}
		var err error
		switch name {
		case "--method":
			ex.method, err = take()
		case "--cookie":
			ex.cookie, err = take()
		case "--from":
			ex.from, err = take()
		case "--header":
			var h string
			h, err = take()
			ex.headers = append(ex.headers, h)
		default:
			if ex.url == "" && (strings.HasPrefix(a, "https://") || strings.HasPrefix(a, "http://")) {
				ex.url = a
				continue
			}
			rest = append(rest, a)
		}
		if err != nil {
			return ex, nil, err
		}
	}
	if ex.url == "" {
		return ex, nil, errors.New("which request? give its URL, like: tlsedge explain https://shop.example.com/cart --app SPEC")
	}
	return ex, rest, nil
}

func runExplain(ctx context.Context, cfg *config.Config, ex explainArgs, stdout, stderr io.Writer) int {
	q := admin.ExplainRequest{URL: ex.url, Method: ex.method, Cookie: ex.cookie, Headers: ex.headers, From: ex.from}
	if _, err := q.Request(); err != nil {
		fmt.Fprintf(stderr, "tlsedge explain: %v\n", err)
		return exitUsage
	}
	var lines []string
	if len(cfg.Apps) == 0 && len(cfg.TCP) == 0 {
		// No configuration given: ask the running instance, which knows
		// its backends' health and admin state too.
		c, err := newAdminClient(cfg, false)
		if err != nil {
			fmt.Fprintf(stderr, "tlsedge explain: no app configured here, and %v\n", err)
			return exitUsage
		}
		var body struct {
			Lines []string `json:"lines"`
		}
		if err := c.post(ctx, "/api/explain", "application/json", mustJSON(q), &body); err != nil {
			fmt.Fprintf(stderr, "tlsedge explain: %v\n", err)
			return exitFailed
		}
		fmt.Fprintf(stdout, "(the running instance at %s, with its backends' live state)\n", cfg.Admin)
		lines = body.Lines
	} else {
		if err := cfg.Validate(); err != nil {
			fmt.Fprintf(stderr, "tlsedge: invalid configuration:\n%v\n", indent(err))
			return exitUsage
		}
		r, _ := q.Request() // checked above
		log := logrus.New()
		log.Out = io.Discard
		var err error
		if lines, err = tlsedge.Explain(cfg, log, r); err != nil {
			fmt.Fprintf(stderr, "tlsedge: %v\n", err)
			return exitUsage
		}
	}
	for _, l := range lines {
		fmt.Fprintln(stdout, l)
	}
	return exitOK
}

// mustJSON encodes a value that always encodes.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
