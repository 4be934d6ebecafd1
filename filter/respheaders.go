package filter

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tlsedge/tlsedge/httpsyntax"
)

// ResponseHeadersConfig says what to take out of and put into every
// response: headers that tell an attacker what runs behind the gateway,
// and the security headers the gateway adds.
type ResponseHeadersConfig struct {
	// Remove lists the headers to drop from backend responses, in any
	// case (DefaultHidden when nil; empty: none).
	Remove []string
	// HSTS is Strict-Transport-Security's max-age on HTTPS responses; 0
	// leaves the header alone.
	HSTS time.Duration
	// HSTSSubdomains adds includeSubDomains.
	HSTSSubdomains bool
	// Backends are the backends' host:port addresses: URLs and cookie
	// domains that name them are rewritten to the public host (see
	// locations.go). Nil: no rewriting.
	Backends []string
	// Set are headers set on every response, replacing the backend's
	// (security headers: X-Content-Type-Options, Referrer-Policy,
	// X-Frame-Options, Content-Security-Policy).
	Set map[string]string
}

// DefaultHidden are the headers removed by default: the server software
// and framework, and their versions.
var DefaultHidden = []string{"Server", "X-Powered-By", "X-AspNet-Version", "X-AspNetMvc-Version", "X-Runtime", "X-Generator", "X-Drupal-Cache", "Via"}

// SecurityHeaders are the values of the security_headers option.
func SecurityHeaders() map[string]string {
	return map[string]string{
		"X-Content-Type-Options": "nosniff",
		"Referrer-Policy":        "strict-origin-when-cross-origin",
		"X-Frame-Options":        "SAMEORIGIN",
	}
}

// ResponseHeaders returns next with its responses' headers filtered. The
// work happens once per response, when the head goes out; the wrapper is
// the only allocation.
func ResponseHeaders(next http.Handler, cfg ResponseHeadersConfig) http.Handler {
	f := &respFilter{next: next}
	remove := cfg.Remove
	if remove == nil {
		remove = DefaultHidden
	}
	for _, h := range remove {
		k := http.CanonicalHeaderKey(h)
		f.remove = append(f.remove, k)
		if len(k) < 64 {
			f.removeLens |= 1 << len(k)
		} else {
			f.removeLens |= 1 << 63 // the long ones share a bit
		}
	}
	if cfg.HSTS > 0 {
		v := "max-age=" + strconv.FormatInt(int64(cfg.HSTS/time.Second), 10)
		if cfg.HSTSSubdomains {
			v += "; includeSubDomains"
		}
		f.hsts = []string{v}
	}
	for _, b := range cfg.Backends {
		f.backends = append(f.backends, b)
		host := b
		if i := strings.LastIndexByte(b, ':'); i > 0 && !strings.HasSuffix(b, "]") {
			host = b[:i]
		}
		f.backendHosts = append(f.backendHosts, strings.Trim(host, "[]"))
		if strings.HasSuffix(b, ":80") || strings.HasSuffix(b, ":443") {
			f.backends = append(f.backends, host) // the default port may be left out
		}
	}
	for k, v := range cfg.Set {
		f.set = append(f.set, headerValue{http.CanonicalHeaderKey(k), []string{v}})
	}
	return f
}

type headerValue struct {
	name  string
	value []string // shared, never modified
}

type respFilter struct {
	next   http.Handler
	remove []string
	// removeLens has bit n set when a name in remove is n bytes long
	// (63: 63 or more), so that most keys are passed over at once.
	removeLens uint64
	hsts       []string // nil: off
	set        []headerValue
	// backends and backendHosts: what a backend's own URLs and cookie
	// domains look like (host:port, and host alone where the port is
	// the scheme's default).
	backends, backendHosts []string
}

func (f *respFilter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rw := respWriterPool.Get().(*respWriter)
	*rw = respWriter{ResponseWriter: w, f: f, r: r, id: r.Header[RequestIDHeader]}
	f.next.ServeHTTP(rw, r)
	// Recycled only after a normal return: nothing holds a ResponseWriter
	// once its handler has returned, but a handler that panicked (an
	// aborted response) may have left anything in any state.
	*rw = respWriter{}
	respWriterPool.Put(rw)
}

// respWriterPool saves the per-request allocation of a respWriter.
var respWriterPool = sync.Pool{New: func() any { return new(respWriter) }}

// respWriter applies the filter to the response head.
type respWriter struct {
	http.ResponseWriter
	f    *respFilter
	r    *http.Request
	id   []string // the request's X-Request-Id, echoed (it wins over a backend's)
	done bool
}

