// Package upstream owns everything between a routed request and a backend
// server: pools, backend state, balancers, retries, and the HTTP/1.1 client
// that talks to backends (h1*.go, forward.go).
//
// State that must outlive a configuration reload (passive health, in-flight
// counts, later active health, latency and queues) lives in a *Backend that a
// Registry hands out by backend identity; pools, balancers and proxies are
// immutable and rebuilt on every reload around those shared objects.
package upstream

import (
	"sync"
	"sync/atomic"
	"time"
)

// Passive failure backoff: a backend whose connect fails is skipped for
// minBackoff, doubling on every further failure up to maxBackoff. A single
// successful response resets it. One refused connect is cheap to detect, so
// the first window is short; the cap keeps a dead backend from being probed
// by live traffic more than twice a minute.
const (
	minBackoff = time.Second
	maxBackoff = 30 * time.Second
)

// BackendConfig is one backend of a pool, as written in the configuration.
type BackendConfig struct {
	// ID is the stable name of the backend, the value a sticky session
	// remembers. Empty means Addr.
	ID string
	// Addr is the host:port to dial.
	Addr string
	// Weight is the relative share of requests, 1..MaxWeight. Zero means 1.
	Weight int
}

// identity is what makes two configured backends "the same server" across
// reloads: a backend that keeps its ID and address keeps its state.
type identity struct{ id, addr string }

// Backend is the live state of one backend server. It is shared by every pool
// and every configuration generation that names the same ID and Addr, so it
// holds only state, never configuration such as the weight (which belongs to
// a pool: two apps may weigh the same server differently).
//
// All methods are safe for concurrent use and never block: they are atomics.
type Backend struct {
	id, addr string

	inflight  atomic.Int64 // requests sent and not yet finished
	downUntil atomic.Int64 // unix nanoseconds; 0 means up
	fails     atomic.Int32 // consecutive connect failures, drives the backoff
}

// ID returns the backend's stable name (the sticky-session value).
func (b *Backend) ID() string { return b.id }

// Addr returns the host:port the backend is dialled at.
func (b *Backend) Addr() string { return b.addr }

// InFlight returns the number of requests currently forwarded to b, counted
// from the first connect attempt until the response body (or the upgraded
// connection) is finished.
func (b *Backend) InFlight() int64 { return b.inflight.Load() }

// Up reports whether b may be given traffic at now: it is not inside a
// passive backoff window.
func (b *Backend) Up(now time.Time) bool {
	d := b.downUntil.Load()
	return d == 0 || now.UnixNano() >= d
}

// DownUntil returns the end of the current backoff window, or the zero time
// if b has not failed since its last success.
func (b *Backend) DownUntil() time.Time {
	d := b.downUntil.Load()
	if d == 0 {
		return time.Time{}
	}
	return time.Unix(0, d)
}

// MarkFailed records that a connection to b could not be made at now and
// takes it out of rotation for a backoff that doubles with each consecutive
// failure (1s, 2s, 4s ... 30s).
//
// Failures reported while b is already down belong to the same outage (many
// requests racing to the same dead address) and do not lengthen the backoff.
// Of concurrent reports that find b up, one wins the compare-and-swap and the
// others are the same outage too.
func (b *Backend) MarkFailed(now time.Time) {
	d := b.downUntil.Load()
	nowNs := now.UnixNano()
	if d != 0 && nowNs < d {
		return
	}
	n := b.fails.Load() + 1
	if b.downUntil.CompareAndSwap(d, now.Add(backoff(n)).UnixNano()) {
		b.fails.Store(n)
	}
}

// MarkSucceeded records that b answered a request, ending any backoff.
//
// It is called on every response, so it only writes when there is something
// to reset: the common case is two loads of an unshared cache line. A success
// of a request that started before a concurrent failure may clear that
// failure; the next failure marks b down again, which is the right trade for
// a passive check that must not lock.
func (b *Backend) MarkSucceeded() {
	if b.downUntil.Load() != 0 || b.fails.Load() != 0 {
		b.fails.Store(0)
		b.downUntil.Store(0)
	}
}

// backoff returns the down window after the n-th consecutive failure.
func backoff(n int32) time.Duration {
	if n < 1 {
		n = 1
	}
	if n > 6 { // 1s<<5 = 32s already exceeds the cap; avoids shift overflow
		return maxBackoff
	}
	return min(minBackoff<<(n-1), maxBackoff)
}

// Registry hands out one *Backend per identity (ID and Addr), so that the
// pools of a new configuration pick up the health and counters of the old
// one. The zero value is ready to use.
//
// The mutex is taken only while pools are built and pruned (at startup and on
// reload), never on the request path.
type Registry struct {
	mu       sync.Mutex
	backends map[identity]*Backend
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{} }

// Backend returns the state object for the backend named id at addr,
// creating it on first use. An empty id means addr, as in BackendConfig.
func (r *Registry) Backend(id, addr string) *Backend {
	if id == "" {
		id = addr
	}
	k := identity{id, addr}
	r.mu.Lock()
	defer r.mu.Unlock()
	if b, ok := r.backends[k]; ok {
		return b
	}
	if r.backends == nil {
		r.backends = make(map[identity]*Backend)
	}
	b := &Backend{id: id, addr: addr}
	r.backends[k] = b
	return b
}

// Retain forgets every backend that none of pools uses and returns how many
// were forgotten. Call it after a reload has swapped in the new pools; a
// request still running on an old pool keeps its *Backend alive, it only
// stops being shared with future pools.
func (r *Registry) Retain(pools ...*Pool) int {
	keep := make(map[*Backend]bool)
	for _, p := range pools {
		for _, b := range p.backends {
			keep[b] = true
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k, b := range r.backends {
		if !keep[b] {
			delete(r.backends, k)
			n++
		}
	}
	return n
}

// Len returns the number of backends the registry holds.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.backends)
}
