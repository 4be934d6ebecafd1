package upstream

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Target carries one request's backend choice into and out of Proxy.Serve.
// It belongs to the request: Serve writes Chosen and Attempts, and the caller
// reads them after Serve returns (or in ModifyResponse).
type Target struct {
	// Prefer is the backend a sticky session asks for (from Pool.Backend), or
	// nil. It is used if it belongs to the proxy's pool and is up; otherwise,
	// or if connecting to it fails, the balancer picks.
	Prefer *Backend
	// Chosen is the backend that answered; nil if none did. A caller that
	// issues sticky cookies compares it with Prefer.
	Chosen *Backend
	// Attempts is the number of backends a connection was tried to.
	Attempts int
}

// ProxyConfig configures a Proxy. NewProxy reads it once; the caller keeps
// ownership of the struct.
type ProxyConfig struct {
	// Pool is where requests go. Required.
	Pool *Pool

	// Log receives one line per request that got an error page, and body
	// copy errors. It should carry the app's fields. Nil discards.
	Log *logrus.Entry

	// ModifyResponse, if set, is called with every backend response before it
	// is copied to the client, with t.Chosen set (e.g. to issue a sticky
	// cookie). An error replaces the response with a 502 page.
	ModifyResponse func(resp *http.Response, t *Target) error

	// MaxAttempts caps the backends tried per request. Zero means every
	// backend of the pool once. Only connect failures are retried, and a
	// refused connect costs microseconds, but with dial timeouts a request may
	// wait MaxAttempts × DialTimeout (the failed backends then sit in backoff,
	// so only the first requests of an outage pay).
	MaxAttempts int

	// BufferPool supplies the 32 KiB buffers for copying bodies; share one
	// (NewBufferPool) between all proxies of a server so idle buffers are not
	// kept per app. Nil means a pool of this proxy's own.
	BufferPool httputil.BufferPool

	// Now is the clock for passive health. Nil means time.Now; tests inject
	// a fake one instead of sleeping through backoff windows.
	Now func() time.Time
}

var (
	_ http.Handler        = (*Proxy)(nil)
	_ http.RoundTripper   = retryTransport{}
	_ httputil.BufferPool = (*bufferPool)(nil)
)

// Proxy forwards requests to one pool. It is immutable and safe for
// concurrent use; a reload builds a new one.
type Proxy struct {
	pool        *Pool
	log         *logrus.Entry
	modify      func(*http.Response, *Target) error
	maxAttempts int
	now         func() time.Time
	pages       errorPages
	rp          *httputil.ReverseProxy
}

// NewProxy validates cfg and builds the proxy.
func NewProxy(cfg ProxyConfig) (*Proxy, error) {
	if cfg.Pool == nil {
		return nil, errors.New("upstream: proxy needs a pool")
	}
	if cfg.MaxAttempts < 0 {
		return nil, errors.New("upstream: proxy MaxAttempts must not be negative")
	}
	p := &Proxy{
		pool:        cfg.Pool,
		log:         cfg.Log,
		modify:      cfg.ModifyResponse,
		maxAttempts: cfg.MaxAttempts,
		now:         cfg.Now,
		pages:       newErrorPages(),
	}
	if p.log == nil {
		l := logrus.New()
		l.Out = io.Discard
		p.log = logrus.NewEntry(l)
	}
	if p.maxAttempts == 0 || p.maxAttempts > len(p.pool.backends) {
		p.maxAttempts = len(p.pool.backends)
	}
	if p.now == nil {
		p.now = time.Now
	}
	bufs := cfg.BufferPool
	if bufs == nil {
		bufs = NewBufferPool()
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:      p.rewrite,
		Transport:    retryTransport{p},
		BufferPool:   bufs,
		ErrorHandler: p.handleError,
		ErrorLog:     log.New(logWriter{p.log}, "", 0),
		// FlushInterval stays 0: ReverseProxy already flushes every write of
		// text/event-stream and of bodies without a Content-Length, and
		// sized bodies are best left to the server's buffering.
	}
	if p.modify != nil {
		p.rp.ModifyResponse = p.modifyResponse
	}
	return p, nil
}

// ServeHTTP forwards r with no sticky preference.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.Serve(w, r, &Target{}) }

// Serve forwards r to a backend of the pool and copies the response to w,
// streaming both bodies and passing WebSocket upgrades through. t may be nil.
//
// Connect failures (refused, timed out) move the request to the next backend
// and put the failed one in backoff, as long as no byte of the request body
// was read; anything after a connection was made is never retried. When no
// backend answers, w gets a small HTML 502, 503 or 504 page (StatusCode) and
// the log gets one line saying why.
func (p *Proxy) Serve(w http.ResponseWriter, r *http.Request, t *Target) {
	if t == nil {
		t = &Target{}
	}
	st := newAttempt(p, t)
	defer st.finish()
	out := r.WithContext(context.WithValue(r.Context(), attemptKey{}, st))
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		st.body.rc = r.Body
		out.Body = &st.body
	}
	// Only WebSocket may switch protocols through us. ReverseProxy tunnels
	// any Upgrade the backend accepts; an "Upgrade: h2c" tunnel would let a
	// client speak HTTP/2 straight to the backend, past every filter and
	// route in front of it (h2c smuggling). Rare path, so the clone is fine.
	if up, ok := r.Header["Upgrade"]; ok && !(len(up) == 1 && strings.EqualFold(up[0], "websocket")) {
		out.Header = r.Header.Clone()
		out.Header.Del("Upgrade")
	}
	p.rp.ServeHTTP(w, out)
}

