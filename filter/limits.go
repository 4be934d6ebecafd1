package filter

// Request limits that hold whatever the protocol. Our HTTP/1.1 parser
// already answers a request line over 8 KiB with 414, and a head over
// 64 KiB or with more than 100 fields with 431; HTTP/2 requests go through
// Go's server, which limits only the bytes of the header block
// (MaxHeaderBytes). This filter gives HTTP/2 the same answers, and adds a
// limit on cookies for both: a cookie jar that grew past what the backend
// accepts fails here, with a reason, not in the backend with a bare 400.

import (
	"net/http"
	"strconv"
)

// The limits' defaults, those of our HTTP/1.1 parser.
const (
	DefaultMaxURL          = 8192
	DefaultMaxHeaderFields = 100
	DefaultMaxCookieBytes  = 8192
)

// LimitsConfig bounds a request's head. Zero means the default; a
// negative value turns that limit off. Limits copies it.
type LimitsConfig struct {
	// MaxURL bounds the bytes of the request target: r.RequestURI as
	// the client sent it (HTTP/2: :path), or the URL's escaped path and
	// query when RequestURI is empty. Over: 414.
	MaxURL int
	// MaxHeaderFields bounds the header fields: every value of every
	// name in r.Header, plus one for Host (Go keeps it out of r.Header),
	// as our HTTP/1.1 parser counts them. Over: 431.
	MaxHeaderFields int
	// MaxCookieBytes bounds the bytes of all Cookie header values
	// together, however the client split them. (Go's HTTP/2 server joins
	// split cookie fields with "; ", whose bytes are then counted.)
	// Over: 431.
	MaxCookieBytes int
}

func (c *LimitsConfig) maxURL() int          { return limOr(c.MaxURL, DefaultMaxURL) }
func (c *LimitsConfig) maxHeaderFields() int { return limOr(c.MaxHeaderFields, DefaultMaxHeaderFields) }
func (c *LimitsConfig) maxCookieBytes() int  { return limOr(c.MaxCookieBytes, DefaultMaxCookieBytes) }

// limOr resolves a limit: 0 is the default, negative is off (-1).
func limOr(n, def int) int {
	switch {
	case n == 0:
		return def
	case n < 0:
		return -1
	}
	return n
}

// Limits returns next behind cfg's limits. A request over one is answered
// with its status and a short text body, and never reaches next. A request
// within them costs a walk over its header map and no allocation. The
// error is always nil: it keeps the filters' one constructor shape.
func Limits(next http.Handler, cfg LimitsConfig) (http.Handler, error) {
	l := &limits{
		next:      next,
		maxURL:    cfg.maxURL(),
		maxFields: cfg.maxHeaderFields(),
		maxCookie: cfg.maxCookieBytes(),
	}
	if l.maxURL < 0 && l.maxFields < 0 && l.maxCookie < 0 {
		return next, nil
	}
	l.urlBody = []byte("414 request target over " + strconv.Itoa(l.maxURL) + " bytes\n")
	l.fieldsBody = []byte("431 more than " + strconv.Itoa(l.maxFields) + " header fields\n")
	l.cookieBody = []byte("431 cookies over " + strconv.Itoa(l.maxCookie) + " bytes\n")
	return l, nil
}

type limits struct {
	next                            http.Handler
	maxURL, maxFields, maxCookie    int // -1: off
	urlBody, fieldsBody, cookieBody []byte
}

func (l *limits) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if l.maxURL >= 0 && limTargetLen(r) > l.maxURL {
		limRefuse(w, http.StatusRequestURITooLong, l.urlBody)
		return
	}
	if l.maxFields >= 0 {
		n := 1 // Host
		for _, v := range r.Header {
			n += len(v)
		}
		if n > l.maxFields {
			limRefuse(w, http.StatusRequestHeaderFieldsTooLarge, l.fieldsBody)
			return
		}
	}
	if l.maxCookie >= 0 {
		n := 0
		for _, v := range r.Header["Cookie"] {
			n += len(v)
		}
		if n > l.maxCookie {
			limRefuse(w, http.StatusRequestHeaderFieldsTooLarge, l.cookieBody)
			return
		}
	}
	l.next.ServeHTTP(w, r)
}

// limTargetLen is the length of the request target; only a request built by
// hand (no RequestURI) pays for EscapedPath.
func limTargetLen(r *http.Request) int {
	if r.RequestURI != "" {
		return len(r.RequestURI)
	}
	n := len(r.URL.EscapedPath())
	if r.URL.RawQuery != "" || r.URL.ForceQuery {
		n += 1 + len(r.URL.RawQuery)
	}
	return n
}

func limRefuse(w http.ResponseWriter, code int, body []byte) {
	h := w.Header()
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	MarkGenerated(w)
	w.WriteHeader(code)
	w.Write(body) //nolint:errcheck // the client may be gone
}
