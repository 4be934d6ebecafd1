package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/tlsedge/tlsedge/certs/redisstore"
	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/logsink"
	"github.com/tlsedge/tlsedge/tlsedge"
)

// runServe validates, compiles, listens and serves until ctx ends.
func runServe(ctx context.Context, cfg *config.Config, reread func() (*config.Config, error), pidFile string, stdout, stderr io.Writer) int {
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "tlsedge: invalid configuration:\n%v\n", indent(err))
		return exitUsage
	}
	log := newLogger(cfg.Log, stderr)
	var sinks []logsink.Sink
	var processDropped func() uint64 // nil: stderr, which counts nothing
	if out := cfg.Log.Output; out != "" && out != "stderr" {
		sink, err := logsink.Open(out, logsink.Options{Facility: logsink.FacilityDaemon})
		if err != nil {
			fmt.Fprintf(stderr, "tlsedge: log.output: %v\n", err)
			return exitUsage
		}
		defer sink.Close()
		logsink.AttachLogrus(log, sink)
		sinks = append(sinks, sink)
		processDropped = sink.Dropped
	}
	redisstore.RouteClientLogs(log.WithField("component", "redis"))
	access, accessSink, err := openAccessLog(cfg.Log.AccessLog, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "tlsedge: log.access_log %q: %v\n", cfg.Log.AccessLog, err)
		return exitUsage
	}
	if accessSink != nil {
		defer accessSink.Close()
		sinks = append(sinks, accessSink)
	}
	var accessFormat *logsink.AccessFormat
	if f := cfg.Log.AccessFormat; f != "" && f != "text" && f != "json" {
		if accessFormat, err = logsink.CompileAccessFormat(f); err != nil {
			fmt.Fprintf(stderr, "tlsedge: log.access_format: %v\n", err)
			return exitUsage
		}
	}
	// SIGUSR1 reopens log files (logrotate).
	reopenCtx, stopReopen := context.WithCancel(ctx)
	defer stopReopen()
	go logsink.ReopenOnSignal(reopenCtx, syscall.SIGUSR1, sinks...)
	sys, err := systemdSockets()
	if err != nil {
		fmt.Fprintf(stderr, "tlsedge: %v\n", err)
		return exitFailed
	}
	up, err := newUpgrades(pidFile)
	if err != nil {
		fmt.Fprintf(stderr, "tlsedge: %v\n", err)
		return exitFailed
	}
	srv, err := tlsedge.New(cfg, tlsedge.Options{
		Log: log, AccessLog: access, Listen: up.listen(sys), Reread: reread, Version: versionString(),
		AccessJSON:        cfg.Log.AccessFormat == "json" || cfg.Log.AccessFormat == "" && cfg.Log.Format == "json",
		AccessFormat:      accessFormat,
		AccessLines:       accessSink != nil && isSyslog(cfg.Log.AccessLog),
		ProcessLogDropped: processDropped,
	})
	if err != nil {
		fmt.Fprintf(stderr, "tlsedge: %v\n", err)
		return exitUsage
	}
	if err := srv.Listen(); err != nil {
		fmt.Fprintf(stderr, "tlsedge: %v\n", err)
		return exitFailed
	}
	if left := sys.unused(); len(left) > 0 {
		log.WithField("sockets", left).Warn("socket activation: systemd passed sockets no listen address uses")
	}
	if err := up.ready(); err != nil {
		fmt.Fprintf(stderr, "tlsedge: %v\n", err)
		return exitFailed
	}
	ctx, stopUpgrades := up.run(ctx, log.WithField("component", "upgrade"))
	defer stopUpgrades()
	if stop, err := startProfiles(os.Getenv); err != nil {
		log.WithError(err).Warn("profiling not started")
	} else {
		defer stop()
	}
	stopHUP := reloadOnSignal(ctx, srv, reread, log.WithField("component", "reload"))
	defer stopHUP()
	if err := srv.Serve(ctx); err != nil {
		log.WithError(err).Error("server stopped")
		return exitFailed
	}
	return exitOK
}

// newLogger builds the process logger: text on a terminal, JSON otherwise,
// unless the configuration says which.
func newLogger(c config.Log, out io.Writer) *logrus.Logger {
	log := logrus.New()
	log.Out = out
	lvl, err := logrus.ParseLevel(c.Level)
	if err != nil {
		lvl = logrus.InfoLevel // Validate has rejected bad levels already
	}
	log.SetLevel(lvl)
	format := c.Format
	if format == "" {
		format = "json"
		if isTerminal(out) {
			format = "text"
		}
	}
	if format == "json" {
		log.Formatter = &logrus.JSONFormatter{}
	} else {
		log.Formatter = &logrus.TextFormatter{FullTimestamp: true}
	}
	return log
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// openAccessLog resolves the access_log setting to a writer.
func openAccessLog(where string, stdout io.Writer) (io.Writer, logsink.Sink, error) {
	switch where {
	case config.Off:
		return nil, nil, nil
	case "stdout", "":
		return stdout, nil, nil
	case "stderr":
		return os.Stderr, nil, nil
	}
	// Files (reopened on SIGUSR1) and syslog destinations, behind a queue
	// that drops rather than blocks.
	sink, err := logsink.Open(where, logsink.Options{Facility: logsink.FacilityLocal0})
	if err != nil {
		return nil, nil, err
	}
	return sink, sink, nil
}

// isSyslog says whether a log destination is a syslog one (one message
// per line).
func isSyslog(spec string) bool {
	return strings.HasPrefix(spec, "syslog://") || strings.HasPrefix(spec, "syslog+tcp://") || strings.HasPrefix(spec, "unixgram://")
}

// startProfiles writes a CPU profile to $TLSEDGE_CPUPROFILE and a heap
// profile to $TLSEDGE_MEMPROFILE when the process stops: how
// docs/performance.md's profiles are taken (bench/profile.sh).
func startProfiles(getenv func(string) string) (stop func(), err error) {
	cpu, mem := getenv("TLSEDGE_CPUPROFILE"), getenv("TLSEDGE_MEMPROFILE")
	var cpuFile *os.File
	if cpu != "" {
		if cpuFile, err = os.Create(cpu); err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(cpuFile); err != nil {
			cpuFile.Close()
			return nil, err
		}
	}
	return func() {
		if cpuFile != nil {
			pprof.StopCPUProfile()
			cpuFile.Close()
		}
		if mem != "" {
			if f, err := os.Create(mem); err == nil {
				pprof.Lookup("allocs").WriteTo(f, 0) //nolint:errcheck // best effort at exit
				f.Close()
			}
		}
	}, nil
}

// reloadOnSignal reloads the configuration on SIGHUP until ctx ends: the
// flags and file are read again; a bad configuration is logged with its
// error and the running one stays.
func reloadOnSignal(ctx context.Context, srv *tlsedge.Server, reread func() (*config.Config, error), log *logrus.Entry) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			cfg, err := reread()
			if err == nil {
				err = srv.Reload(cfg)
			}
			if err != nil {
				log.WithError(err).Error("reload refused; the running configuration stays")
			}
		}
	}()
	return func() { signal.Stop(hup); cancel(); <-done }
}
