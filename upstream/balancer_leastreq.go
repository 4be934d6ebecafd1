package upstream

import "sync/atomic"

// LeastRequests picks the backend with the fewest requests in flight per
// unit of weight. A pick reads every backend's counter (one atomic load
// each), so it suits pools of tens of backends; P2CEWMA samples two.
//
// The load of a backend is (InFlight+1)/weight, not InFlight/weight: the +1
// is the request being placed. Without it an idle pool ties every backend
// at 0 and the weights would not count until requests overlap; with it a
// weight-3 backend takes three concurrent requests for each one of a
// weight-1 backend from the first request on (Envoy's least_request counts
// the same way).
//
// Ties are broken by a counter that advances with every tied pick: the
// k tied backends are taken in turn, the counter modulo k choosing which.
// (A rotating start of the scan would be simpler but is not fair: the
// backend after a busy one would win the ties of both, twice its share.)
type LeastRequests struct {
	backends []*Backend
	weights  []int64
	next     atomic.Uint64 // tie breaker, advanced only when there is a tie
}

// NewLeastRequests returns a least-requests balancer over backends with the
// given weights (same length, each 1..MaxWeight).
func NewLeastRequests(backends []*Backend, weights []int) (*LeastRequests, error) {
	if err := checkWeights("leastreq", backends, weights); err != nil {
		return nil, err
	}
	l := &LeastRequests{
		backends: append([]*Backend(nil), backends...),
		weights:  make([]int64, len(weights)),
	}
	for i, w := range weights {
		l.weights[i] = int64(w)
	}
	return l, nil
}

// Pick implements Balancer. It reads every backend's count once. skip is
// called only for a backend as good as the best so far, so at most once per
// backend and, when the loads differ, a few times per pick. The tie counter
// is touched only when there is a tie.
func (l *LeastRequests) Pick(skip func(*Backend) bool) *Backend {
	var small [stackWords]uint64
	ties := bitset(small[:])
	if n := words(len(l.backends)); n > len(small) {
		ties = make(bitset, n)
	}
	best, k := -1, 0
	var bestLoad, bestW int64 // (InFlight+1) and weight of best
	for i, b := range l.backends {
		load, w := b.InFlight()+1, l.weights[i]
		if best >= 0 {
			// load/w against bestLoad/bestW, without division. Neither
			// side comes near overflow: weights are at most MaxWeight.
			switch lhs, rhs := load*bestW, bestLoad*w; {
			case lhs > rhs:
				continue
			case lhs == rhs:
				if skip == nil || !skip(b) {
					ties.set(i)
					k++
				}
				continue
			}
		}
		if skip != nil && skip(b) {
			continue
		}
		if k > 1 {
			clear(ties)
		} else if best >= 0 {
			ties.unset(best)
		}
		ties.set(i)
		best, k, bestLoad, bestW = i, 1, load, w
	}
	switch k {
	case 0:
		return nil
	case 1:
		return l.backends[best]
	}
	return l.backends[ties.nth(int((l.next.Add(1)-1)%uint64(k)))]
}
