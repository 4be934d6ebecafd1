// Command tlsedge is a TLS-terminating edge gateway: HTTPS with automatic
// certificates in front of sticky pools of HTTP backends.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/tlsedge/tlsedge/certs"
	"github.com/tlsedge/tlsedge/config"
)

// Exit codes: 0 fine, 1 failed while running, 2 bad usage or configuration
// (nothing was started).
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

// version is set at build time with -ldflags "-X main.version=...";
// otherwise the module version or VCS revision is shown.
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(runMain(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// runMain dispatches to a subcommand and returns the exit code.
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 {
		switch args[0] {
		case "run", "demo", "check", "trust", "certs", "explain", "reload", "version", "help":
			cmd, args = args[0], args[1:]
		}
	}
	switch cmd {
	case "version":
		rsa := "RSA signatures: crypto/rsa"
		if certs.OpenSSLSigning {
			rsa = "RSA signatures: OpenSSL libcrypto"
		}
		fmt.Fprintln(stdout, "tlsedge", versionString(), "("+rsa+")")
		return exitOK
	case "help":
		var v flagValues
		printUsage(stdout, newFlagSet("tlsedge", &v))
		return exitOK
	case "demo":
		return runDemo(ctx, args, stdout, stderr)
	}
	var ex explainArgs
	var dryRun, diff, clusterCheck bool
	switch cmd {
	case "reload":
		dryRun, args = takeSwitch(args, "--dry-run")
	case "check":
		diff, args = takeSwitch(args, "--diff")
		clusterCheck, args = takeSwitch(args, "--cluster")
	case "explain":
		var err error
		if ex, args, err = splitExplainArgs(args); err != nil {
			fmt.Fprintf(stderr, "tlsedge explain: %v\n", err)
			return exitUsage
		}
	}
	var v flagValues
	fs := newFlagSet("tlsedge "+cmd, &v)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			printUsage(stdout, fs)
			return exitOK
		}
		fmt.Fprintf(stderr, "tlsedge: %v\nRun 'tlsedge --help' for usage.\n", err)
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tlsedge: unexpected argument %q (an app is given with --app)\nRun 'tlsedge --help' for usage.\n", fs.Arg(0))
		return exitUsage
	}
	getenv, uid := defaultEnv()
	cfg, err := loadConfig(fs, &v, getenv, uid)
	if err != nil {
		fmt.Fprintf(stderr, "tlsedge: %v\n", err)
		return exitUsage
	}
	switch cmd {
	case "check":
		if code := runCheck(cfg, !diff && !clusterCheck, stdout, stderr); code != exitOK || !diff && !clusterCheck {
			return code
		}
		if clusterCheck {
			return runCheckCluster(ctx, cfg, stdout, stderr)
		}
		return runCheckDiff(ctx, cfg, stdout, stderr)
	case "trust":
		return runTrust(cfg, stdout, stderr)
	case "certs":
		return runCerts(ctx, cfg, stdout, stderr, time.Now())
	case "explain":
		return runExplain(ctx, cfg, ex, stdout, stderr)
	case "reload":
		return runReloadCmd(ctx, cfg, dryRun, stdout, stderr)
	}
	// SIGHUP reads the configuration again from the same flags and file.
	reread := func() (*config.Config, error) {
		var v2 flagValues
		fs2 := newFlagSet("tlsedge "+cmd, &v2)
		fs2.SetOutput(io.Discard)
		if err := fs2.Parse(args); err != nil {
			return nil, err
		}
		return loadConfig(fs2, &v2, getenv, uid)
	}
	return runServe(ctx, cfg, reread, v.pidFile, stdout, stderr)
}

func versionString() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v + " " + bi.GoVersion
}
