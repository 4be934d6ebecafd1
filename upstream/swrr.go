package upstream

import (
	"errors"
	"fmt"
	"sync/atomic"
)

// MaxWeight bounds a backend's weight. The smooth round robin precomputes one
// cycle of picks, whose length is the sum of the (gcd-reduced) weights, so the
// bound keeps that table small: 100 backends at MaxWeight is 25,600 entries of
// 4 bytes. 256 is also HAProxy's limit, so configurations port over.
const MaxWeight = 256

// Balancer chooses a backend for one attempt of one request.
//
// Pick returns a backend for which skip returns false, or nil if skip rejects
// them all. skip may be nil. Pick is called concurrently by every request and
// must not take a lock they all share. A Balancer is immutable: a reload
// builds a new one.
type Balancer interface {
	Pick(skip func(*Backend) bool) *Backend
}

var _ Balancer = (*SWRR)(nil)

// SWRR is nginx's smooth weighted round robin: over each cycle of sum(weights)
// picks every backend gets exactly its weight, and the picks of a heavy
// backend are spread out rather than bunched (weights 5,1,1 give
// a a b a c a a, not a a a a a b c).
//
// The nginx algorithm mutates per-backend counters under a lock on every
// pick. Its output is a fixed cycle, so SWRR computes that cycle once at
// construction and a pick is one atomic increment and an index.
type SWRR struct {
	backends []*Backend
	seq      []int32 // one cycle of picks, as indexes into backends
	next     atomic.Uint64
}

// NewSWRR returns a smooth weighted round robin over backends with the given
// weights (same length, each 1..MaxWeight).
func NewSWRR(backends []*Backend, weights []int) (*SWRR, error) {
	if len(backends) == 0 {
		return nil, errors.New("upstream: swrr: no backends")
	}
	if len(weights) != len(backends) {
		return nil, fmt.Errorf("upstream: swrr: %d weights for %d backends", len(weights), len(backends))
	}
	g := 0
	for i, w := range weights {
		if w < 1 || w > MaxWeight {
			return nil, fmt.Errorf("upstream: swrr: backend %q: weight %d out of range 1..%d", backends[i].ID(), w, MaxWeight)
		}
		g = gcd(g, w)
	}
	// Dividing by the gcd gives the same proportions with a shorter cycle
	// (weights 100,200 behave as 1,2).
	reduced := make([]int, len(weights))
	total := 0
	for i, w := range weights {
		reduced[i] = w / g
		total += reduced[i]
	}
	return &SWRR{
		backends: append([]*Backend(nil), backends...),
		seq:      swrrCycle(reduced, total),
	}, nil
}

// swrrCycle runs nginx's algorithm (ngx_http_upstream_get_peer) for one full
// cycle: every round each backend's current weight grows by its weight, the
// largest wins (the first on ties) and pays back the total. After total
// rounds all current weights are back to zero, so the cycle repeats exactly.
func swrrCycle(weights []int, total int) []int32 {
	current := make([]int, len(weights))
	seq := make([]int32, total)
	for n := range seq {
		best := 0
		for i, w := range weights {
			current[i] += w
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		seq[n] = int32(best)
	}
	return seq
}

// Pick implements Balancer.
//
// The common case is one atomic add. When the backend at the cursor is
// skipped, Pick walks forward through the cycle to the next one that is not,
// then advances the shared cursor past the entries it walked. Without that
// advance the survivor right after a long run of a skipped heavy backend
// would absorb the whole run; with it, sequential picks still visit the
// surviving backends in cycle order, in proportion to their weights.
//
// The walk is bounded by one cycle, and skip is called at most once per
// backend (rejections are remembered in a bitset that lives on the stack for
// pools of up to 256 backends).
func (s *SWRR) Pick(skip func(*Backend) bool) *Backend {
	n := uint64(len(s.seq))
	start := s.next.Add(1) - 1
	b := s.backends[s.seq[start%n]]
	if skip == nil || !skip(b) {
		return b
	}
	var small [4]uint64
	rejected := small[:]
	if words := (len(s.backends) + 63) / 64; words > len(small) {
		rejected = make([]uint64, words)
	}
	first := s.seq[start%n]
	rejected[first/64] |= 1 << (first % 64)
	left := len(s.backends) - 1
	for k := uint64(1); k < n && left > 0; k++ {
		i := s.seq[(start+k)%n]
		if rejected[i/64]&(1<<(i%64)) != 0 {
			continue
		}
		b := s.backends[i]
		if !skip(b) {
			s.next.Add(k)
			return b
		}
		rejected[i/64] |= 1 << (i % 64)
		left--
	}
	return nil
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
