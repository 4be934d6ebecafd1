package filter

import (
	"net/http"
	"net/netip"
	"time"
)

// Sharing a limit between instances (tlsedge's cluster.rate_limits): each
// instance counts what it let through per client (TakeCounts), a
// background loop adds those counts up in a shared store, and the requests
// other instances let through are taken from this instance's buckets
// (Consume). A request never waits for the store: the sum arrives a poll
// later, so a client spreading requests over N instances gets at most
// about one poll's worth of requests more than the limit.

// ClientCount is a number of requests of one client (its rate-limit key:
// an IPv4 address, or an IPv6 /64).
type ClientCount struct {
	Client netip.Addr
	N      uint32
}

// SharedRateLimit is RateLimit with the handle that shares it. A zero Rate
// returns next and a nil limiter.
func SharedRateLimit(next http.Handler, cfg RateLimitConfig) (http.Handler, *RateLimiter, error) {
	h, err := RateLimit(next, cfg)
	if err != nil || h == next {
		return h, nil, err
	}
	f := h.(*rateLimiter)
	f.counting = true
	return f, &RateLimiter{f: f}, nil
}

// RateLimiter is the handle of a limit shared with other instances.
type RateLimiter struct{ f *rateLimiter }

// TakeCounts returns the requests each client was let through since the
// last call, and starts counting again.
func (l *RateLimiter) TakeCounts() []ClientCount {
	var out []ClientCount
	for i := range l.f.shards {
		s := &l.f.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			if e.sent > 0 {
				out = append(out, ClientCount{Client: netip.AddrFrom16(k).Unmap(), N: e.sent})
				e.sent = 0
			}
		}
		s.mu.Unlock()
	}
	return out
}

// Consume takes c.N tokens from c.Client's bucket for requests other
// instances let through. The bucket may go below zero (down to minus its
// burst): the client then waits here as long as it would have had it sent
// them all here.
func (l *RateLimiter) Consume(c ClientCount, now time.Time) {
	f := l.f
	key := rateKey(c.Client)
	s := f.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := f.entry(s, key, now)
	// Down to minus the burst at most: a client is never held back longer
	// than an empty bucket and a full burst's refill.
	if n := int(min(float64(c.N), e.lim.TokensAt(now)+float64(f.burst))); n >= 1 {
		e.lim.ReserveN(now, n) // at most the burst: always granted
	}
}