func (w *respWriter) apply() {
	if w.done {
		return
	}
	w.done = true
	if rf := httpsyntax.RawFieldsOf(w.ResponseWriter, false); rf != nil && w.applyRaw(rf) {
		return
	}
	h := w.ResponseWriter.Header()
	// One pass over the head's few keys, rather than a hashed delete per
	// hidden name and a lookup per field that may carry a backend URL.
	rewrite := len(w.f.backends) > 0
	urls := false
	if len(w.f.remove) > 0 || rewrite {
		for k := range h {
			if w.f.hidden(k) {
				delete(h, k)
			} else if rewrite && !urls && carriesURL(k) {
				urls = true
			}
		}
	}
	if urls {
		w.f.rewriteURLs(h, w.r)
	}
	if w.f.hsts != nil && w.r.TLS != nil {
		h["Strict-Transport-Security"] = w.f.hsts
	}
	for _, hv := range w.f.set {
		h[hv.name] = hv.value
	}
	if w.id != nil {
		h[RequestIDHeader] = w.id
	}
}

// applyRaw is apply on the field lines of a backend's head that go out
// unparsed (httpsyntax.RawFields): the same removals, replacements and
// additions. It reports false when the head needs apply's map after all
// (a field that may carry a backend URL to rewrite); what it changed by
// then, apply would change the same way.
func (w *respWriter) applyRaw(rf *httpsyntax.RawFields) bool {
	rewrite := len(w.f.backends) > 0
	hsts := w.f.hsts != nil && w.r.TLS != nil
	for i := range rf.Len() {
		name := rf.Name(i)
		if w.f.hiddenName(name) || replacesName(w, name, hsts) {
			rf.Drop(i)
			continue
		}
		if rewrite && carriesURLName(name) {
			if !httpsyntax.EqualFieldName(name, "Set-Cookie") || hasDomainAttr(rf.Value(i)) {
				return false
			}
		}
	}
	replacedAdded := false // the proxy's own fields are rarely replaced: skip DropAdded
	for i := range rf.NumAdded() {
		name, vs := rf.Added(i)
		if w.f.hidden(name) {
			return false // a field the proxy added, hidden by configuration: rare
		}
		replacedAdded = replacedAdded || replacesName(w, name, hsts)
		if rewrite && carriesURL(name) {
			for _, v := range vs {
				if name != "Set-Cookie" || hasDomainAttr(v) {
					return false
				}
			}
		}
	}
	if hsts {
		if replacedAdded {
			rf.DropAdded("Strict-Transport-Security")
		}
		rf.Add("Strict-Transport-Security", w.f.hsts)
	}
	for _, hv := range w.f.set {
		if replacedAdded {
			rf.DropAdded(hv.name)
		}
		rf.Add(hv.name, hv.value)
	}
	if w.id != nil {
		if replacedAdded {
			rf.DropAdded(RequestIDHeader)
		}
		rf.Add(RequestIDHeader, w.id)
	}
	return true
}

// replacesName reports whether the filter sets the field name, in any
// letter case, replacing the backend's.
func replacesName[T ~string | ~[]byte](w *respWriter, name T, hsts bool) bool {
	if w.id != nil && httpsyntax.EqualFieldName(name, RequestIDHeader) ||
		hsts && httpsyntax.EqualFieldName(name, "Strict-Transport-Security") {
		return true
	}
	for _, hv := range w.f.set {
		if httpsyntax.EqualFieldName(name, hv.name) {
			return true
		}
	}
	return false
}

// hiddenName is hidden for a field name in any letter case.
func (f *respFilter) hiddenName(name []byte) bool {
	if f.removeLens&(1<<min(len(name), 63)) == 0 {
		return false
	}
	for _, n := range f.remove {
		if httpsyntax.EqualFieldName(name, n) {
			return true
		}
	}
	return false
}

// carriesURLName is carriesURL for a field name in any letter case.
func carriesURLName(name []byte) bool {
	for _, k := range urlFields {
		if httpsyntax.EqualFieldName(name, k) {
			return true
		}
	}
	return false
}

// urlFields are the response fields rewriteURLs looks at.
var urlFields = [...]string{"Location", "Content-Location", "Refresh", "Set-Cookie"}

// hidden reports whether the response field k is one the filter removes.
func (f *respFilter) hidden(k string) bool {
	if f.removeLens&(1<<min(len(k), 63)) == 0 {
		return false
	}
	for _, n := range f.remove {
		if n == k {
			return true
		}
	}
	return false
}

// carriesURL reports whether rewriteURLs looks at the response field k
// (one of urlFields, spelled canonically: a switch, for the map path).
func carriesURL(k string) bool {
	switch k {
	case "Location", "Content-Location", "Refresh", "Set-Cookie":
		return true
	}
	return false
}

func (w *respWriter) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.apply()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *respWriter) Write(p []byte) (int, error) {
	w.apply()
	return w.ResponseWriter.Write(p)
}

// FlushError applies the filter before a flush sends the head (a
// streaming response may flush before its first write).
func (w *respWriter) FlushError() error {
	w.apply()
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Flush is FlushError for http.Flusher callers.
func (w *respWriter) Flush() { _ = w.FlushError() }

// Unwrap lets http.ResponseController reach Hijack.
func (w *respWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// RawFields passes the writer's raw fields through: apply works on them.
func (w *respWriter) RawFields(take bool) *httpsyntax.RawFields {
	if w.done {
		return nil // applied already: fields taken now would miss it
	}
	return httpsyntax.RawFieldsOf(w.ResponseWriter, take)
}
