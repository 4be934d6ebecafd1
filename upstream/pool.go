package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
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

	// Resolve is how often backends named by DNS are looked up again
	// (StartResolver runs the lookups): a backend whose Addr has a host
	// name stands for one backend per address of the name, and SRV
	// backends for one per target address. Zero means names are not
	// pinned to addresses: a host name is dialled as is (the system
	// resolves it at every connect) and SRV names are looked up once, in
	// NewPool. See resolve.go.
	Resolve time.Duration

	// Resolver looks the names up. Nil means net.DefaultResolver.
	Resolver Resolver

	// Log receives one line per operator change made through the pool
	// (SetAdminState, SetWeight). It should carry the app's fields. Nil
	// discards.
	Log *logrus.Entry
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

func (c *PoolConfig) resolver() Resolver {
	if c.Resolver != nil {
		return c.Resolver
	}
	return net.DefaultResolver
}

func (c *PoolConfig) maxIdleConnsPerHost() int {
	if c.MaxIdleConnsPerHost > 0 {
		return c.MaxIdleConnsPerHost
	}
	return DefaultMaxIdleConnsPerHost
}

// Pool is a set of backends with their weights, a balancer per priority
// level and a keep-alive stack of connections per backend. A reload builds
// a new Pool; backend state carries over through the Registry, and the
// idle connections of the backends it keeps carry over when the caller
// hands them on with Adopt (see pool_adopt.go). Close the old pool: it
// closes the connections nobody adopted.
//
// The membership is one immutable poolState behind an atomic pointer: the
// request path loads it and never locks. Without names to re-resolve it
// never changes; a resolver (StartResolver) swaps in a new one when DNS
// answers change. A request that picked a backend of an earlier state
// finishes on it.
type Pool struct {
	cfg      PoolConfig // defaults resolved; Backends nil (the membership is in state)
	reg      *Registry
	members  []member // the configured backends, compiled
	state    atomic.Pointer[poolState]
	upgrades *http.Transport // WebSocket handshakes of the ReverseProxy path
	// h2 carries every other request of an h2 or h2c pool; it holds nil
	// for HTTP/1.1 pools. Adopt may replace it with the transport of the
	// pool it adopts, so requests load it each time.
	h2 atomic.Pointer[h2Transport]

	// backends and stacks are NewPool's membership, state's first value.
	// Without a resolver it is the only one; with one they go stale, and
	// stacks also after Adopt.
	// They serve code that sizes itself once at construction (NewProxy's
	// attempt limit) and tests; the request path reads state.
	backends []*Backend
	stacks   []*connStack

	// mu guards closed and resolving and is held for a swap of state (by
	// the resolver, for a weight change and by Adopt), and while a stack
	// or the h2 transport owned by the pool changes owner; never by
	// requests.
	mu        sync.Mutex
	closed    bool
	resolving *resolverRun
}

// poolState is one membership of a pool. It is never modified once
// stored; a change builds a new one.
type poolState struct {
	sets     [][]endpoint // per member: the backends it stands for now
	eps      []endpoint   // sets flattened; eps[i] describes backends[i]
	backends []*Backend
	index    map[*Backend]int // membership check for sticky hints, stack lookup
	byID     map[string]*Backend
	levels   []level      // priority groups, first = lowest priority number
	stacks   []*connStack // idle connections, per backend (same order)
	// weights are the weights the levels' balancers were built with
	// (overrides in effect), weightGen the registry's weight generation
	// read before them; a state stored with an older one than the
	// registry's is rebuilt (see Registry.weightsChanged).
	weights   []int
	weightGen uint64
	// retired holds the stacks of the backends the previous state had and
	// this one dropped, closed: a request that picked one of them just
	// before the swap still finds its stack.
	retired map[*Backend]*connStack
}

