package filter

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rlClock is a clock tests move by hand.
type rlClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *rlClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *rlClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestRateLimiter(t testing.TB, cfg RateLimitConfig) (*rateLimiter, *atomic.Int64) {
	t.Helper()
	var served atomic.Int64
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served.Add(1) })
	h, err := RateLimit(next, cfg)
	if err != nil {
		t.Fatal(err)
	}
	rl, ok := h.(*rateLimiter)
	if !ok {
		t.Fatalf("RateLimit returned %T", h)
	}
	return rl, &served
}

func rateRequest(h http.Handler, remote string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = remote
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestRateLimit(t *testing.T) {
	rl, served := newTestRateLimiter(t, RateLimitConfig{Rate: 0.5, Burst: 2})
	clock := &rlClock{t: time.Unix(1_700_000_000, 0)}
	rl.now = clock.now

	for i, want := range []int{200, 200, 429} {
		if w := rateRequest(rl, "192.0.2.1:1000"); w.Code != want {
			t.Fatalf("request %d: %d, want %d", i, w.Code, want)
		}
	}
	w := rateRequest(rl, "192.0.2.1:1001")
	if w.Code != 429 || w.Header().Get("Retry-After") != "2" || w.Body.String() != "429 too many requests\n" {
		t.Errorf("over the limit: %d, Retry-After %q, body %q; want 429, 2 (one token at 0.5/s)", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	if served.Load() != 2 {
		t.Errorf("next called %d times, want 2", served.Load())
	}
	if w := rateRequest(rl, "192.0.2.2:1000"); w.Code != 200 {
		t.Errorf("another client: %d, want 200", w.Code)
	}

	clock.add(1500 * time.Millisecond) // 0.75 token
	if w := rateRequest(rl, "192.0.2.1:1000"); w.Code != 429 || w.Header().Get("Retry-After") != "1" {
		t.Errorf("after 1.5s: %d, Retry-After %q; want 429, 1 (half a second rounds up)", w.Code, w.Header().Get("Retry-After"))
	}
	clock.add(500 * time.Millisecond)
	if w := rateRequest(rl, "192.0.2.1:1000"); w.Code != 200 {
		t.Errorf("after 2s: %d, want 200", w.Code)
	}
}

func TestRateLimitKeys(t *testing.T) {
	rl, _ := newTestRateLimiter(t, RateLimitConfig{Rate: 1, Burst: 1})
	rl.now = (&rlClock{t: time.Unix(1_700_000_000, 0)}).now
	for _, tc := range []struct {
		first, second string
		want          int // the second request's status
	}{
		{"192.0.2.1:1", "192.0.2.1:2", 429},                      // ports do not matter
		{"192.0.2.3:1", "[::ffff:192.0.2.3]:2", 429},             // IPv4-mapped is IPv4
		{"[2001:db8:1:2::1]:1", "[2001:db8:1:2:ffff::9]:1", 429}, // one /64, one client
		{"[2001:db8:1:3::1]:1", "[2001:db8:1:4::1]:1", 200},      // another /64
		{"[fe80::1%eth0]:1", "[fe80::2%eth1]:1", 429},            // zones are no part of the key
		{"192.0.2.4:1", "192.0.2.5:1", 200},
		{"@", "@", 200}, // not an address: not limited
	} {
		rateRequest(rl, tc.first)
		if w := rateRequest(rl, tc.second); w.Code != tc.want {
			t.Errorf("%s then %s: %d, want %d", tc.first, tc.second, w.Code, tc.want)
		}
	}
	// An IPv4 key never equals the /64 key of an IPv6 address.
	if rateKey(netip.MustParseAddr("0.0.0.0")) == rateKey(netip.MustParseAddr("::")) {
		t.Error("0.0.0.0 and :: share a key")
	}
}

// TestRateLimitRecovers runs on the real clock: a client over its burst is
// served again once a token has come back (20/s: 50ms).
func TestRateLimitRecovers(t *testing.T) {
	rl, _ := newTestRateLimiter(t, RateLimitConfig{Rate: 20, Burst: 2})
	for range 3 {
		rateRequest(rl, "198.51.100.7:5")
	}
	if w := rateRequest(rl, "198.51.100.7:5"); w.Code != 429 || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("over the burst: %d, Retry-After %q; want 429, 1", w.Code, w.Header().Get("Retry-After"))
	}
	deadline := time.Now().Add(5 * time.Second)
	for rateRequest(rl, "198.51.100.7:5").Code != 200 {
		if time.Now().After(deadline) {
			t.Fatal("still limited after 5s at 20 requests per second")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRateLimitConfig(t *testing.T) {
	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	if h, err := RateLimit(next, RateLimitConfig{}); err != nil || fmt.Sprintf("%p", h) != fmt.Sprintf("%p", next) {
		t.Errorf("rate 0: %T, %v; want next itself", h, err)
	}
	for _, bad := range []RateLimitConfig{{Rate: -1}, {Rate: 1, Burst: -1}, {Rate: 1, MaxClients: -1}} {
		if _, err := RateLimit(next, bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	for _, tc := range []struct {
		cfg             RateLimitConfig
		burst, perShard int
		shards          int
	}{
		{RateLimitConfig{Rate: 0.1}, 1, DefaultMaxClients / 64, 64},
		{RateLimitConfig{Rate: 2.5}, 3, DefaultMaxClients / 64, 64},
		{RateLimitConfig{Rate: 10, Burst: 50, MaxClients: 640}, 50, 10, 64},
		{RateLimitConfig{Rate: 10, MaxClients: 5}, 10, 1, 4},
		{RateLimitConfig{Rate: 10, MaxClients: 1}, 10, 1, 1},
	} {
		rl, _ := newTestRateLimiter(t, tc.cfg)
		if rl.burst != tc.burst || rl.perShard != tc.perShard || len(rl.shards) != tc.shards {
			t.Errorf("%+v: burst %d, %d shards of %d; want %d, %d of %d", tc.cfg, rl.burst, len(rl.shards), rl.perShard, tc.burst, tc.shards, tc.perShard)
		}
	}
}

// TestRateLimitBounded sends 100,000 clients through a table of 10,000: it
// never holds more, and memory stops growing once it is full.
func TestRateLimitBounded(t *testing.T) {
	const bound = 10_000
	rl, _ := newTestRateLimiter(t, RateLimitConfig{Rate: 1, MaxClients: bound})
	clock := &rlClock{t: time.Unix(1_700_000_000, 0)}
	rl.now = clock.now
	fill := func(base uint32) {
		for i := range uint32(100_000) {
			n := base + i
			a := netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
			rl.allow(rateKey(a), clock.now())
			if i%10_000 == 0 {
				if n := rl.len(); n > bound {
					t.Fatalf("%d clients tracked, bound %d", n, bound)
				}
			}
			clock.add(time.Microsecond)
		}
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	fill(0x0a000000)
	full := heap()
	fill(0x0b000000)
	after := heap()
	t.Logf("heap: table full %d bytes, then %+d", int64(full)-int64(before), int64(after)-int64(full))
	if n := rl.len(); n > bound || n < bound*9/10 {
		t.Errorf("%d clients tracked, want at most %d and close to it", n, bound)
	}
	if full > before && full-before > bound*512 {
		t.Errorf("a full table of %d takes %d bytes, want under %d", bound, full-before, bound*512)
	}
	if after > full && after-full > 1<<20 {
		t.Errorf("heap grew %d bytes after the table was full", after-full)
	}
	runtime.KeepAlive(rl)
}

// TestRateLimitEvictsIdle checks that a full shard evicts a client whose
// bucket is full before an active one.
func TestRateLimitEvictsIdle(t *testing.T) {
	rl, _ := newTestRateLimiter(t, RateLimitConfig{Rate: 1, Burst: 1, MaxClients: 2})
	rl.shards, rl.perShard = rl.shards[:1], 2 // both clients in one shard
	clock := &rlClock{t: time.Unix(1_700_000_000, 0)}
	rl.now = clock.now
	idle, active := rateKey(netip.MustParseAddr("192.0.2.1")), rateKey(netip.MustParseAddr("192.0.2.2"))
	rl.allow(idle, clock.now())
	clock.add(2 * time.Second)
	rl.allow(active, clock.now())
	rl.allow(rateKey(netip.MustParseAddr("192.0.2.3")), clock.now()) // evicts one
	if wait := rl.allow(active, clock.now()); wait == 0 {
		t.Error("the active client was evicted (its empty bucket forgotten) instead of the idle one")
	}
}

// TestRateLimitConcurrent is for -race: many goroutines, a table small
// enough that they evict each other's entries.
func TestRateLimitConcurrent(t *testing.T) {
	rl, served := newTestRateLimiter(t, RateLimitConfig{Rate: 1000, Burst: 5, MaxClients: 128})
	var limited atomic.Int64
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := range 500 {
				remote := fmt.Sprintf("10.0.%d.%d:1", g%4, i%300)
				if rateRequest(rl, remote).Code == 429 {
					limited.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := rl.len(); n > 128 {
		t.Errorf("%d clients tracked, bound 128", n)
	}
	if served.Load()+limited.Load() != 32*500 {
		t.Errorf("%d served + %d limited, want %d", served.Load(), limited.Load(), 32*500)
	}
}

// BenchmarkRateLimitParallel is the cost of one request through the limit
// from many goroutines: "hit" with every client in the table, "churn"
// with far more clients than the table holds (an eviction per request).
//
//	go test -run '^$' -bench RateLimitParallel -benchmem ./filter
func BenchmarkRateLimitParallel(b *testing.B) {
	reqs := make([]*http.Request, 1<<16)
	for i := range reqs {
		reqs[i] = httptest.NewRequest("GET", "/", nil)
		reqs[i].RemoteAddr = fmt.Sprintf("10.%d.%d.%d:4000", i>>16, (i>>8)&255, i&255)
	}
	for _, tc := range []struct {
		name       string
		maxClients int
	}{{"hit", 0}, {"churn", 1024}} {
		b.Run(tc.name, func(b *testing.B) {
			next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
			h, _ := RateLimit(next, RateLimitConfig{Rate: 1e9, MaxClients: tc.maxClients})
			var seq atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := int(seq.Add(1)) * 7919
				w := &rlWriter{h: http.Header{}}
				for pb.Next() {
					h.ServeHTTP(w, reqs[i&(len(reqs)-1)])
					i++
				}
			})
		})
	}
}

type rlWriter struct{ h http.Header }

func (w *rlWriter) Header() http.Header         { return w.h }
func (w *rlWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *rlWriter) WriteHeader(int)             {}
