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
	"math"
	"slices"
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
	// Addr is the host:port to dial. With PoolConfig.Resolve set, a host
	// that is a name (not an IP literal) is looked up (A and AAAA) every
	// Resolve and the entry stands for one backend per address, ID@IP.
	// With SRV, Addr is the owner name of SRV records instead, without a
	// port ("_http._tcp.example.com").
	Addr string
	// Weight is the relative share of requests, 1..MaxWeight. Zero means 1.
	Weight int
	// Priority is the backend's group: lower groups take traffic first
	// (see PoolConfig.MinActive). Default 0.
	Priority int
	// SRV makes Addr an SRV name: the entry stands for one backend per
	// target address, ID@IP:port, with the records' priorities and
	// weights (Weight and Priority must be left zero). See resolve.go.
	SRV bool
}

// identity is what makes two configured backends "the same server" across
// reloads: a backend that keeps its ID and address keeps its state.
type identity struct{ id, addr string }

// Backend is the live state of one backend server. It is shared by every pool
// and every configuration generation that names the same ID and Addr, so it
// holds only state, never configuration such as the configured weight (which
// belongs to a pool: two apps may weigh the same server differently). What
// an operator sets at run time is state and lives here, so it survives
// reloads like health does: the admin state and the weight override (see
// adminstate.go), and the sticky sessions seen (stickycount.go).
//
// All methods are safe for concurrent use and never block: they are atomics.
// (The admin setters, called by an operator, take the registry's mutex.)
type Backend struct {
	id, addr string
	reg      *Registry // the registry that made b, told of admin changes; nil for a private backend

	inflight  atomic.Int64 // requests sent and not yet finished
	downUntil atomic.Int64 // unix nanoseconds; 0 means up
	fails     atomic.Int32 // ejections since the last success, drives the backoff
	errs      atomic.Int32 // consecutive failed answers (timeouts, 5xx), see Fail

	checkDown atomic.Bool   // the active health check says down
	upSince   atomic.Int64  // unix nanoseconds it last came up (slow start)
	ewmaNs    atomic.Uint64 // float64 bits: latency EWMA to the response head

	admin  atomic.Int32                  // AdminState set by an operator
	weight atomic.Int32                  // runtime weight override; 0: each pool's configured weight
	sticky atomic.Pointer[stickyTracker] // made by the first NoteSticky
}

// newBackend returns the state of a backend that is up since now.
func newBackend(id, addr string, now time.Time) *Backend {
	b := &Backend{id: id, addr: addr}
	b.upSince.Store(now.UnixNano())
	return b
}

// ID returns the backend's stable name (the sticky-session value).
func (b *Backend) ID() string { return b.id }

// Addr returns the host:port the backend is dialled at.
func (b *Backend) Addr() string { return b.addr }

// InFlight returns the number of requests currently forwarded to b, counted
// from the first connect attempt until the response body (or the upgraded
// connection) is finished.
func (b *Backend) InFlight() int64 { return b.inflight.Load() }

// Up reports whether b may be given traffic at now: the active check (if
// any) says up, and it is not inside a passive backoff window. When the
// window ends, b is up again on trial: the next failure ejects it for
// longer, the next success clears the record.
func (b *Backend) Up(now time.Time) bool {
	if b.checkDown.Load() {
		return false
	}
	d := b.downUntil.Load()
	return d == 0 || now.UnixNano() >= d
}

// CheckedDown reports whether the active health check holds b down.
func (b *Backend) CheckedDown() bool { return b.checkDown.Load() }

// SetChecked records the active health check's verdict and reports
// whether it changed. A backend that comes back is up since now (slow
// start ramps from there) and its passive record is cleared: the check
// just proved it answers.
func (b *Backend) SetChecked(up bool, now time.Time) (changed bool) {
	if !b.checkDown.CompareAndSwap(up, !up) {
		return false
	}
	if up {
		b.upSince.Store(now.UnixNano())
		b.errs.Store(0)
		b.fails.Store(0)
		b.downUntil.Store(0)
	}
	return true
}

// UpSince is when b last came back (or was first configured): slow start
// ramps its weight from there.
func (b *Backend) UpSince() time.Time { return time.Unix(0, b.upSince.Load()) }

