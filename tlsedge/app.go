package tlsedge

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/filter"
	"github.com/tlsedge/tlsedge/session"
	"github.com/tlsedge/tlsedge/upstream"

	"github.com/tlsedge/tlsedge/httpsyntax"
)

// appHandler serves one app: sticky affinity, then the upstream proxy,
// then the access log. Everything it needs is computed in newAppHandler;
// ServeHTTP only looks things up.
type appHandler struct {
	cfg     *config.App
	chain   http.Handler // the filters in front of serve
	pool    *upstream.Pool
	proxy   *upstream.Proxy
	health  *upstream.HealthConfig // nil without active checks
	key     session.AffinityKey    // nil unless balance=hash
	sticky  *stickyCodec           // nil when the app is not sticky
	access  *accessLog
	metrics *appMetrics // nil without metrics
	// explain, set only in snapshots compiled by Explain, replaces the
	// proxy: the decision is described, nothing is sent.
	explain func(x *exchange, r *http.Request)
	log     *logrus.Entry
	now     func() time.Time
	// realClock: now is time.Now, so its readings and the proxy's can
	// be shared (upstream.Target's Start and HeadAt).
	realClock bool
}

func newAppHandler(app *config.App, cfg *config.Config, keys []session.Key, d compileDeps, fd appFilters) (*appHandler, error) {
	log := d.log.WithField("app", app.Name)
	var h *appHandler
	pool, proxy, err := newPoolAndProxy(app, cfg, d.registry, log, func(b *upstream.Backend) { h.metrics.ejected(b) })
	if err != nil {
		return nil, err
	}
	now := d.now
	if now == nil {
		now = time.Now
	}
	h = &appHandler{cfg: app, pool: pool, proxy: proxy, access: d.access, log: log, now: now, realClock: d.now == nil}
	if h.health, err = healthConfig(app, pool.Config().TLS); err != nil {
		return nil, err
	}
	if app.Hash != "" {
		src, err := config.ParseHash(app.Hash)
		if err != nil {
			return nil, err
		}
		if h.key, err = session.NewAffinityKey(src.Kind, src.Name); err != nil {
			return nil, err
		}
	}
	if h.chain, err = filterChain(app, http.HandlerFunc(h.serve), fd); err != nil {
		return nil, err
	}
	if app.Sticky != nil {
		sc := session.Config{
			Name:   app.Sticky.CookieName(),
			MaxAge: app.StickyMaxAge.D(),
			Idle:   app.StickyIdle.D(),
			Now:    d.now,
		}
		rekey := func(keys []session.Key) (*session.Codec, error) {
			c := sc
			c.Keys = keys
			return session.New(c)
		}
		codec, err := rekey(keys)
		if err != nil {
			return nil, fmt.Errorf("sticky: %w", err)
		}
		ids := make([]string, 0, len(app.Backends))
		for _, b := range app.Backends {
			ids = append(ids, b.ID)
		}
		h.sticky = newStickyCodec(app.Sticky.CookieName(), codec, ids)
		h.sticky.rekey = rekey
	}
	return h, nil
}

// ServeHTTP runs the app's chain. A request a filter answered itself
// (403, 405, 413, 429, ...) never reaches serve, which writes the access
// log line: the refusalWriter the server put under w (or one of our own)
// records its status and size, so that it is logged too, once.
func (a *appHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.access == nil && a.metrics == nil {
		a.chain.ServeHTTP(w, r)
		return
	}
	rw, shared := w.(*refusalWriter)
	if !shared {
		rw = newRefusalWriter(w, a.now())
	}
	a.chain.ServeHTTP(rw, r)
	if !rw.logged {
		a.logRefusal(rw, r)
		rw.logged = true
	}
	if !shared {
		rw.release()
	}
}

// serve is the app behind its filters: sticky affinity, the proxy, the
// access log.
func (a *appHandler) serve(w http.ResponseWriter, r *http.Request) {
	start := markServed(w)
	if start.IsZero() || !a.realClock {
		start = a.now()
	}
	x := exchangePool.Get().(*exchange)
	*x = exchange{w: w, app: a, start: start}
	if a.realClock {
		x.target.Start = start
	}
	if a.sticky != nil {
		x.readCookie(r)
	}
	if a.key != nil {
		if k, ok := a.key(r); ok {
			x.target.Key, x.target.HasKey = upstream.HashKey(k), true
		}
	}
	if a.explain != nil {
		a.explain(x, r)
		return
	}
	a.proxy.Serve(x, r, &x.target)
	if a.metrics != nil || a.access != nil {
		end := a.now() // one reading for both
		if a.metrics != nil {
			a.metrics.observe(x, r, end.Sub(x.start))
		}
		if a.access != nil {
			a.logAccess(x, r, end)
		}
	}
	x.release()
}

