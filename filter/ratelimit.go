package filter

// Per-client request rate limits.
//
// Contract: each client address gets a token bucket (golang.org/x/time/rate)
// of Rate tokens per second holding at most Burst; a request takes one
// token or is answered 429 with Retry-After, without reaching next.
//
// Why it is shaped this way: the table of buckets is split into shards,
// each with its own mutex and map, so requests from different clients
// rarely wait on each other and no lock is taken by every request. The
// table is bounded (MaxClients): a flood of distinct addresses evicts old
// buckets instead of growing memory. The evicted bucket is preferably a
// full one (its client has been idle long enough to refill it), whose loss
// changes nothing: a new bucket starts full too.

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxClients bounds the rate limit table when
// RateLimitConfig.MaxClients is zero: about 20 MB of buckets at most
// (some 180 bytes a client).
const DefaultMaxClients = 100_000

// RateLimitConfig configures RateLimit. The zero value of every field but
// Rate means its default; a zero Rate turns the limit off. RateLimit copies
// what it needs: the caller may reuse the struct.
type RateLimitConfig struct {
	// Rate is the sustained number of requests per second allowed to one
	// client; 0 means no limit.
	Rate float64
	// Burst is how many requests a client may make at once after being
	// idle; default max(1, ceil(Rate)).
	Burst int
	// MaxClients bounds how many clients are tracked at once; default
	// DefaultMaxClients. Past it the least recently seen clients are
	// forgotten (they start again with a full bucket).
	MaxClients int
}

func (c *RateLimitConfig) burst() int {
	if c.Burst > 0 {
		return c.Burst
	}
	return max(1, int(math.Ceil(c.Rate)))
}

func (c *RateLimitConfig) maxClients() int {
	if c.MaxClients > 0 {
		return c.MaxClients
	}
	return DefaultMaxClients
}

// rateLimitShards is the most shards a table has; a small MaxClients gets
// fewer, so that every shard holds at least one client.
const rateLimitShards = 64

// evictSample is how many entries a full shard looks at to choose the one
// to evict: map iteration starts at a random place, so this is a cheap
// random sample.
const evictSample = 8

// RateLimit returns next behind a per-client rate limit. The client is
// the address in r.RemoteAddr (as RealIP left it): IPv4 addresses are
// limited one by one, IPv6 addresses by their /64, because one host
// (one customer line, one VM) is routinely given a whole /64 and can use
// a fresh address from it for every request. A RemoteAddr that is not an
// address (a Unix socket) is not limited: there is no client to tell
// apart.
func RateLimit(next http.Handler, cfg RateLimitConfig) (http.Handler, error) {
	switch {
	case cfg.Rate == 0:
		return next, nil
	case cfg.Rate < 0 || math.IsNaN(cfg.Rate) || math.IsInf(cfg.Rate, 0):
		return nil, fmt.Errorf("rate limit: rate %v is not a positive number of requests per second", cfg.Rate)
	case cfg.Burst < 0:
		return nil, fmt.Errorf("rate limit: negative burst %d", cfg.Burst)
	case cfg.MaxClients < 0:
		return nil, fmt.Errorf("rate limit: negative max clients %d", cfg.MaxClients)
	}
	return newRateLimiter(next, cfg), nil
}

func newRateLimiter(next http.Handler, cfg RateLimitConfig) *rateLimiter {
	maxClients := cfg.maxClients()
	n := rateLimitShards
	for n > 1 && maxClients/n < 1 {
		n /= 2
	}
	f := &rateLimiter{
		next:     next,
		limit:    rate.Limit(cfg.Rate),
		burst:    cfg.burst(),
		perShard: maxClients / n,
		shards:   make([]rateShard, n),
		seed:     rand.Uint64(),
		now:      time.Now,
	}
	// A bucket left alone this long is full again.
	f.refill = time.Duration(min(float64(f.burst)/cfg.Rate*float64(time.Second), math.MaxInt64/2))
	for i := range f.shards {
		f.shards[i].m = make(map[[16]byte]*rateEntry)
	}
	return f
}

type rateLimiter struct {
	next     http.Handler
	limit    rate.Limit
	burst    int
	refill   time.Duration
	perShard int
	shards   []rateShard // a power of two in length
	seed     uint64      // keeps an attacker from choosing the shard
	now      func() time.Time
	counting bool // shared: count what is let through (ratelimit_share.go)
}

