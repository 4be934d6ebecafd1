package upstream

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"
)

// Operator control of backends (the admin API): an admin state and a
// weight override per backend. Both live on the *Backend, so they survive
// a reload like health does, and both apply to every pool that names the
// backend (the same ID and address): they describe the server, not one
// app's view of it.
//
// The request path pays one atomic load per pick for this: the registry's
// count of held backends. While no backend of the registry is held out
// (the normal state) picks are exactly what they were; while one is,
// every pick checks the admin state of the candidates it considers. A
// weight change costs the request path nothing: the caller rebuilds the
// balancers of the pools concerned and swaps them in.

// AdminState is what an operator says a backend may take. The zero value
// is Ready. Health checks run, and health is tracked, in every state: a
// backend returned to Ready is picked at once if it is up.
type AdminState int32

const (
	// Ready takes traffic as its health allows.
	Ready AdminState = iota
	// Drain takes no new sessions: balancers never pick it, but a
	// request whose sticky hint (Target.Prefer) names it still goes to it
	// while it is up, so its users stay until they leave (a hash key is
	// not a session: its keys move at once, as if it were down). It still
	// counts toward MinActive of its priority group, so draining one
	// server does not pull the backup group in; a group whose up backends
	// all drain takes no new sessions, and the next group joins.
	Drain
	// Maint takes nothing: not even a sticky hint is honoured (the user
	// is re-pinned elsewhere), and it does not count toward MinActive.
	Maint
)

var adminStateNames = [...]string{Ready: "ready", Drain: "drain", Maint: "maint"}

// String returns "ready", "drain" or "maint", the names ParseAdminState
// reads and the admin API speaks.
func (s AdminState) String() string {
	if s.valid() {
		return adminStateNames[s]
	}
	return "AdminState(" + strconv.Itoa(int(s)) + ")"
}

func (s AdminState) valid() bool { return s >= Ready && s <= Maint }

// ErrUnknownAdminState is wrapped by ParseAdminState's and SetAdminState's
// error for a state that is not ready, drain or maint.
var ErrUnknownAdminState = errors.New("upstream: unknown admin state")

// ParseAdminState reads "ready", "drain" or "maint", in any case.
func ParseAdminState(s string) (AdminState, error) {
	for i, name := range adminStateNames {
		if strings.EqualFold(s, name) {
			return AdminState(i), nil
		}
	}
	return Ready, fmt.Errorf("%w %q (valid: ready, drain, maint)", ErrUnknownAdminState, s)
}

// ErrUnknownBackend is wrapped by the Pool's admin setters for an ID the
// pool does not have; the message names it.
var ErrUnknownBackend = errors.New("upstream: unknown backend")

// ErrInvalidWeight is wrapped by SetWeight's error for a weight outside
// 0..MaxWeight.
var ErrInvalidWeight = errors.New("upstream: invalid weight")

// AdminState returns the state an operator set; Ready by default.
func (b *Backend) AdminState() AdminState { return AdminState(b.admin.Load()) }

// SetAdminState sets b's admin state and reports whether it changed. It
// applies to every pool that has b from the next pick on; a request that
// already picked b finishes on it. A value other than Ready, Drain and
// Maint changes nothing (Pool.SetAdminState reports it as an error).
func (b *Backend) SetAdminState(s AdminState) (changed bool) {
	if !s.valid() {
		return false
	}
	return b.swapAdminState(s) != s
}

// swapAdminState sets b's state (a valid one) and returns the one it
// replaces. The registry's count of held backends is brought up to date
// under its mutex, so that concurrent changes and a Retain agree on it.
func (b *Backend) swapAdminState(s AdminState) AdminState {
	if b.reg == nil {
		return AdminState(b.admin.Swap(int32(s)))
	}
	b.reg.mu.Lock()
	defer b.reg.mu.Unlock()
	old := AdminState(b.admin.Swap(int32(s)))
	if old != s {
		b.reg.recountHeldLocked()
	}
	return old
}

// WeightOverride returns the weight SetWeight put in place of the
// configured ones, or 0 if there is none (Pool.Weight gives the weight
// in effect in a pool).
func (b *Backend) WeightOverride() int { return int(b.weight.Load()) }

