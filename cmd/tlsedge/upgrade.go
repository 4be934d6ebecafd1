package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/sirupsen/logrus"
)

// Binary upgrade without a dropped connection, as nginx's USR2 and
// HAProxy's -x do: SIGUSR2 starts the binary at the same path (a new
// build, a new configuration) with the listening sockets handed over
// (cloudflare/tableflip: inherited file descriptors). The old process
// keeps serving until the new one has compiled its configuration and
// opened the inherited sockets; then it stops accepting and drains its
// requests, while the kernel queues new connections on the shared sockets
// for the new one. A new process that fails (bad configuration, crash)
// changes nothing: the old one goes on. The PID of the serving process is
// written to --pid-file, for `kill -USR2 $(cat FILE)` and systemd.
// Sockets are handed over by their configured address: two listeners
// configured on port 0 of the same host cannot be told apart.

// upgrades wraps a tableflip.Upgrader.
type upgrades struct {
	upg *tableflip.Upgrader
}

func newUpgrades(pidFile string) (*upgrades, error) {
	upg, err := tableflip.New(tableflip.Options{PIDFile: pidFile, UpgradeTimeout: time.Minute})
	if err != nil {
		return nil, fmt.Errorf("binary upgrades: %w", err)
	}
	return &upgrades{upg: upg}, nil
}

// listen opens a listening socket: one inherited from the old process
// at an upgrade, else one systemd passed, else a new one.
func (u *upgrades) listen(sys *activated) func(network, addr string) (net.Listener, error) {
	return func(network, addr string) (net.Listener, error) {
		return u.upg.ListenWithCallback(network, addr, func(network, addr string) (net.Listener, error) {
			if ln := sys.take(addr); ln != nil {
				return ln, nil
			}
			return net.Listen(network, addr)
		})
	}
}

// ready tells a parent process that this one serves, and records the PID.
func (u *upgrades) ready() error { return u.upg.Ready() }

// run upgrades on SIGUSR2 and returns a context that ends when this
// process must hand over (a new one is ready) or when ctx ends.
func (u *upgrades) run(ctx context.Context, log *logrus.Entry) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	usr2 := make(chan os.Signal, 1)
	signal.Notify(usr2, syscall.SIGUSR2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-u.upg.Exit():
				log.Info("a new process serves the listening sockets: draining this one")
				cancel()
				return
			case <-usr2:
				log.Info("binary upgrade: starting a new process with the listening sockets")
				if err := u.upg.Upgrade(); err != nil {
					log.WithError(err).Error("binary upgrade failed; this process goes on serving")
				}
			}
		}
	}()
	return ctx, func() {
		signal.Stop(usr2)
		cancel()
		<-done
		u.upg.Stop()
	}
}
