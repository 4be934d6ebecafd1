package upstream

import (
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Target carries one request's backend choice into and out of Proxy.Serve.
// It belongs to the request: Serve writes Chosen and Attempts. Chosen is set
// before the response head is written, so a ResponseWriter wrapper may read
// it in WriteHeader (tlsedge issues sticky cookies there); the caller may
// also read both after Serve returns.
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
	// Key is the request's affinity key (see HashKey) for a pool whose
	// balancer hashes; HasKey says it is set.
	Key    uint64
	HasKey bool
	// Start is when the request arrived, by the real clock (time.Now), or
	// zero. A proxy on the real clock takes it as the time of its first
	// pick instead of reading the clock again: a clock reading costs
	// about 50 ns, and a request made a dozen of them.
	Start time.Time
	// HeadAt is when the backend's response head was read, by the real
	// clock; zero when none was.
	HeadAt time.Time
}

// ProxyConfig configures a Proxy. NewProxy reads it once; the caller keeps
// ownership of the struct.
type ProxyConfig struct {
	// Pool is where requests go. Required.
	Pool *Pool

	// Log receives one line per request that got an error page, and body
	// copy errors. It should carry the app's fields. Nil discards.
	Log *logrus.Entry

	// MaxAttempts caps the backends tried per request. Zero means every
	// backend of the pool once. Only connect failures are retried, and a
	// refused connect costs microseconds, but with dial timeouts a request may
	// wait MaxAttempts × DialTimeout (the failed backends then sit in backoff,
	// so only the first requests of an outage pay).
	MaxAttempts int

	// PassiveFails is how many failed answers in a row (response
	// timeouts, connections that died before an answer, and 5xx with
	// Passive5xx) take a backend out of rotation. Default 5 (Envoy's
	// consecutive_5xx). A refused connect takes it out at once.
	PassiveFails int
	// Passive5xx counts 5xx answers as failures. Off by default: one
	// broken endpoint of an app must not eject every backend.
	Passive5xx bool

	// MaxConns caps the requests each backend has at once; 0 means no
	// limit. Over it, requests wait in the queue (Queue).
	MaxConns int
	Queue    QueueConfig

	// RetryBudget bounds retries; zero fields mean the defaults.
	RetryBudget RetryBudget

	// BufferPool supplies the 32 KiB buffers for copying bodies; share one
	// (NewBufferPool) between all proxies of a server so idle buffers are not
	// kept per app. Nil means a pool of this proxy's own. Buffers shorter
	// than 4 KiB are not used.
	BufferPool httputil.BufferPool

	// Now is the clock for passive health. Nil means time.Now; tests inject
	// a fake one instead of sleeping through backoff windows.
	Now func() time.Time

	// OnEject, if set, is told of every backend passive health ejects
	// (for metrics); it must not block.
	OnEject func(b *Backend)
}

var (
	_ http.Handler        = (*Proxy)(nil)
	_ httputil.BufferPool = (*bufferPool)(nil)
)

// Proxy forwards requests to one pool. It is immutable and safe for
// concurrent use; a reload builds a new one.
type Proxy struct {
	pool         *Pool
	log          *logrus.Entry
	maxAttempts  int
	passiveFails int
	passive5xx   bool
	budget       *retryBudget
	maxConns     int64
	queue        *queue // nil without MaxConns
	now          func() time.Time
	realClock    bool // now is time.Now: readings may be shared with the caller's
	onEject      func(*Backend)
	pages        errorPages
	bufs         httputil.BufferPool
	rp           *httputil.ReverseProxy // WebSocket upgrades only
}

// attemptLimit is how many backends one request may try: MaxAttempts,
// or every backend the pool has now (its membership may change with DNS).
func (p *Proxy) attemptLimit() int {
	n := len(p.pool.state.Load().backends)
	if p.maxAttempts > 0 && p.maxAttempts < n {
		return p.maxAttempts
	}
	return n
}

// DefaultPassiveFails is ProxyConfig.PassiveFails's default.
const DefaultPassiveFails = 5

