package filter

import (
	"net/http"
	"net/netip"
	"testing"
	"time"
)

// Two instances share a limit of 10 requests (burst 10, 1/s): what one
// lets through, counted and handed to the other, empties the other's
// bucket for that client, and only for that client.
func TestSharedRateLimit(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	ha, a, err := SharedRateLimit(ok, RateLimitConfig{Rate: 1, Burst: 10})
	if err != nil {
		t.Fatal(err)
	}
	hb, b, _ := SharedRateLimit(ok, RateLimitConfig{Rate: 1, Burst: 10})
	clock := &rlClock{t: time.Unix(1_700_000_000, 0)}
	ha.(*rateLimiter).now, hb.(*rateLimiter).now = clock.now, clock.now
	for i := range 10 {
		if w := rateRequest(ha, "192.0.2.7:1000"); w.Code != 200 {
			t.Fatalf("request %d to A: %d", i, w.Code)
		}
	}
	counts := a.TakeCounts()
	if len(counts) != 1 || counts[0].Client != netip.MustParseAddr("192.0.2.7") || counts[0].N != 10 {
		t.Fatalf("A's counts: %+v, want 192.0.2.7: 10", counts)
	}
	if again := a.TakeCounts(); len(again) != 0 {
		t.Errorf("counts taken twice: %+v", again)
	}
	// B learns of A's 10: the client has nothing left at B.
	for _, c := range counts {
		b.Consume(c, clock.now())
	}
	if w := rateRequest(hb, "192.0.2.7:2000"); w.Code != http.StatusTooManyRequests {
		t.Errorf("at B after A's 10: %d, want 429", w.Code)
	}
	if w := rateRequest(hb, "192.0.2.8:2000"); w.Code != 200 {
		t.Errorf("another client at B: %d, want 200", w.Code)
	}
	// Refused requests are not counted; a second's refill lets one through.
	clock.t = clock.t.Add(time.Second)
	if w := rateRequest(hb, "192.0.2.7:2000"); w.Code != 200 {
		t.Errorf("at B a second later: %d, want 200", w.Code)
	}
	got := map[netip.Addr]uint32{}
	for _, c := range b.TakeCounts() {
		got[c.Client] = c.N
	}
	if got[netip.MustParseAddr("192.0.2.7")] != 1 || got[netip.MustParseAddr("192.0.2.8")] != 1 {
		t.Errorf("B's counts %v, want one each", got)
	}
	// However much others report, a client waits at most one bucket's refill.
	b.Consume(ClientCount{Client: netip.MustParseAddr("192.0.2.9"), N: 1_000_000}, clock.now())
	clock.t = clock.t.Add(20 * time.Second)
	if w := rateRequest(hb, "192.0.2.9:2000"); w.Code != 200 {
		t.Errorf("after 20s (a 10-token burst at 1/s is 10s down and 10s back): %d", w.Code)
	}
}
