package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Defaults of PoolConfig; see the field docs for the reasoning.
const (
	DefaultDialTimeout           = 5 * time.Second
	DefaultResponseHeaderTimeout = 60 * time.Second
	DefaultIdleConnTimeout       = 90 * time.Second
	DefaultMaxIdleConnsPerHost   = 256
)

// PoolConfig describes one pool of backends. The zero value of every duration
// and limit means its default. NewPool copies what it needs; the caller keeps
// ownership of the struct and of the Backends slice.
type PoolConfig struct {
	// Backends of the pool, in configuration order. At least one.
	Backends []BackendConfig

	// DialTimeout bounds a TCP connect to a backend. Default 5s: a backend on
	// the same network answers a SYN in milliseconds; past a few seconds it is
	// gone, and the request is better served by the next backend.
	DialTimeout time.Duration

	// ResponseHeaderTimeout bounds the time from the end of writing the
	// request to the response headers. Default 60s, nginx's
	// proxy_read_timeout: long enough for slow reports, short enough that a
	// hung backend does not hold client connections forever. It does not
	// bound streaming response bodies or upgraded connections; it also
	// bounds each write of a large request body, so that a backend that
	// stops reading one cannot hold the request forever.
	ResponseHeaderTimeout time.Duration

	// IdleConnTimeout closes keep-alive connections unused this long.
	// Default 90s, net/http's: shorter than common backend keep-alive
	// timeouts would churn connections, longer risks reusing a connection the
	// backend has just closed (a request safe to replay is then sent again on
	// a new connection; others are preceded by a liveness probe).
	IdleConnTimeout time.Duration

	// TLS, when not nil, re-encrypts: connections to the backends are TLS
	// with this client configuration. An empty ServerName means each
	// backend's host (the SNI sent and the name verified).
	TLS *tls.Config

	// Protocol to the backends: "http1" (default, the package's own
	// HTTP/1.1 client), "h2" (HTTP/2 over TLS; needs TLS) or "h2c" (HTTP/2
	// in clear text, prior knowledge).
	Protocol string

	// Balancer names the balancer (see NewBalancer; "" is round robin)
	// and BalancerOptions tunes it.
	Balancer        string
	BalancerOptions BalancerOptions

	// MinActive is how many backends of the first priority group must be
	// up for it to take all traffic alone; below that the next group
	// joins (see priority.go). Default 1.
	MinActive int

	// MaxIdleConnsPerHost is the number of idle keep-alive connections kept
	// per backend. Default 256. The net/http default of 2 is made for
	// clients: behind a proxy every burst above 2 concurrent requests would
	// close its extra connections afterwards, and the next burst would dial
	// them again, leaving thousands of sockets in TIME_WAIT on our side. The
	// idle pool should cover the usual concurrency per backend; 256 idle
	// connections cost 256 descriptors and no buffers (a connection holds
	// its 16 KiB only while it carries a request), and IdleConnTimeout
	// returns them when traffic drops. When the stack is full, the
	// connection idle longest is closed.
	MaxIdleConnsPerHost int
}

func (c *PoolConfig) dialTimeout() time.Duration {
	if c.DialTimeout > 0 {
		return c.DialTimeout
	}
	return DefaultDialTimeout
}

func (c *PoolConfig) responseHeaderTimeout() time.Duration {
	if c.ResponseHeaderTimeout > 0 {
		return c.ResponseHeaderTimeout
	}
	return DefaultResponseHeaderTimeout
}

func (c *PoolConfig) idleConnTimeout() time.Duration {
	if c.IdleConnTimeout > 0 {
		return c.IdleConnTimeout
	}
	return DefaultIdleConnTimeout
}

func (c *PoolConfig) maxIdleConnsPerHost() int {
	if c.MaxIdleConnsPerHost > 0 {
		return c.MaxIdleConnsPerHost
	}
	return DefaultMaxIdleConnsPerHost
}

// Pool is an immutable set of backends with their weights, a balancer and
// a keep-alive stack of connections per backend. A reload builds a new
// Pool; backend state carries over through the Registry, connections do
// not (Close the old pool).
type Pool struct {
	cfg      PoolConfig // defaults resolved, Backends copied
	backends []*Backend
	index    map[*Backend]int // membership check for sticky hints, stack lookup
	byID     map[string]*Backend
	levels   []level      // priority groups, first = lowest priority number
	stacks   []*connStack // idle connections, per backend (same order)
	// upgrades carries WebSocket handshakes for the ReverseProxy path.
	upgrades *http.Transport
	// h2 carries every other request of an h2 or h2c pool; nil for
	// HTTP/1.1 pools.
	h2 *http.Transport
}

