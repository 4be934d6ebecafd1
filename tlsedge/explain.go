package tlsedge

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/session"
	"github.com/tlsedge/tlsedge/upstream"
)

// Explain says what tlsedge would do with a request under cfg, without
// opening a socket or sending anything to a backend: the app its host and
// (normalised) path route to, whether a filter would answer it itself and
// with what, what its sticky cookie says, and which backend the balancer
// would choose, and why. It compiles cfg as `check` does (the local CA is
// not created); health is unknown offline, so every backend counts as up.
func Explain(cfg *config.Config, log *logrus.Logger, r *http.Request) ([]string, error) {
	snap, err := compile(cfg, compileDeps{log: log, registry: upstream.NewRegistry(), stickyKeys: offlineStickyKeys})
	if err != nil {
		return nil, err
	}
	defer snap.closePools()
	return snap.explain(r), nil
}

// Explain is Explain against the running instance: its configuration,
// its sticky keys, and the live state of its backends (health, admin
// state, weights, requests in flight), which the explaining snapshot
// shares through the registry. Nothing is sent to a backend.
func (s *Server) Explain(r *http.Request) ([]string, error) {
	running := s.snap.Load()
	d := compileDeps{log: s.opts.Log, registry: s.registry, stickyKeys: s.compileDeps().stickyKeys}
	snap, err := compile(running.cfg, d)
	if err != nil {
		return nil, err
	}
	defer snap.closePools()
	return snap.explain(r), nil
}

// offlineStickyKeys loads the sticky keys for check and explain: the file
// when it exists, else a key of the kind the first start would generate.
func offlineStickyKeys(path string) ([]session.Key, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return []session.Key{session.GenerateKey()}, nil
	}
	return session.LoadKeyFile(path)
}

// explain runs r through snap with every app's proxy step replaced by a
// report. snap must be private to the caller: the hooks are set on it.
func (snap *snapshot) explain(r *http.Request) []string {
	var lines []string
	say := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }
	reached := false
	for _, h := range snap.apps {
		h.explain = func(x *exchange, r *http.Request) {
			reached = true
			say("app       %s (hosts %s, path %s)", h.cfg.Name, strings.Join(h.cfg.Hosts, ", "), h.cfg.Path)
			say("filters   passed; the backend would see path %s", r.URL.Path)
			switch {
			case h.sticky == nil:
				say("sticky    off for this app")
			case x.hasTicket:
				say("sticky    cookie %s is valid: session pinned to backend %s", h.cfg.Sticky.CookieName(), x.ticket.BackendID)
			default:
				say("sticky    no valid %s cookie: a new session would be pinned to the backend chosen", h.cfg.Sticky.CookieName())
			}
			b, why := h.proxy.Explain(&x.target)
			if b == nil {
				say("backend   none: %s", why)
				return
			}
			say("backend   %s (%s): %s", b.ID(), b.Addr(), why)
		}
	}
	if r.TLS == nil {
		r.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, ServerName: hostOnly(r.Host)}
	}
	say("request   %s https://%s%s from %s", r.Method, r.Host, r.URL.RequestURI(), clientIP(r))
	path := routingPath(r)
	if h, res := snap.routes.match(r.Host, path); res == routeFound {
		say("route     %s -> app %s (routed on the normalised path %s)", r.Host, h.(*appHandler).cfg.Name, path)
	}
	w := &explainWriter{h: http.Header{}}
	snap.front.ServeHTTP(w, r)
	if !reached {
		reason := strings.TrimSpace(strings.SplitN(string(w.body), "\n", 2)[0])
		if strings.HasPrefix(reason, "<!doctype") || strings.HasPrefix(reason, "<!DOCTYPE") {
			reason = http.StatusText(w.status)
		}
		say("answer    tlsedge answers %d itself (%s); nothing reaches a backend", w.status, reason)
	}
	return lines
}

// explainWriter records what a filter answered.
type explainWriter struct {
	h      http.Header
	status int
	body   []byte
}

func (w *explainWriter) Header() http.Header { return w.h }
func (w *explainWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *explainWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if len(w.body) < 512 {
		w.body = append(w.body, p...)
	}
	return len(p), nil
}
