package upstream

import "math/rand/v2"

// Random picks a backend at random in proportion to its weight. Unlike
// round robin it shares no cursor between requests: a pick is one draw
// from the runtime's per-thread generator (math/rand/v2's global source,
// lock-free since Go 1.22) and a binary search.
type Random struct {
	backends []*Backend
	weights  []uint64
	cum      []uint64 // cum[i] = weights[0] + ... + weights[i]
}

// NewRandom returns a weighted random balancer over backends with the given
// weights (same length, each 1..MaxWeight).
func NewRandom(backends []*Backend, weights []int) (*Random, error) {
	if err := checkWeights("random", backends, weights); err != nil {
		return nil, err
	}
	r := &Random{
		backends: append([]*Backend(nil), backends...),
		weights:  make([]uint64, len(weights)),
		cum:      make([]uint64, len(weights)),
	}
	var total uint64
	for i, w := range weights {
		r.weights[i] = uint64(w)
		total += uint64(w)
		r.cum[i] = total
	}
	return r, nil
}

// Pick implements Balancer. The common case is one draw and a search; when
// skip rejects the backend drawn, Pick draws again among the backends skip
// accepts, in proportion to their weights, calling skip once per backend.
func (r *Random) Pick(skip func(*Backend) bool) *Backend {
	i := r.index(rand.Uint64N(r.cum[len(r.cum)-1]))
	b := r.backends[i]
	if skip == nil || !skip(b) {
		return b
	}
	return r.pickAmong(skip, i)
}

// index returns the backend whose share of [0, total weight) holds x: the
// first i with cum[i] > x.
func (r *Random) index(x uint64) int {
	lo, hi := 0, len(r.cum)-1
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r.cum[m] > x {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo
}

// pickAmong draws among the backends that skip accepts; rejected is one it
// already rejected.
func (r *Random) pickAmong(skip func(*Backend) bool, rejected int) *Backend {
	var small [stackWords]uint64
	ok := bitset(small[:])
	if n := words(len(r.backends)); n > len(small) {
		ok = make(bitset, n)
	}
	var total uint64
	for i, b := range r.backends {
		if i != rejected && !skip(b) {
			ok.set(i)
			total += r.weights[i]
		}
	}
	if total == 0 {
		return nil
	}
	x := rand.Uint64N(total)
	for i, w := range r.weights {
		if !ok.has(i) {
			continue
		}
		if x < w {
			return r.backends[i]
		}
		x -= w
	}
	return nil // unreachable: x < total
}