// rewrite prepares the outbound request; the backend address is filled in
// per attempt by retryTransport.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	// ReverseProxy has already removed hop-by-hop headers and every
	// client-supplied Forwarded/X-Forwarded-* header: we are the edge, so
	// what the client claims about earlier hops is not trusted.
	pr.SetXForwarded()
	pr.Out.Header["Forwarded"] = []string{forwarded(pr.In)}
	pr.Out.URL.Scheme = "http"
	// The backend sees the Host the client asked for, not its own address:
	// virtual hosts, redirects and cookies on the backend depend on it.
	pr.Out.Host = pr.In.Host
	if st := attemptFrom(pr.In.Context()); st != nil && st.body.rc != nil {
		// Lets the transport replay the body on a stale keep-alive
		// connection, and only while nothing of it was read.
		pr.Out.GetBody = st.body.getBody
	}
}

func (p *Proxy) modifyResponse(resp *http.Response) error {
	st := attemptFrom(resp.Request.Context())
	if st == nil {
		return errors.New("upstream: response without attempt state")
	}
	return p.modify(resp, st.t)
}

// handleError is the ReverseProxy's only ErrorHandler: it maps err to a
// status, writes the page and logs one line.
func (p *Proxy) handleError(w http.ResponseWriter, r *http.Request, err error) {
	code := StatusCode(err)
	if r.Context().Err() != nil {
		// The client went away; nobody reads an answer and it is not a
		// backend problem. 499 (nginx's "client closed request") is what
		// the access log records, so 5xx alerts stay about backends.
		if p.log.Logger.IsLevelEnabled(logrus.DebugLevel) {
			p.log.WithError(err).Debug("upstream: client gone before the response")
		}
		w.WriteHeader(StatusClientClosedRequest)
		return
	}
	fields := logrus.Fields{
		"status": code,
		"method": r.Method,
		"host":   r.Host,
		"path":   r.URL.Path,
	}
	if st := attemptFrom(r.Context()); st != nil {
		fields["attempts"] = len(st.tried)
		fields["backends"] = st.triedString()
	}
	p.log.WithFields(fields).WithError(err).Error("upstream: request failed")
	p.pages.write(w, code)
}

// forwarded builds the RFC 7239 Forwarded value for the hop from the client
// to us: for=client;host=requested host;proto=http|https.
func forwarded(r *http.Request) string {
	b := make([]byte, 0, 64)
	b = append(b, "for="...)
	b = appendNode(b, r.RemoteAddr)
	if r.Host != "" {
		b = append(b, ";host="...)
		b = appendValue(b, r.Host)
	}
	if r.TLS != nil {
		b = append(b, ";proto=https"...)
	} else {
		b = append(b, ";proto=http"...)
	}
	return string(b)
}

// appendNode appends the client address as an RFC 7239 node: IPv4 bare,
// IPv6 bracketed and quoted (section 6: ":" is not a token character), and
// "unknown" (section 6.3) when the address is not an IP.
func appendNode(b []byte, remoteAddr string) []byte {
	var ip netip.Addr
	if ap, err := netip.ParseAddrPort(remoteAddr); err == nil {
		ip = ap.Addr()
	} else if a, err := netip.ParseAddr(remoteAddr); err == nil {
		ip = a
	} else {
		return append(b, "unknown"...)
	}
	if ip.Is4() {
		return ip.AppendTo(b)
	}
	b = append(b, `"[`...)
	b = ip.AppendTo(b)
	return append(b, `]"`...)
}

// appendValue appends v as an RFC 7239 value: a token if it is one, else a
// quoted-string (a Host with a port, an IPv6 literal).
func appendValue(b []byte, v string) []byte {
	if isToken(v) {
		return append(b, v...)
	}
	b = append(b, '"')
	for i := 0; i < len(v); i++ {
		if v[i] == '"' || v[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, v[i])
	}
	return append(b, '"')
}

// isToken reports whether v is an RFC 9110 token (section 5.6.2).
func isToken(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// copyBufferSize is the size of the body copy buffers: io.Copy's size, and
// what one read of a TLS record or a loopback socket returns at most.
const copyBufferSize = 32 << 10

type bufferPool struct{ p sync.Pool }

// NewBufferPool returns a pool of 32 KiB copy buffers for ProxyConfig.
func NewBufferPool() httputil.BufferPool { return &bufferPool{} }

// Get returns a buffer. The pool stores array pointers rather than slices so
// that Put does not allocate a slice header each time.
func (bp *bufferPool) Get() []byte {
	if b, ok := bp.p.Get().(*[copyBufferSize]byte); ok {
		return b[:]
	}
	return new([copyBufferSize]byte)[:]
}

// Put returns a buffer from Get to the pool; other sizes are dropped.
func (bp *bufferPool) Put(b []byte) {
	if cap(b) >= copyBufferSize {
		bp.p.Put((*[copyBufferSize]byte)(b[:copyBufferSize]))
	}
}

// logWriter turns the ReverseProxy's ErrorLog lines (body copy errors) into
// warnings on the proxy's entry, without the goroutine logrus.Writer needs.
type logWriter struct{ e *logrus.Entry }

func (w logWriter) Write(p []byte) (int, error) {
	w.e.Warn(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
