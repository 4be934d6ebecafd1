package upstream

import (
	"math/rand/v2"
	"sync"
	"time"
)

// WithSlowStart returns b with slow start: a backend that came up (see
// Backend.UpSince) less than d ago gets a share of the picks that grows
// linearly from nothing to its full weight over d, so that a backend back
// from an outage, or just added, warms its caches and connection pools on
// a trickle instead of taking its full share (or, under leastreq, the whole
// backlog: it has nothing in flight) at once. backends are the backends b
// picks from; now is the clock, nil for time.Now. d <= 0 returns b as is.
//
// HAProxy scales the weight itself by elapsed/d. A wrapper cannot reach the
// weights inside any balancer, so it approximates: on each pick a ramping
// backend is treated as skipped with probability 1 - elapsed/d. With
// f = elapsed/d, w its weight and W the total, its share is then f·w/W
// under random (the thinned picks go to the others in proportion) and
// within about 10% of that under round robin, whose walk past a skipped
// entry shifts the cycle a little; HAProxy's scaled weight would give
// f·w/(W-(1-f)·w), slightly more. All start at 0 and reach the full w/W at
// the end of the ramp. Under leastreq and p2c, which place by load, the
// thinning caps the rate at which a new backend is offered requests while
// its low load draws them.
//
// One random threshold is drawn per pick and compared with every backend's
// elapsed time, so a pick sees a consistent answer however often the inner
// balancer asks about the same backend, and backends that came up together
// are skipped together. When every backend that skip accepts is ramping
// and thinned out (all of them came up together, as when the gateway
// starts), the pick is made again without slow start: the ramp spreads load,
// it never refuses a request.
//
// If b is a KeyBalancer, so is the result, and PickKey passes through
// without slow start: thinning would send a key to a random other backend
// on some requests and break the affinity the key is for, while the load
// bound of ConsistentHash already caps a new backend's share.
//
// Pick first checks whether any of backends is ramping (one atomic load
// each); if none is, which is nearly always, it is b's Pick and nothing
// else, so slow start leaves b's picks exactly as they were. Otherwise the
// combined skip function lives in a pooled struct that is reused, not in a
// closure per pick, so Pick allocates nothing either way.
func WithSlowStart(b Balancer, backends []*Backend, d time.Duration, now func() time.Time) Balancer {
	if d <= 0 {
		return b
	}
	if now == nil {
		now = time.Now
	}
	s := &slowStart{
		inner:    b,
		backends: append([]*Backend(nil), backends...),
		ramp:     int64(d),
		now:      now,
	}
	s.picks.New = func() any {
		p := &rampPick{ramp: s.ramp}
		p.rejectFn = p.rejects // bound once per pooled struct, not per pick
		return p
	}
	if kb, ok := b.(KeyBalancer); ok {
		return &slowStartKey{slowStart: s, keyed: kb}
	}
	return s
}

// slowStart is the Balancer WithSlowStart returns.
type slowStart struct {
	inner    Balancer
	backends []*Backend
	ramp     int64 // nanoseconds
	now      func() time.Time
	picks    sync.Pool // of *rampPick
}

// slowStartKey is slowStart over a KeyBalancer.
type slowStartKey struct {
	*slowStart
	keyed KeyBalancer
}

var (
	_ Balancer    = (*slowStart)(nil)
	_ KeyBalancer = (*slowStartKey)(nil)
)

// rampPick is the state of one pick: the caller's skip function, the time
// and the threshold. rejectFn is its rejects method as a func value, made
// once when the struct is made: a method value made per pick would be
// allocated per pick, as it escapes into the inner balancer.
type rampPick struct {
	skip      func(*Backend) bool
	nowNs     int64
	threshold int64 // uniform in [0, ramp)
	ramp      int64
	rejectFn  func(*Backend) bool
}

// rejects is the inner balancer's skip function: the caller's, then the
// ramp. A backend up for e nanoseconds passes if e > threshold, which has
// probability e/ramp for e in [0, ramp].
func (p *rampPick) rejects(b *Backend) bool {
	if p.skip != nil && p.skip(b) {
		return true
	}
	// A backend that came up "in the future" (the wall clock stepped back)
	// counts as just up; the fallback of Pick keeps that from refusing.
	return p.nowNs-b.UpSince().UnixNano() <= p.threshold
}

// Pick implements Balancer.
func (s *slowStart) Pick(skip func(*Backend) bool) *Backend {
	nowNs := s.now().UnixNano()
	if !s.ramping(nowNs) {
		return s.inner.Pick(skip)
	}
	p := s.picks.Get().(*rampPick)
	p.skip = skip
	p.nowNs = nowNs
	p.threshold = rand.Int64N(s.ramp)
	b := s.inner.Pick(p.rejectFn)
	p.skip = nil // do not pin the caller's state in the pool
	s.picks.Put(p)
	if b == nil {
		b = s.inner.Pick(skip)
	}
	return b
}

// ramping reports whether any backend came up less than the ramp before
// nowNs (or after it).
func (s *slowStart) ramping(nowNs int64) bool {
	for _, b := range s.backends {
		if nowNs-b.UpSince().UnixNano() < s.ramp {
			return true
		}
	}
	return false
}

// PickKey implements KeyBalancer, without slow start.
func (s *slowStartKey) PickKey(key uint64, skip func(*Backend) bool) *Backend {
	return s.keyed.PickKey(key, skip)
}