// NewProxy validates cfg and builds the proxy.
func NewProxy(cfg ProxyConfig) (*Proxy, error) {
	if cfg.Pool == nil {
		return nil, errors.New("upstream: proxy needs a pool")
	}
	if cfg.MaxAttempts < 0 || cfg.PassiveFails < 0 || cfg.MaxConns < 0 {
		return nil, errors.New("upstream: proxy MaxAttempts, PassiveFails and MaxConns must not be negative")
	}
	if r := cfg.RetryBudget.Ratio; r < 0 || r > 10 || cfg.RetryBudget.Min < 0 || cfg.RetryBudget.Window < 0 {
		return nil, errors.New("upstream: retry budget: ratio 0..10, min and window not negative")
	}
	p := &Proxy{
		pool:         cfg.Pool,
		log:          cfg.Log,
		maxAttempts:  cfg.MaxAttempts,
		passiveFails: cfg.PassiveFails,
		passive5xx:   cfg.Passive5xx,
		budget:       newRetryBudget(cfg.RetryBudget),
		maxConns:     int64(cfg.MaxConns),
		now:          cfg.Now,
		onEject:      cfg.OnEject,
		pages:        newErrorPages(),
	}
	if p.log == nil {
		l := logrus.New()
		l.Out = io.Discard
		p.log = logrus.NewEntry(l)
	}
	if p.now == nil {
		p.now, p.realClock = time.Now, true
	}
	if cfg.MaxConns > 0 {
		p.queue = newQueue(cfg.Queue)
	}
	if p.passiveFails == 0 {
		p.passiveFails = DefaultPassiveFails
	}
	if cfg.BufferPool != nil {
		p.bufs = minSizePool{cfg.BufferPool}
	} else {
		p.bufs = NewBufferPool()
	}
	p.rp = p.newReverseProxy(p.bufs)
	return p, nil
}

// ServeHTTP forwards r with no sticky preference.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.Serve(w, r, &Target{}) }

// Serve forwards r to a backend of the pool and copies the response to w,
// streaming both bodies and passing WebSocket upgrades through. t may be nil.
//
// Connect failures (refused, timed out) move the request to the next backend
// and put the failed one in backoff; anything after a connection was made
// is never retried, except that a request safe to replay is sent once more
// on a new connection when a reused keep-alive connection turns out to
// have been closed by the backend. When no backend answers, w gets a small
// HTML 502, 503 or 504 page (StatusCode) and the log gets one line saying
// why; a client that went away gets 499 and no line. If the backend breaks
// off a response whose head was already written, Serve panics with
// http.ErrAbortHandler so that the client's connection is cut rather than
// the response ended cleanly.
func (p *Proxy) Serve(w http.ResponseWriter, r *http.Request, t *Target) {
	if t == nil {
		t = &Target{}
	}
	if isWebSocket(r.Header) || p.pool.cfg.usesH2() {
		p.serveUpgrade(w, r, t)
		return
	}
	p.serveH1(w, r, t)
}

// forwarded builds the RFC 7239 Forwarded value for the hop from the client
// to us: for=client;host=requested host;proto=http|https.
func forwarded(r *http.Request) string { return string(appendForwarded(make([]byte, 0, 64), r)) }

// appendForwarded appends the value forwarded returns to b.
func appendForwarded(b []byte, r *http.Request) []byte {
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
	return b
}

// appendNode appends the client address as an RFC 7239 node: IPv4 bare,
// IPv6 bracketed and quoted (section 6: ":" is not a token character), and
// "unknown" (section 6.3) when the address is not an IP.
func appendNode(b []byte, remoteAddr string) []byte {
	if host, ok := ipv4Host(remoteAddr); ok {
		return append(b, host...)
	}
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

// minSizePool guards against a configured BufferPool whose buffers are too
// small to frame a chunk in place or to copy efficiently: those are
// replaced by buffers of our own.
type minSizePool struct{ httputil.BufferPool }

const minCopyBuffer = 4 << 10

func (m minSizePool) Get() []byte {
	if b := m.BufferPool.Get(); len(b) >= minCopyBuffer {
		return b
	}
	return make([]byte, copyBufferSize)
}