// NewPool validates cfg and builds the pool. Backend state comes from reg, so
// a backend that keeps its ID and Addr across a reload keeps its health and
// counters; a nil reg gives the pool private state.
//
// Names to resolve (see PoolConfig.Resolve) are looked up before NewPool
// returns, for at most initialResolveTimeout. A host name that does not
// resolve yet is dialled by name until the resolver gets an answer; an SRV
// name has nothing to fall back on, and NewPool fails.
func NewPool(cfg PoolConfig, reg *Registry) (*Pool, error) {
	if len(cfg.Backends) == 0 {
		return nil, errors.New("upstream: pool has no backends")
	}
	if cfg.DialTimeout < 0 || cfg.ResponseHeaderTimeout < 0 || cfg.IdleConnTimeout < 0 || cfg.MaxIdleConnsPerHost < 0 || cfg.MinActive < 0 || cfg.Resolve < 0 {
		return nil, errors.New("upstream: pool timeouts and limits must not be negative")
	}
	if reg == nil {
		reg = NewRegistry()
	}
	members, err := compileMembers(cfg.Backends, cfg.Resolve > 0)
	if err != nil {
		return nil, err
	}
	p := &Pool{cfg: cfg, reg: reg, members: members}
	p.cfg.Backends = nil
	if cfg.MinActive == 0 {
		p.cfg.MinActive = 1
	}
	p.cfg.DialTimeout = cfg.dialTimeout()
	p.cfg.ResponseHeaderTimeout = cfg.responseHeaderTimeout()
	p.cfg.IdleConnTimeout = cfg.idleConnTimeout()
	p.cfg.MaxIdleConnsPerHost = cfg.maxIdleConnsPerHost()
	p.cfg.Resolver = cfg.resolver()

	sets := make([][]endpoint, len(members))
	for i := range members {
		sets[i] = members[i].unresolved()
	}
	if p.hasNames() {
		ctx, cancel := context.WithTimeout(context.Background(), initialResolveTimeout)
		var errs []error
		sets, errs = p.lookup(ctx, sets)
		cancel()
		for i, m := range members {
			if m.kind == srvName && len(sets[i]) == 0 {
				return nil, fmt.Errorf("upstream: backend %q: %w", m.cfg.ID, errs[i])
			}
		}
	}
	st, err := p.newState(sets, nil)
	if err != nil {
		return nil, err
	}
	p.state.Store(st)
	p.backends, p.stacks = st.backends, st.stacks
	p.upgrades = p.newUpgradeTransport()
	if p.cfg.usesH2() {
		tr, err := p.newH2Transport()
		if err != nil {
			return nil, err
		}
		p.h2.Store(tr)
	} else if p.cfg.Protocol != "" && p.cfg.Protocol != ProtocolHTTP1 {
		return nil, fmt.Errorf("upstream: protocol %q: want http1, h2 or h2c", p.cfg.Protocol)
	}
	// Registered last, so that a pool that failed is not; a weight changed
	// since the state was built is taken now (see weightsChanged).
	reg.addPool(p)
	p.reweigh()
	return p, nil
}

// newState builds the membership of sets. Backends come from the Registry
// by identity; a backend prev already has keeps its *Backend and its
// connection stack, so that its idle connections and the requests on them
// carry over.
func (p *Pool) newState(sets [][]endpoint, prev *poolState) (*poolState, error) {
	n := 0
	for _, set := range sets {
		n += len(set)
	}
	st := &poolState{
		sets:     sets,
		eps:      make([]endpoint, 0, n),
		backends: make([]*Backend, 0, n),
		index:    make(map[*Backend]int, n),
		byID:     make(map[string]*Backend, n),
		stacks:   make([]*connStack, 0, n),
	}
	for _, set := range sets {
		for _, e := range set {
			if _, dup := st.byID[e.cfg.ID]; dup {
				return nil, fmt.Errorf("upstream: backend id %q used twice in one pool", e.cfg.ID)
			}
			var (
				b *Backend
				s *connStack
			)
			if prev != nil {
				// Taken from prev rather than the registry: a Retain that
				// raced this pass must not split the state of an address.
				if old := prev.byID[e.cfg.ID]; old != nil && old.addr == e.cfg.Addr {
					b = old
					if i := prev.index[old]; prev.eps[i].tlsHost == e.tlsHost {
						s = prev.stacks[i]
					}
				}
			}
			if b == nil {
				b = p.reg.Backend(e.cfg.ID, e.cfg.Addr)
			}
			if s == nil {
				s = p.newStack(e)
			}
			st.index[b] = len(st.backends)
			st.byID[e.cfg.ID] = b
			st.backends = append(st.backends, b)
			st.stacks = append(st.stacks, s)
			st.eps = append(st.eps, e)
		}
	}
	// The generation is read before the overrides: a weight changed in
	// between leaves this state with an older generation, and it is
	// rebuilt when stored (see Registry.weightsChanged).
	st.weightGen = p.reg.weightGen.Load()
	st.weights = effectiveWeights(st.backends, st.eps)
	levels, err := p.levelsFor(st.backends, st.eps, st.weights)
	if err != nil {
		return nil, err
	}
	st.levels = levels
	return st, nil
}

// levelsFor builds the priority levels of backends, described by eps,
// with their balancers over the given weights.
func (p *Pool) levelsFor(backends []*Backend, eps []endpoint, weights []int) ([]level, error) {
	cfgs := make([]BackendConfig, len(eps))
	for i, e := range eps {
		cfgs[i] = e.cfg
		cfgs[i].Weight = weights[i]
	}
	return buildLevels(backends, cfgs, func(bs []*Backend, ws []int) (Balancer, error) {
		return NewBalancer(p.cfg.Balancer, bs, ws, p.cfg.BalancerOptions)
	})
}

