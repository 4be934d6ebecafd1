package tlsedge

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
// Open WebSocket and TCP-mode connections are never closed by a reload.
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
	s.snap.Store(snap)
	s.gate.settings.Store(settings)
	s.runner.stop()
	s.runner.start(snap)
	dropped := s.registry.Retain(snap.pools()...)
	// Requests still running on the old snapshot use its pools; close
	// their idle connections once those requests have had time to end.
	time.AfterFunc(shutdownGrace, old.closePools)
	s.logReload(old, snap, dropped)
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
	var diffs []string
	if old.Listen != cfg.Listen {
		diffs = append(diffs, fmt.Sprintf("listen %s -> %s", old.Listen, cfg.Listen))
	}
	if old.HTTPListen != cfg.HTTPListen {
		diffs = append(diffs, fmt.Sprintf("http_listen %s -> %s", old.HTTPListen, cfg.HTTPListen))
	}
	if (len(old.Apps) == 0) != (len(cfg.Apps) == 0) {
		diffs = append(diffs, "HTTPS listener on/off (apps added to or removed from a TCP-only configuration)")
	}
	if a, b := old.TCPListens(), cfg.TCPListens(); !slices.Equal(a, b) {
		diffs = append(diffs, fmt.Sprintf("TCP listeners %v -> %v", a, b))
	}
	if len(diffs) > 0 {
		return fmt.Errorf("reload cannot change listen addresses (%s): restart tlsedge, or upgrade it in place", strings.Join(diffs, "; "))
	}
	return nil
}

// logReload says what changed: apps added, removed or changed, and the
// backends that came and went.
func (s *Server) logReload(old, snap *snapshot, dropped int) {
	before := map[string]*config.App{}
	for i := range old.cfg.Apps {
		before[old.cfg.Apps[i].Name] = &old.cfg.Apps[i]
	}
	var added, removed, changed []string
	for i := range snap.cfg.Apps {
		a := &snap.cfg.Apps[i]
		b, ok := before[a.Name]
		switch {
		case !ok:
			added = append(added, a.Name)
		case fmt.Sprintf("%+v", *a) != fmt.Sprintf("%+v", *b):
			changed = append(changed, a.Name)
		}
		delete(before, a.Name)
	}
	for name := range before {
		removed = append(removed, name)
	}
	slices.Sort(removed)
	s.log.WithFields(logrus.Fields{
		"apps_added": added, "apps_removed": removed, "apps_changed": changed,
		"backends_dropped": dropped,
	}).Info("configuration reloaded")
}