// release returns x to its pool.
func (x *exchange) release() {
	// Recycled only after a normal return (an aborted response panics
	// through serve): the proxy has returned, and neither the access log
	// nor the metrics keep x.
	*x = exchange{}
	exchangePool.Put(x)
}

// exchangePool saves the per-request allocation of an exchange, which
// escapes as the proxy's ResponseWriter.
var exchangePool = sync.Pool{New: func() any { return new(exchange) }}

func (a *appHandler) logAccess(x *exchange, r *http.Request, end time.Time) {
	e := accessEntry{
		Time:     x.start,
		ClientIP: clientIP(r),
		Method:   r.Method,
		Host:     r.Host,
		Path:     r.URL.Path,
		Status:   x.status,
		Bytes:    x.bytes,
		Duration: end.Sub(x.start),
		App:      a.cfg.Name,
		Sticky:   x.sticky,
	}
	if id := r.Header[filter.RequestIDHeader]; len(id) > 0 {
		e.RequestID = id[0]
	}
	if a.access.custom != nil {
		// Only the configurable formats (common, combined, ...) print
		// these; the text and json lines save two header lookups.
		e.Proto = r.Proto
		if v := r.Header["Referer"]; len(v) > 0 {
			e.Referer = v[0]
		}
		if v := r.Header["User-Agent"]; len(v) > 0 {
			e.UserAgent = v[0]
		}
	}
	if e.Status == 0 {
		// A hijacked (upgraded) connection never calls WriteHeader.
		e.Status = http.StatusSwitchingProtocols
	}
	if x.target.Chosen != nil {
		e.Backend = x.target.Chosen.ID()
	}
	e.Attempts = x.target.Attempts
	if r.TLS != nil {
		e.TLS = r.TLS.Version
	}
	a.access.Log(&e)
}

// exchange is one request's state, and the ResponseWriter the proxy writes
// to: it counts bytes, records the status and adds the sticky cookie just
// before the headers go out, when the backend that answered is known.
type exchange struct {
	w      http.ResponseWriter
	app    *appHandler
	start  time.Time
	target upstream.Target

	status int
	bytes  int64

	headAt time.Time // when the response head went out (time to first byte)

	ticket    session.Ticket
	hasTicket bool
	stickyKey uint64 // hash of the cookie value, when hasTicket
	sticky    stickyResult
}

func (x *exchange) Header() http.Header { return x.w.Header() }

func (x *exchange) WriteHeader(code int) {
	// 1xx answers (100 Continue, 103 Early Hints) precede the real one.
	if x.status == 0 && code >= 200 {
		x.status = code
		if x.app.metrics != nil {
			if x.target.HeadAt.IsZero() || !x.app.realClock {
				x.headAt = x.app.now()
			} else {
				x.headAt = x.target.HeadAt // read just before this call
			}
		}
		if x.app.sticky != nil {
			x.app.sticky.setCookie(x)
		}
	}
	x.w.WriteHeader(code)
}

func (x *exchange) Write(p []byte) (int, error) {
	if x.status == 0 {
		x.WriteHeader(http.StatusOK)
	}
	n, err := x.w.Write(p)
	x.bytes += int64(n)
	return n, err
}

// Unwrap lets http.NewResponseController reach Flush and Hijack.
func (x *exchange) Unwrap() http.ResponseWriter { return x.w }

// RawFields passes the writer's raw fields through (the sticky cookie is
// added to them); see httpsyntax.RawFieldsWriter.
func (x *exchange) RawFields(take bool) *httpsyntax.RawFields {
	if x.status != 0 {
		return nil // the head went out, or its cookie was decided without them
	}
	return httpsyntax.RawFieldsOf(x.w, take)
}

// Generated marks the answer as tlsedge's own (a 502 or 503 page of the
// proxy), for the error_page filter.
func (x *exchange) Generated() { filter.MarkGenerated(x.w) }

// clientIP is the peer's address without the port, without allocating.
func clientIP(r *http.Request) string {
	a := r.RemoteAddr
	for i := len(a) - 1; i >= 0; i-- {
		if a[i] == ':' {
			a = a[:i]
			break
		}
	}
	if len(a) > 1 && a[0] == '[' && a[len(a)-1] == ']' {
		a = a[1 : len(a)-1]
	}
	return a
}
