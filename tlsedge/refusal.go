package tlsedge

import (
	"net/http"
	"sync"
	"time"

	"github.com/tlsedge/tlsedge/filter"
)

// refusalWriter sits outside an app's filter chain and records what a
// filter answered, for the access log of requests that never reached
// the proxy. It is pooled: one per request in flight.
type refusalWriter struct {
	http.ResponseWriter
	start  time.Time
	status int
	bytes  int64
	served bool // the request reached serve, which logs it
}

var refusalPool = sync.Pool{New: func() any { return new(refusalWriter) }}

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

// markServed tells the refusalWriter beneath w's filter wrappers that
// serve has the request. The walk is a few type assertions: the chain's
// wrappers all Unwrap.
func markServed(w http.ResponseWriter) {
	for i := 0; i < 16 && w != nil; i++ {
		if rw, ok := w.(*refusalWriter); ok {
			rw.served = true
			return
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return
		}
		w = u.Unwrap()
	}
}

// logRefusal writes the access-log line of a request a filter answered.
func (a *appHandler) logRefusal(w *refusalWriter, r *http.Request) {
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
	}
	if id := r.Header[filter.RequestIDHeader]; len(id) > 0 {
		e.RequestID = id[0]
	}
	if r.TLS != nil {
		e.TLS = r.TLS.Version
	}
	a.access.Log(e)
}