// Latency returns the EWMA of the time to the response head, 0 before the
// first response.
func (b *Backend) Latency() time.Duration {
	return time.Duration(math.Float64frombits(b.ewmaNs.Load()))
}

// ewmaWeight is the weight of a new sample: about the last 10 responses
// count, so a backend that slows down is noticed within a few requests.
const ewmaWeight = 0.1

// ObserveLatency adds one response's time to the response head. A lost
// compare-and-swap drops the sample rather than retrying: the average is
// an estimate, and the request path must not spin.
func (b *Backend) ObserveLatency(d time.Duration) {
	old := b.ewmaNs.Load()
	prev := math.Float64frombits(old)
	next := float64(d)
	if old != 0 {
		next = prev + ewmaWeight*(float64(d)-prev)
	}
	b.ewmaNs.CompareAndSwap(old, math.Float64bits(next))
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
//
// It reports whether this call took b out of rotation (the caller logs the
// state change).
func (b *Backend) MarkFailed(now time.Time) (ejected bool) {
	d := b.downUntil.Load()
	nowNs := now.UnixNano()
	if d != 0 && nowNs < d {
		return false
	}
	n := b.fails.Load() + 1
	if b.downUntil.CompareAndSwap(d, now.Add(backoff(n)).UnixNano()) {
		b.fails.Store(n)
		b.errs.Store(0)
		return true
	}
	return false
}

// Fail records a failed answer (a response timeout, or a 5xx where the
// app counts those) and ejects b, as MarkFailed does, once threshold of
// them come in a row. It reports whether this call ejected b.
func (b *Backend) Fail(now time.Time, threshold int) (ejected bool) {
	if int(b.errs.Add(1)) < threshold {
		return false
	}
	return b.MarkFailed(now)
}

// MarkSucceeded records that b answered a request, ending any backoff.
//
// It is called on every response, so it only writes when there is something
// to reset: the common case is two loads of an unshared cache line. A success
// of a request that started before a concurrent failure may clear that
// failure; the next failure marks b down again, which is the right trade for
// a passive check that must not lock.
//
// It reports whether b had been ejected (the caller logs it back up); b
// is then up since now, for slow start.
func (b *Backend) MarkSucceeded(now time.Time) (recovered bool) {
	if b.errs.Load() != 0 {
		b.errs.Store(0)
	}
	if b.downUntil.Load() != 0 || b.fails.Load() != 0 {
		b.fails.Store(0)
		if b.downUntil.Swap(0) != 0 {
			b.upSince.Store(now.UnixNano())
			return true
		}
	}
	return false
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
// reload) and by an operator's admin changes, never on the request path.
type Registry struct {
	mu       sync.Mutex
	backends map[identity]*Backend
	// Operator changes (adminstate.go). held counts the backends that
	// are not Ready; every pick loads it. weightGen advances with every
	// change of a weight override, and pools are the pools built from
	// the registry and still open, whose balancers such a change rebuilds
	// (NewPool adds a pool; Close removes it, and Retain keeps only the
	// pools it is given). pools is guarded by mu.
	held      atomic.Int32
	weightGen atomic.Uint64
	pools     map[*Pool]bool
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
	b := newBackend(id, addr, time.Now())
	b.reg = r
	r.backends[k] = b
	return b
}

// Retain forgets every backend that none of pools uses and returns how many
// were forgotten. Call it after a reload has swapped in the new pools; a
// request still running on an old pool keeps its *Backend alive, it only
// stops being shared with future pools. A pool counts with its current
// membership; an address its resolver dropped stays in the registry until
// the next Retain, so one that comes back within that time keeps its state.
// Other pools are retired: weight changes no longer rebuild their
// balancers.
func (r *Registry) Retain(pools ...*Pool) int {
	keep := make(map[*Backend]bool)
	for _, p := range pools {
		for _, b := range p.state.Load().backends {
			keep[b] = true
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for p := range r.pools {
		if !slices.Contains(pools, p) {
			delete(r.pools, p)
		}
	}
	n := 0
	for k, b := range r.backends {
		if !keep[b] {
			delete(r.backends, k)
			n++
		}
	}
	if n > 0 {
		r.recountHeldLocked() // a forgotten backend no longer holds picks back
	}
	return n
}

// Len returns the number of backends the registry holds.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.backends)
}