// newStack returns a connection stack for e. When e's address is an IP
// its name resolved to, TLS sends and verifies the name: the certificate
// names the service, not its current addresses.
func (p *Pool) newStack(e endpoint) *connStack {
	s := newConnStack(e.cfg.Addr, &p.cfg)
	if s.tls != nil && e.tlsHost != "" {
		_, port, _ := net.SplitHostPort(e.cfg.Addr)
		s.tls = backendTLS(p.cfg.TLS, net.JoinHostPort(e.tlsHost, port))
	}
	s.owner.Store(p)
	return s
}

// swap makes next the pool's membership, unless the pool is closed, and
// closes the stacks of the backends next drops: their idle connections
// now, the ones in use when their request ends. A dropped stack that a
// newer pool adopted is that pool's to close, and stays open. Only the
// resolver calls it (one per pool), so next was built from the state it
// replaces.
func (p *Pool) swap(next *poolState) bool {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return false
	}
	prev := p.state.Load()
	next = p.withWeights(next) // a weight may have changed while next was built
	keep := make(map[*connStack]bool, len(next.stacks))
	for _, s := range next.stacks {
		keep[s] = true
	}
	next.retired = make(map[*Backend]*connStack)
	for i, s := range prev.stacks {
		if !keep[s] {
			next.retired[prev.backends[i]] = s
		}
	}
	p.state.Store(next)
	var closing []*connStack
	for _, s := range next.retired {
		if s.owner.Load() == p { // read under p.mu: see connStack.owner
			closing = append(closing, s)
		}
	}
	p.mu.Unlock()
	for _, s := range closing {
		s.close()
	}
	return true
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

// stack returns the idle connections of b. A backend the resolver has
// dropped since the request picked it has a closed stack: the request
// dials, and its connection is closed after use.
func (p *Pool) stack(b *Backend) *connStack {
	st := p.state.Load()
	if i, ok := st.index[b]; ok {
		return st.stacks[i]
	}
	if s := st.retired[b]; s != nil {
		return s
	}
	// Dropped two swaps ago within one request's pick: rarer still, and
	// the TLS name of an address is lost with its endpoint.
	s := newConnStack(b.addr, &p.cfg)
	s.close()
	return s
}

// Backend returns the backend with the given ID, or nil if the pool has
// none. The backends a name stands for are ID@IP (ID@IP:port for SRV).
func (p *Pool) Backend(id string) *Backend { return p.state.Load().byID[id] }

// Backends returns the pool's backends in configuration order (the
// addresses of one name sorted). The slice is a copy; the backends are
// shared.
func (p *Pool) Backends() []*Backend { return append([]*Backend(nil), p.state.Load().backends...) }

// Config returns the pool's configuration with defaults resolved and empty
// IDs and weights filled in; Config().Backends[i] describes Backends()[i]
// (names expanded to the backends they stand for: Addr is the address
// dialled). Under a resolver two calls may see different memberships.
func (p *Pool) Config() PoolConfig {
	c := p.cfg
	eps := p.state.Load().eps
	c.Backends = make([]BackendConfig, len(eps))
	for i, e := range eps {
		c.Backends[i] = e.cfg
	}
	return c
}

// Contains reports whether b is one of the pool's backends.
func (p *Pool) Contains(b *Backend) bool {
	_, ok := p.state.Load().index[b]
	return ok
}

// Pick asks the balancer of the priority level active now; see Balancer.
func (p *Pool) Pick(skip func(*Backend) bool) *Backend { return p.PickAt(time.Now(), skip) }

// Close stops the resolver, if any, and closes the pool's idle keep-alive
// connections. Call it when a reload has retired the pool. Connections
// still in use are closed when their request ends; requests that still
// reach the pool dial connections that are closed after use. The stacks
// and the h2 transport that another pool adopted are that pool's now:
// Close leaves them open, and requests still on this pool keep using
// them. Close may be called more than once.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	run := p.resolving
	p.mu.Unlock()
	p.reg.removePool(p)
	if run != nil {
		p.stopResolver(run)
	}
	// What p owns stays p's: an owner changes only under the mutex of
	// the pool that owns it, while that pool is open, and closed was set
	// under p's.
	for _, s := range p.state.Load().stacks {
		if s.owner.Load() == p {
			s.close()
		}
	}
	p.upgrades.CloseIdleConnections()
	if tr := p.h2.Load(); tr != nil && tr.owner.Load() == p {
		tr.CloseIdleConnections()
	}
}