// NewPool validates cfg and builds the pool. Backend state comes from reg, so
// a backend that keeps its ID and Addr across a reload keeps its health and
// counters; a nil reg gives the pool private state.
func NewPool(cfg PoolConfig, reg *Registry) (*Pool, error) {
	if len(cfg.Backends) == 0 {
		return nil, errors.New("upstream: pool has no backends")
	}
	if cfg.DialTimeout < 0 || cfg.ResponseHeaderTimeout < 0 || cfg.IdleConnTimeout < 0 || cfg.MaxIdleConnsPerHost < 0 || cfg.MinActive < 0 {
		return nil, errors.New("upstream: pool timeouts and limits must not be negative")
	}
	if reg == nil {
		reg = NewRegistry()
	}
	p := &Pool{
		cfg:      cfg,
		backends: make([]*Backend, len(cfg.Backends)),
		index:    make(map[*Backend]int, len(cfg.Backends)),
		byID:     make(map[string]*Backend, len(cfg.Backends)),
	}
	p.cfg.Backends = make([]BackendConfig, len(cfg.Backends))
	for i, bc := range cfg.Backends {
		if err := validateAddr(bc.Addr); err != nil {
			return nil, fmt.Errorf("upstream: backend %d: %w", i+1, err)
		}
		if bc.ID == "" {
			bc.ID = bc.Addr
		}
		if bc.Weight == 0 {
			bc.Weight = 1
		}
		if bc.Weight < 1 || bc.Weight > MaxWeight {
			return nil, fmt.Errorf("upstream: backend %q: weight %d out of range 1..%d", bc.ID, bc.Weight, MaxWeight)
		}
		if _, dup := p.byID[bc.ID]; dup {
			return nil, fmt.Errorf("upstream: backend id %q used twice in one pool", bc.ID)
		}
		b := reg.Backend(bc.ID, bc.Addr)
		p.cfg.Backends[i] = bc
		p.backends[i] = b
		p.index[b] = i
		p.byID[bc.ID] = b
	}
	if cfg.MinActive == 0 {
		p.cfg.MinActive = 1
	}
	levels, err := buildLevels(p.backends, p.cfg.Backends, func(bs []*Backend, ws []int) (Balancer, error) {
		return NewBalancer(cfg.Balancer, bs, ws, cfg.BalancerOptions)
	})
	if err != nil {
		return nil, err
	}
	p.levels = levels
	p.cfg.DialTimeout = cfg.dialTimeout()
	p.cfg.ResponseHeaderTimeout = cfg.responseHeaderTimeout()
	p.cfg.IdleConnTimeout = cfg.idleConnTimeout()
	p.cfg.MaxIdleConnsPerHost = cfg.maxIdleConnsPerHost()
	p.stacks = make([]*connStack, len(p.backends))
	for i, b := range p.backends {
		p.stacks[i] = newConnStack(b.addr, &p.cfg)
	}
	p.upgrades = newUpgradeTransport(&p.cfg)
	if p.cfg.usesH2() {
		if p.h2, err = newH2Transport(&p.cfg); err != nil {
			return nil, err
		}
	} else if p.cfg.Protocol != "" && p.cfg.Protocol != ProtocolHTTP1 {
		return nil, fmt.Errorf("upstream: protocol %q: want http1, h2 or h2c", p.cfg.Protocol)
	}
	return p, nil
}

// validateAddr accepts host:port with a numeric port; the host may be a name
// (resolved at dial time) or an IP literal.
func validateAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if host == "" {
		return fmt.Errorf("address %q: missing host", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("address %q: port must be 1..65535", addr)
	}
	return nil
}

// stack returns the idle connections of b, which must be a member.
func (p *Pool) stack(b *Backend) *connStack { return p.stacks[p.index[b]] }

// newUpgradeTransport builds the transport of WebSocket handshakes. It
// keeps no idle connections: a handshake that succeeds hands its
// connection to the tunnel, and one that fails is rare.
func newUpgradeTransport(cfg *PoolConfig) *http.Transport {
	d := &net.Dialer{Timeout: cfg.dialTimeout()}
	return &http.Transport{
		// Never the environment's HTTP_PROXY: backends are dialled directly.
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				// Typed so the proxy knows for certain that nothing was
				// sent and the request may go to another backend.
				return nil, &DialError{Addr: addr, Err: err}
			}
			return c, nil
		},
		// The client's Accept-Encoding goes to the backend unchanged and the
		// response comes back as sent; decompressing here would only cost CPU.
		DisableCompression:     true,
		DisableKeepAlives:      true,
		ResponseHeaderTimeout:  cfg.responseHeaderTimeout(),
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		ReadBufferSize:         h1ReadBuffer,
		WriteBufferSize:        h1WriteBuffer,
		ForceAttemptHTTP2:      false,
		TLSClientConfig:        backendTLS(cfg.TLS, ""), // ServerName: the URL's host
	}
}

// Backend returns the backend with the given ID, or nil if the pool has none.
func (p *Pool) Backend(id string) *Backend { return p.byID[id] }

// Backends returns the pool's backends in configuration order. The slice is
// a copy; the backends are shared.
func (p *Pool) Backends() []*Backend { return append([]*Backend(nil), p.backends...) }

// Config returns the pool's configuration with defaults resolved and empty
// IDs and weights filled in; Config().Backends[i] describes Backends()[i].
func (p *Pool) Config() PoolConfig {
	c := p.cfg
	c.Backends = append([]BackendConfig(nil), p.cfg.Backends...)
	return c
}

// Contains reports whether b is one of the pool's backends.
func (p *Pool) Contains(b *Backend) bool {
	_, ok := p.index[b]
	return ok
}

// Pick asks the balancer of the priority level active now; see Balancer.
func (p *Pool) Pick(skip func(*Backend) bool) *Backend { return p.PickAt(time.Now(), skip) }

// Close closes the pool's idle keep-alive connections. Call it when a reload
// has retired the pool. Connections still in use are closed when their
// request ends; requests that still reach the pool dial connections that
// are closed after use.
func (p *Pool) Close() {
	for _, s := range p.stacks {
		s.close()
	}
	p.upgrades.CloseIdleConnections()
	if p.h2 != nil {
		p.h2.CloseIdleConnections()
	}
}

// backendTLS returns the client configuration for the backend at addr: a
// copy of c with ServerName set to the backend's host unless c names one,
// and HTTP/1.1 as the only ALPN protocol. nil for plain HTTP.
func backendTLS(c *tls.Config, addr string) *tls.Config {
	if c == nil {
		return nil
	}
	c = c.Clone()
	if c.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			c.ServerName = host
		}
	}
	c.NextProtos = []string{"http/1.1"}
	if c.ClientSessionCache == nil {
		// Resumed handshakes when a pooled connection is replaced.
		c.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	}
	return c
}
