package upstream

import "math/rand/v2"

// P2CEWMA is the power of two choices over a latency-and-load score (as in
// Finagle's and Linkerd's "P2C + peak EWMA", Traefik's p2c): each pick draws
// two distinct backends at random and takes the one with the lower
//
//	score = latency EWMA × (InFlight+1) / weight
//
// Sampling two instead of scanning all keeps a pick O(1), and it avoids the
// herd that "always the best" causes when many proxies, or many requests in
// one, act on the same stale numbers: the slowest backend loses every
// comparison and gets no new requests, while the fastest still only wins the
// pairs it is drawn into.
//
// A backend with no latency sample yet (Latency() == 0) is scored with the
// other candidate's latency, so the two are compared by load alone; if
// neither has a sample, both are. A fixed default would either starve new
// backends (too high) or flood them until their first response comes back
// (too low); a backend scored like its peer gets its fair share of requests
// until it has a number of its own.
type P2CEWMA struct {
	backends []*Backend
	weights  []float64
}

// NewP2CEWMA returns a power-of-two-choices balancer over backends with the
// given weights (same length, each 1..MaxWeight).
func NewP2CEWMA(backends []*Backend, weights []int) (*P2CEWMA, error) {
	if err := checkWeights("p2c", backends, weights); err != nil {
		return nil, err
	}
	p := &P2CEWMA{
		backends: append([]*Backend(nil), backends...),
		weights:  make([]float64, len(weights)),
	}
	for i, w := range weights {
		p.weights[i] = float64(w)
	}
	return p, nil
}

// Pick implements Balancer. The common case is one random number, two skip
// calls and two scores. When skip rejects a candidate, Pick falls back to a
// scan that finds the backends skip accepts (calling skip once each) and
// draws the two candidates among those.
func (p *P2CEWMA) Pick(skip func(*Backend) bool) *Backend {
	n := len(p.backends)
	if n == 1 {
		b := p.backends[0]
		if skip != nil && skip(b) {
			return nil
		}
		return b
	}
	i, j := twoOf(rand.Uint64(), n)
	a, b := p.backends[i], p.backends[j]
	if skip == nil || (!skip(a) && !skip(b)) {
		return p.better(i, j)
	}
	return p.pickAmong(skip)
}

// twoOf maps r to two distinct indexes below n (n >= 2): the low and high
// halves of r each scaled by multiplication (Lemire), the second over n-1
// values and shifted past the first.
func twoOf(r uint64, n int) (i, j int) {
	i = int((r & 0xffffffff) * uint64(n) >> 32)
	j = int((r >> 32) * uint64(n-1) >> 32)
	if j >= i {
		j++
	}
	return i, j
}

// pickAmong draws the two candidates among the backends skip accepts.
func (p *P2CEWMA) pickAmong(skip func(*Backend) bool) *Backend {
	var small [stackWords]uint64
	ok := bitset(small[:])
	if n := words(len(p.backends)); n > len(small) {
		ok = make(bitset, n)
	}
	m := 0
	for i, b := range p.backends {
		if !skip(b) {
			ok.set(i)
			m++
		}
	}
	switch m {
	case 0:
		return nil
	case 1:
		return p.backends[ok.nth(0)]
	}
	i, j := twoOf(rand.Uint64(), m)
	return p.better(ok.nth(i), ok.nth(j))
}

// better returns the backend of i and j with the lower score; i on a tie
// (the two are drawn in random order).
func (p *P2CEWMA) better(i, j int) *Backend {
	a, b := p.backends[i], p.backends[j]
	la, lb := float64(a.Latency()), float64(b.Latency())
	if la == 0 {
		la = lb
	}
	if lb == 0 {
		lb = la
	}
	if la == 0 {
		la, lb = 1, 1
	}
	// la(ia+1)/wa > lb(ib+1)/wb, multiplied out.
	if la*float64(a.InFlight()+1)*p.weights[j] > lb*float64(b.InFlight()+1)*p.weights[i] {
		return b
	}
	return a
}
