package tlsedge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/upstream"
)

// A reload replaces the running snapshot with one compiled from a new
// configuration. Everything is validated and compiled first — routes,
// filters, certificates, pools — and only a snapshot that compiled
// completely is swapped in; a bad configuration leaves the running one
// untouched and its error is returned (and logged by the caller).
//
// Requests in flight finish on the snapshot they started with; new ones
// use the new one. Backend health, passive failure counts and latency
// live in the upstream.Registry, keyed by backend identity, so unchanged
// backends keep them; backends no longer configured are dropped from it.
// Idle keep-alive connections to the backends carry over too, for every
// app that keeps its name, backend_tls (and the files it names), protocol
// and upstream timeouts: the new pool adopts the old one's connections to
// the backends it keeps (same ID and address), and requests still on the
// old snapshot put theirs back for it. The old pools are closed after
// shutdownGrace, which closes only what nobody adopted. Open WebSocket
// and TCP-mode connections are never closed by a reload.
//
// What a reload cannot change, because sockets are already bound: the
// listen addresses (HTTPS, plain HTTP, TCP services). Such a change is
// refused with an error that says a restart (or a binary upgrade) is
// needed. The HTTP/2 server's idle and head timeouts also keep their
// start-up values; HTTP/1.1 and the handshake follow the new ones.

// ErrNotServing is returned by Reload before Serve has started.
var ErrNotServing = errors.New("tlsedge: reload before the server is serving")

// snapRunner owns the background work of the running snapshot.
type snapRunner struct {
	mu     sync.Mutex
	bg     context.Context // the server's background context; nil until Serve
	cancel context.CancelFunc
	done   chan struct{}
}

// start runs snap's background work (health checks, certificate
// watchers, ACME) until stop.
func (r *snapRunner) start(snap *snapshot) {
	ctx, cancel := context.WithCancel(r.bg)
	done := make(chan struct{})
	go func() { defer close(done); snap.run(ctx) }()
	r.cancel, r.done = cancel, done
}

// stop ends the running snapshot's background work and waits for it.
func (r *snapRunner) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	<-r.done
	r.cancel, r.done = nil, nil
}

// Reload validates cfg (normalized), compiles it completely and, if all
// is well, makes it the running configuration. On any error the running
// configuration stays and the error says what is wrong.
func (s *Server) Reload(cfg *config.Config) error {
	s.runner.mu.Lock()
	defer s.runner.mu.Unlock()
	if s.runner.bg == nil {
		return ErrNotServing
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	old := s.snap.Load()
	if err := sameListeners(old.cfg, cfg); err != nil {
		return err
	}
	settings, err := newGateSettings(&cfg.Frontend)
	if err != nil {
		return err
	}
	snap, err := compile(cfg, s.compileDeps())
	if err != nil {
		return err
	}
	// Nothing fails from here on: connections are handed over only to a
	// snapshot that will run.
	kept := snap.adoptPools(old)
	s.snap.Store(snap)
	s.applyStickyKeys(snap) // in case the cluster's keys changed while it compiled
	s.gate.settings.Store(settings)
	s.runner.stop()
	s.runner.start(snap)
	dropped := s.registry.Retain(snap.pools()...)
	// Requests still running on the old snapshot use its pools; close
	// the idle connections the new pools did not adopt once those
	// requests have had time to end.
	time.AfterFunc(shutdownGrace, old.closePools)
	s.logReload(old, snap, dropped, kept)
	return nil
}

// pools are every pool of the snapshot: apps' and TCP services'.
func (snap *snapshot) pools() []*upstream.Pool {
	var out []*upstream.Pool
	for _, a := range snap.apps {
		out = append(out, a.pool)
	}
	for _, t := range snap.tcpServices {
		out = append(out, t.pool)
	}
	return out
}

func (snap *snapshot) closePools() {
	for _, p := range snap.pools() {
		p.Close()
	}
}

// sameListeners refuses a reload that would need other sockets.
func sameListeners(old, cfg *config.Config) error {
	if diffs := config.ListenerChanges(old, cfg); len(diffs) > 0 {
		return fmt.Errorf("reload cannot change listen addresses (%s): restart tlsedge, or upgrade it in place", strings.Join(diffs, "; "))
	}
	return nil
}

// logReload says what changed: apps added, removed or changed, the
// backends that came and went, and for how many backends the idle
// connections carried over.
func (s *Server) logReload(old, snap *snapshot, dropped, kept int) {
	d := config.Compare(old.cfg, snap.cfg)
	changed := make([]string, len(d.AppsChanged))
	for i, c := range d.AppsChanged {
		changed[i] = c.Name + " (" + strings.Join(c.Fields, ", ") + ")"
	}
	s.log.WithFields(logrus.Fields{
		"apps_added": d.AppsAdded, "apps_removed": d.AppsRemoved, "apps_changed": changed,
		"backends_dropped": dropped, "backends_conns_kept": kept,
	}).Info("configuration reloaded")
}
