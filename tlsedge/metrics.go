package tlsedge

import (
	"net/http"
	"time"

	"github.com/tlsedge/tlsedge/metrics"
	"github.com/tlsedge/tlsedge/upstream"
)

// Prometheus metrics (metrics package) fed by the server. Per-request
// recording goes through handles bound when a snapshot is compiled (an
// app's AppMetrics, a backend's BackendMetrics): no label lookup and no
// allocation per request. Gauges are read at scrape time from the
// running snapshot.

// appMetrics binds an app's handles.
type appMetrics struct {
	app      *metrics.AppMetrics
	backends map[string]*metrics.BackendMetrics // by backend id
}

func newAppMetrics(m *metrics.Metrics, h *appHandler) *appMetrics {
	am := &appMetrics{app: m.App(h.cfg.Name), backends: map[string]*metrics.BackendMetrics{}}
	for _, b := range h.cfg.Backends {
		am.backends[b.ID] = am.app.Backend(b.ID)
	}
	return am
}

// observe records a request the proxy handled.
func (am *appMetrics) observe(x *exchange, r *http.Request, total time.Duration) {
	if am == nil {
		return
	}
	var bm *metrics.BackendMetrics
	if x.target.Chosen != nil {
		bm = am.backends[x.target.Chosen.ID()]
	}
	var ttfb time.Duration
	if !x.headAt.IsZero() {
		ttfb = x.headAt.Sub(x.start)
	}
	am.app.ObserveRequest(r.Method, x.status, bm, total, ttfb)
	for i := 1; i < x.target.Attempts; i++ {
		am.app.Retry()
	}
	switch x.sticky {
	case stickyHit:
		am.app.StickyHit()
	case stickyRepin:
		am.app.StickyRepin()
	case stickyMiss:
		if x.app.sticky != nil {
			am.app.StickyMiss()
		}
	}
}

// ejected counts a backend passive health ejected.
func (am *appMetrics) ejected(b *upstream.Backend) {
	if am == nil {
		return
	}
	if bm := am.backends[b.ID()]; bm != nil {
		bm.Ejected()
	}
}

// refused records a request a filter answered, by its status.
func (am *appMetrics) refused(method string, status int, total time.Duration) {
	if am == nil {
		return
	}
	am.app.ObserveRequest(method, status, nil, total, 0)
	var reason metrics.RefusalReason
	switch status {
	case http.StatusForbidden:
		reason = metrics.RefusedACL
	case http.StatusTooManyRequests:
		reason = metrics.RefusedRateLimit
	case http.StatusMethodNotAllowed:
		reason = metrics.RefusedMethod
	case http.StatusRequestEntityTooLarge:
		reason = metrics.RefusedBodySize
	case http.StatusRequestURITooLong, http.StatusRequestHeaderFieldsTooLarge:
		reason = metrics.RefusedLimits
	case http.StatusBadRequest:
		reason = metrics.RefusedPath
	case http.StatusMisdirectedRequest:
		reason = metrics.RefusedClientCert
	default:
		return // an error page or other answer of tlsedge's own, counted above
	}
	am.app.Refused(reason)
}

// scrapeSources feeds the gauges from the running snapshot.
func (s *Server) scrapeSources() {
	m := s.metrics
	m.SetStateSource(func() []metrics.BackendState {
		snap := s.snap.Load()
		now := time.Now()
		var out []metrics.BackendState
		for _, h := range snap.apps {
			for _, b := range h.pool.Backends() {
				dials, reuses := h.pool.ConnStats(b)
				out = append(out, metrics.BackendState{App: h.cfg.Name, Backend: b.ID(), Up: b.Up(now),
					InFlight: b.InFlight(), Weight: h.pool.Weight(b), AdminState: b.AdminState().String(),
					ConnsNew: dials, ConnsReused: reuses})
			}
		}
		return out
	})
	m.SetQueueSource(func() []metrics.QueueState {
		var out []metrics.QueueState
		for _, h := range s.snap.Load().apps {
			if w, c := h.proxy.Queued(); c > 0 {
				out = append(out, metrics.QueueState{App: h.cfg.Name, Waiting: int64(w), Capacity: c})
			}
		}
		return out
	})
	m.SetCertSource(func() []metrics.CertState {
		var out []metrics.CertState
		for _, c := range s.snap.Load().certificates() {
			for _, n := range c.Names {
				out = append(out, metrics.CertState{Name: n, Issuer: c.Issuer, NotAfter: c.NotAfter})
			}
		}
		return out
	})
	m.SetLogSource(func() []metrics.LogSinkState {
		var out []metrics.LogSinkState
		if s.access != nil {
			out = append(out, metrics.LogSinkState{Sink: "access", Dropped: s.access.Dropped()})
		}
		if s.opts.ProcessLogDropped != nil {
			out = append(out, metrics.LogSinkState{Sink: "process", Dropped: s.processLogDropped()})
		}
		return out
	})
}

// processLogDropped is how many process-log lines its sink dropped; 0
// when the process log has no sink of its own (Options.ProcessLogDropped
// is nil).
func (s *Server) processLogDropped() uint64 {
	if s.opts.ProcessLogDropped == nil {
		return 0
	}
	return s.opts.ProcessLogDropped()
}