// SetWeight overrides b's configured weight, in every pool that names b,
// with w (1..MaxWeight); 0 removes the override, restoring each pool's
// configured weight. Every balancer honours it, the hash ring included
// (adding or removing points only: keys move onto or off b alone). The
// override survives reloads like b's health, and pools built later use it.
//
// The balancers of a pool are built for their weights, so before SetWeight
// returns it rebuilds those of every open pool of b's registry and swaps
// them in; requests meanwhile pick with the old ones. That takes
// microseconds for ordinary pools, but a hash ring is 100 points per unit
// of weight: 100 backends at MaxWeight take most of a second.
func (b *Backend) SetWeight(w int) error {
	_, err := b.swapWeight(w)
	return err
}

// swapWeight sets the override, rebuilds the balancers of the registry's
// pools, and returns the override it replaced.
func (b *Backend) swapWeight(w int) (old int, err error) {
	if w < 0 || w > MaxWeight {
		return 0, fmt.Errorf("%w %d for backend %q (want 1..%d, or 0 to restore the configured weight)", ErrInvalidWeight, w, b.id, MaxWeight)
	}
	old = int(b.weight.Swap(int32(w)))
	if old != w && b.reg != nil {
		b.reg.weightsChanged()
	}
	return old, nil
}

// weightsChanged advances the weight generation and rebuilds the
// balancers of the open pools. The generation is advanced after the
// override is stored, and a pool's state records the generation it read
// before reading the overrides: a state built concurrently (NewPool, a
// resolver swap) that missed the change sees a newer generation when it
// is stored, and is rebuilt there (Pool.reweigh, Pool.swap).
func (r *Registry) weightsChanged() {
	r.weightGen.Add(1)
	r.mu.Lock()
	pools := make([]*Pool, 0, len(r.pools))
	for p := range r.pools {
		pools = append(pools, p)
	}
	r.mu.Unlock()
	for _, p := range pools {
		p.reweigh()
	}
}

// addPool makes weight changes rebuild p's balancers, until p is closed or
// a Retain leaves it out.
func (r *Registry) addPool(p *Pool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pools == nil {
		r.pools = make(map[*Pool]bool)
	}
	r.pools[p] = true
}

func (r *Registry) removePool(p *Pool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pools, p)
}

// recountHeldLocked stores the number of the registry's backends that are
// not Ready. r.mu is held.
func (r *Registry) recountHeldLocked() {
	n := int32(0)
	for _, b := range r.backends {
		if b.AdminState() != Ready {
			n++
		}
	}
	r.held.Store(n)
}

// SetAdminState sets the admin state of the pool's backend id (see
// Backend.SetAdminState) and logs the change as one line through the
// pool's Log. An unknown id is an error wrapping ErrUnknownBackend, an
// invalid state one wrapping ErrUnknownAdminState.
func (p *Pool) SetAdminState(id string, s AdminState) error {
	if !s.valid() {
		return fmt.Errorf("%w %s", ErrUnknownAdminState, s)
	}
	b, err := p.adminBackend(id)
	if err != nil {
		return err
	}
	if old := b.swapAdminState(s); old != s {
		logAdminChange(p.cfg.Log, b, old, s)
	}
	return nil
}

// SetWeight overrides the weight of the pool's backend id (see
// Backend.SetWeight; 0 restores the configured weight: the override
// applies in every pool that has the backend) and logs the change as it
// affects this pool. Errors wrap ErrUnknownBackend or ErrInvalidWeight.
func (p *Pool) SetWeight(id string, w int) error {
	b, err := p.adminBackend(id)
	if err != nil {
		return err
	}
	from := p.Weight(b)
	if _, err := b.swapWeight(w); err != nil {
		return err
	}
	if to := p.Weight(b); to != from {
		logWeightChange(p.cfg.Log, b, from, to)
	}
	return nil
}

