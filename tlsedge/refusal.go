package tlsedge

import (
	"net/http"
	"sync"
	"time"

	"github.com/tlsedge/tlsedge/filter"

	"github.com/tlsedge/tlsedge/httpsyntax"
)

// refusalWriter sits under every filter (the server puts it in front of
// the frontend chain) and records what a filter answered, for the access
// log of requests that never reached the proxy. It is pooled: one per
// request in flight.
type refusalWriter struct {
	http.ResponseWriter
	start  time.Time
	status int
	bytes  int64
	logged bool // someone wrote the request's access-log line
}

var refusalPool = sync.Pool{New: func() any { return new(refusalWriter) }}

func newRefusalWriter(w http.ResponseWriter, now time.Time) *refusalWriter {
	rw := refusalPool.Get().(*refusalWriter)
	*rw = refusalWriter{ResponseWriter: w, start: now}
	return rw
}

func (w *refusalWriter) release() {
	*w = refusalWriter{}
	refusalPool.Put(w)
}

func (w *refusalWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *refusalWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.NewResponseController reach Flush and Hijack.
func (w *refusalWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// RawFields passes the writer's raw fields through.
func (w *refusalWriter) RawFields(take bool) *httpsyntax.RawFields {
	return httpsyntax.RawFieldsOf(w.ResponseWriter, take)
}

// markServed tells the refusalWriter beneath w's filter wrappers that
// the request's line is written by whoever has it now (serve, routing).
// The walk is a few type assertions: the chain's wrappers all Unwrap.
// It returns when the request started, as the refusalWriter knows it
// (zero without one): a clock reading costs more than the walk.
func markServed(w http.ResponseWriter) (start time.Time) {
	for i := 0; i < 16 && w != nil; i++ {
		if rw, ok := w.(*refusalWriter); ok {
			rw.logged = true
			return rw.start
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return time.Time{}
		}
		w = u.Unwrap()
	}
	return time.Time{}
}

// logRefusal writes the access-log line of a request a filter answered.
func (a *appHandler) logRefusal(w *refusalWriter, r *http.Request) {
	a.metrics.refused(r.Method, w.status, a.now().Sub(w.start))
	if a.access == nil {
		return
	}
	e := accessEntry{
		Time:     w.start,
		ClientIP: clientIP(r),
		Method:   r.Method,
		Host:     r.Host,
		Path:     r.URL.Path,
		Status:   w.status,
		Bytes:    w.bytes,
		Duration: a.now().Sub(w.start),
		App:      a.cfg.Name,
		Proto:    r.Proto,
	}
	if id := r.Header[filter.RequestIDHeader]; len(id) > 0 {
		e.RequestID = id[0]
	}
	if r.TLS != nil {
		e.TLS = r.TLS.Version
	}
	a.access.Log(&e)
}

// logFront writes the access-log line of a request the frontend filters
// answered before routing (frontend allow/deny, rate limit, HTTP/2 head
// size): no app is named.
func (snap *snapshot) logFront(w *refusalWriter, r *http.Request) {
	e := accessEntry{
		Time:     w.start,
		ClientIP: clientIP(r),
		Method:   r.Method,
		Host:     r.Host,
		Path:     r.URL.Path,
		Status:   w.status,
		Bytes:    w.bytes,
		Duration: time.Since(w.start),
	}
	if r.TLS != nil {
		e.TLS = r.TLS.Version
	}
	snap.access.Log(&e)
}
