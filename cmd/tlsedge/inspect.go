package main

// The subcommands that look without serving: check and trust.

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/tlsedge/tlsedge/certs"
	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/tlsedge"
)

// runCheck validates the configuration completely (certificate files and
// keys included), prints the effective configuration on stdout and a
// summary on stderr. It starts nothing and writes nothing.
func runCheck(cfg *config.Config, printConfig bool, stdout, stderr io.Writer) int {
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "tlsedge: invalid configuration:\n%v\n", indent(err))
		return exitUsage
	}
	log := logrus.New()
	log.Out = io.Discard
	report, err := tlsedge.Check(cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "tlsedge: invalid configuration:\n%v\n", indent(err))
		return exitUsage
	}
	if printConfig {
		out, err := cfg.Marshal()
		if err != nil {
			fmt.Fprintf(stderr, "tlsedge: %v\n", err)
			return exitFailed
		}
		fmt.Fprintf(stdout, "# effective configuration\n%s", out)
	}
	for _, line := range report {
		fmt.Fprintf(stderr, "%s\n", line)
	}
	fmt.Fprintf(stderr, "configuration OK: %d app(s)\n", len(cfg.Apps))
	return exitOK
}

// runCheckDiff prints what replacing the running instance's configuration
// with cfg (already checked) would change: tlsedge check --diff.
func runCheckDiff(ctx context.Context, cfg *config.Config, stdout, stderr io.Writer) int {
	c, err := newAdminClient(cfg, true)
	if err != nil {
		fmt.Fprintf(stderr, "tlsedge check --diff: %v\n", err)
		return exitUsage
	}
	out, err := cfg.Marshal()
	if err != nil {
		fmt.Fprintf(stderr, "tlsedge check --diff: %v\n", err)
		return exitFailed
	}
	return printPlan(ctx, c, out, "tlsedge check --diff", stdout, stderr)
}

// indent puts every line of a (joined) error under a dash.
func indent(err error) string {
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		lines[i] = "  - " + l
	}
	return strings.Join(lines, "\n")
}

// runTrust prints where the local CA's root is and how to make clients
// trust it, creating the CA first if this state dir has none yet.
func runTrust(cfg *config.Config, stdout, stderr io.Writer) int {
	log := logrus.New()
	log.Out = stderr
	ca, err := certs.NewLocalCA(certs.LocalCAConfig{Dir: filepath.Join(cfg.StateDir, "ca"), Log: log.WithField("component", "localca")})
	if err != nil {
		fmt.Fprintf(stderr, "tlsedge: local CA: %v\n", err)
		return exitFailed
	}
	fmt.Fprint(stdout, ca.TrustInstructions())
	return exitOK
}