// Weight returns b's weight in this pool: its override, if it has one,
// else the configured weight. 0 if b is not one of the pool's backends.
func (p *Pool) Weight(b *Backend) int {
	st := p.state.Load()
	i, ok := st.index[b]
	if !ok {
		return 0
	}
	if w := b.WeightOverride(); w > 0 {
		return w
	}
	return st.eps[i].cfg.Weight
}

func (p *Pool) adminBackend(id string) (*Backend, error) {
	if b := p.Backend(id); b != nil {
		return b, nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownBackend, id)
}

// reweigh rebuilds the pool's balancers if a weight changed since they
// were built. Only callers that may wait for p.mu call it: never a
// request.
func (p *Pool) reweigh() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if cur := p.state.Load(); cur != nil {
		if next := p.withWeights(cur); next != cur {
			p.state.Store(next)
		}
	}
}

// withWeights returns st, or, if a weight changed since st was built, a
// copy of st with the weights in effect now (the balancers rebuilt if
// one of st's backends changed). p.mu is held.
func (p *Pool) withWeights(st *poolState) *poolState {
	gen := p.reg.weightGen.Load()
	if gen == st.weightGen {
		return st
	}
	next := *st
	next.weightGen = gen
	next.weights = effectiveWeights(st.backends, st.eps)
	if !slices.Equal(next.weights, st.weights) {
		levels, err := p.levelsFor(st.backends, st.eps, next.weights)
		if err != nil {
			// Unreachable: the weights are 1..MaxWeight and the IDs were
			// accepted before. The old balancers stay.
			if p.cfg.Log != nil {
				p.cfg.Log.WithError(err).Error("upstream: balancers not rebuilt for new weights")
			}
			next.weights = st.weights
		} else {
			next.levels = levels
		}
	}
	return &next
}

// effectiveWeights returns the weight in effect for each backend: its
// override or eps[i]'s configured weight.
func effectiveWeights(backends []*Backend, eps []endpoint) []int {
	ws := make([]int, len(backends))
	for i, b := range backends {
		ws[i] = eps[i].cfg.Weight
		if w := b.WeightOverride(); w > 0 {
			ws[i] = w
		}
	}
	return ws
}

// readyPick is the skip function of a pick while a backend of the level
// is held out: the admin state, then the caller's skip. It comes from a
// pool, with fn bound once, so that such a pick allocates nothing.
type readyPick struct {
	skip func(*Backend) bool
	fn   func(*Backend) bool
}

func (r *readyPick) rejects(b *Backend) bool {
	return b.AdminState() != Ready || r.skip != nil && r.skip(b)
}

var readyPicks = sync.Pool{New: func() any {
	r := &readyPick{}
	r.fn = r.rejects
	return r
}}

// pickReady is bal's pick (by key if keyed and bal hashes) among the
// backends that are Ready and that skip accepts.
func pickReady(bal Balancer, keyed bool, key uint64, skip func(*Backend) bool) *Backend {
	r := readyPicks.Get().(*readyPick)
	r.skip = skip
	var b *Backend
	if kb, ok := bal.(KeyBalancer); ok && keyed {
		b = kb.PickKey(key, r.fn)
	} else {
		b = bal.Pick(r.fn)
	}
	r.skip = nil // do not pin the caller's state in the pool
	readyPicks.Put(r)
	return b
}

// logAdminChange logs an operator's change of b's admin state, in the
// words of the health lines: "backend ID ready -> drain".
func logAdminChange(log *logrus.Entry, b *Backend, from, to AdminState) {
	if log == nil {
		return
	}
	log.WithFields(logrus.Fields{
		"backend": b.id, "addr": b.addr, "from": from.String(), "to": to.String(), "reason": "admin",
	}).Info("backend " + b.id + " " + from.String() + " -> " + to.String())
}

// logWeightChange logs an operator's change of b's weight in a pool:
// "backend ID weight 1 -> 3".
func logWeightChange(log *logrus.Entry, b *Backend, from, to int) {
	if log == nil {
		return
	}
	f, t := strconv.Itoa(from), strconv.Itoa(to)
	log.WithFields(logrus.Fields{
		"backend": b.id, "addr": b.addr, "from": from, "to": to, "reason": "admin",
	}).Info("backend " + b.id + " weight " + f + " -> " + t)
}