// rateShard is one part of the table; padded so that two shards' mutexes
// do not share a cache line.
type rateShard struct {
	mu sync.Mutex
	m  map[[16]byte]*rateEntry
	_  [48]byte
}

// rateEntry is one client's bucket. Both fields are used under the
// shard's mutex only (the limiter's own mutex is then never contended).
type rateEntry struct {
	lim      rate.Limiter
	lastSeen int64  // unix nanoseconds of the last request
	sent     uint32 // let through since the last TakeCounts (shared limits)
}

func (f *rateLimiter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a := clientAddr(r.RemoteAddr)
	if !a.IsValid() {
		f.next.ServeHTTP(w, r)
		return
	}
	wait := f.allow(rateKey(a), f.now())
	if wait == 0 {
		f.next.ServeHTTP(w, r)
		return
	}
	// Whole seconds (RFC 9110 section 10.2.3), rounded up so that a
	// client that waits as told is served; capped so that a tiny rate
	// cannot overflow.
	secs := int64(min(math.Ceil(wait), 1<<31))
	h := w.Header()
	h["Retry-After"] = []string{strconv.FormatInt(max(1, secs), 10)}
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	MarkGenerated(w)
	w.WriteHeader(http.StatusTooManyRequests)
	w.Write([]byte("429 too many requests\n")) //nolint:errcheck // the client may be gone
}

// rateKey is the address a client is counted by: an IPv4 address in its
// 16-byte form (::ffff:a.b.c.d), or an IPv6 /64 with the interface
// identifier zeroed. The two never collide: the low 64 bits of an IPv4
// key are 0000:ffff:a.b.c.d, never zero.
func rateKey(a netip.Addr) [16]byte {
	k := a.As16()
	if !a.Is4() {
		clear(k[8:])
	}
	return k
}

// allow takes a token from key's bucket at now, and returns 0, or the
// seconds until a token is there when none is.
func (f *rateLimiter) allow(key [16]byte, now time.Time) float64 {
	s := f.shard(key)
	s.mu.Lock()
	e := f.entry(s, key, now)
	e.lastSeen = now.UnixNano()
	var wait float64
	if !e.lim.AllowN(now, 1) {
		// AllowN took nothing; the bucket holds tokens < 1.
		wait = max((1-e.lim.TokensAt(now))/float64(f.limit), 1e-9) // never 0: 0 means allowed
	} else if f.counting {
		e.sent++
	}
	s.mu.Unlock()
	return wait
}

// entry returns key's bucket in s (its mutex held), making a full one,
// after an eviction if s is full, for a new client.
func (f *rateLimiter) entry(s *rateShard, key [16]byte, now time.Time) *rateEntry {
	e := s.m[key]
	if e == nil {
		if len(s.m) >= f.perShard {
			f.evict(s, now)
		}
		// A zero rate.Limiter last refilled at the zero time: set at
		// that time, it is full at now (NewLimiter would be a second
		// allocation, and copying its result copies a mutex).
		e = &rateEntry{}
		e.lim.SetBurstAt(time.Time{}, f.burst)
		e.lim.SetLimitAt(time.Time{}, f.limit)
		s.m[key] = e
	}
	return e
}

func (f *rateLimiter) shard(key [16]byte) *rateShard {
	h := binary.LittleEndian.Uint64(key[:8]) ^ f.seed
	h = (h ^ binary.LittleEndian.Uint64(key[8:])) * 0x9E3779B97F4A7C15
	h ^= h >> 29
	h *= 0xBF58476D1CE4E5B9
	h ^= h >> 32
	return &f.shards[h&uint64(len(f.shards)-1)]
}

// evict makes room in a full shard (its mutex held): among a few entries,
// the first whose bucket is full, or else the least recently seen.
func (f *rateLimiter) evict(s *rateShard, now time.Time) {
	full := now.Add(-f.refill).UnixNano()
	var victim [16]byte
	oldest, n := int64(math.MaxInt64), 0
	for k, e := range s.m {
		if e.lastSeen <= full {
			victim = k
			break
		}
		if e.lastSeen < oldest {
			victim, oldest = k, e.lastSeen
		}
		if n++; n == evictSample {
			break
		}
	}
	delete(s.m, victim)
}

// len counts the tracked clients (tests).
func (f *rateLimiter) len() int {
	n := 0
	for i := range f.shards {
		s := &f.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
