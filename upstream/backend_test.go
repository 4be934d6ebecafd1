package upstream

import (
	"strings"
	"testing"
	"time"
)

func TestBackendBackoff(t *testing.T) {
	clock := newFakeClock()
	b := &Backend{id: "a", addr: "127.0.0.1:1"}
	if !b.Up(clock.Now()) || !b.DownUntil().IsZero() {
		t.Fatal("new backend is not up")
	}
	// Each failure after the previous window ended doubles the window.
	for _, want := range []time.Duration{1, 2, 4, 8, 16, 30, 30, 30} {
		want *= time.Second
		b.MarkFailed(clock.Now())
		if got := b.DownUntil().Sub(clock.Now()); got != want {
			t.Fatalf("backoff = %v, want %v", got, want)
		}
		clock.Advance(want - time.Nanosecond)
		if b.Up(clock.Now()) {
			t.Fatalf("up 1ns before the end of a %v window", want)
		}
		clock.Advance(time.Nanosecond)
		if !b.Up(clock.Now()) {
			t.Fatalf("still down at the end of a %v window", want)
		}
	}
	b.MarkSucceeded(time.Now())
	b.MarkFailed(clock.Now())
	if got := b.DownUntil().Sub(clock.Now()); got != time.Second {
		t.Fatalf("backoff after a success = %v, want 1s", got)
	}
}

// Many requests failing on the same dead backend are one outage, not many.
func TestBackendFailuresDuringWindowDoNotEscalate(t *testing.T) {
	clock := newFakeClock()
	b := &Backend{id: "a", addr: "127.0.0.1:1"}
	b.MarkFailed(clock.Now())
	for range 100 {
		clock.Advance(time.Millisecond)
		b.MarkFailed(clock.Now())
	}
	if got := b.fails.Load(); got != 1 {
		t.Fatalf("fails = %d after one outage, want 1", got)
	}
	b.MarkSucceeded(time.Now())
	if !b.Up(clock.Now()) || b.fails.Load() != 0 {
		t.Fatal("success did not reset the backend")
	}
}

func TestRegistrySharesStateAcrossReloads(t *testing.T) {
	reg := NewRegistry()
	cfg := func(bs ...BackendConfig) PoolConfig { return PoolConfig{Backends: bs} }
	old, err := NewPool(cfg(
		BackendConfig{ID: "a", Addr: "127.0.0.1:8001"},
		BackendConfig{ID: "b", Addr: "127.0.0.1:8002"},
	), reg)
	if err != nil {
		t.Fatal(err)
	}
	old.Backend("a").MarkFailed(time.Now())

	// The reload keeps a (new weight), moves b to another port (a new
	// identity) and adds c.
	cur, err := NewPool(cfg(
		BackendConfig{ID: "a", Addr: "127.0.0.1:8001", Weight: 3},
		BackendConfig{ID: "b", Addr: "127.0.0.1:9002"},
		BackendConfig{ID: "c", Addr: "127.0.0.1:8003"},
	), reg)
	if err != nil {
		t.Fatal(err)
	}
	if cur.Backend("a") != old.Backend("a") {
		t.Error("backend a got new state across the reload")
	}
	if cur.Backend("a").Up(time.Now()) {
		t.Error("backend a forgot its failure across the reload")
	}
	if cur.Backend("b") == old.Backend("b") {
		t.Error("backend b moved address but kept its state")
	}
	if got := reg.Len(); got != 4 {
		t.Fatalf("registry holds %d backends, want 4", got)
	}
	if n := reg.Retain(cur); n != 1 {
		t.Errorf("Retain forgot %d backends, want 1 (old b)", n)
	}
	if reg.Backend("a", "127.0.0.1:8001") != cur.Backend("a") {
		t.Error("Retain dropped a live backend")
	}
}

func TestRegistryZeroValueAndDefaultID(t *testing.T) {
	var reg Registry
	b := reg.Backend("", "127.0.0.1:8001")
	if b.ID() != "127.0.0.1:8001" || b.Addr() != "127.0.0.1:8001" {
		t.Fatalf("ID, Addr = %q, %q", b.ID(), b.Addr())
	}
	if reg.Backend("127.0.0.1:8001", "127.0.0.1:8001") != b {
		t.Fatal("empty ID is not the same identity as ID = Addr")
	}
}

func TestStatusCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{ErrNoBackend, 503},
		{&DialError{Addr: "x:1", Err: errRefused{}}, 502},
		{&DialError{Addr: "x:1", Err: errTimeout{}}, 504},
		{errTimeout{}, 504},
		{errRefused{}, 502},
	} {
		if got := StatusCode(tc.err); got != tc.want {
			t.Errorf("StatusCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

type errTimeout struct{}

func (errTimeout) Error() string   { return "i/o timeout" }
func (errTimeout) Timeout() bool   { return true }
func (errTimeout) Temporary() bool { return true }

type errRefused struct{}

func (errRefused) Error() string { return "connection refused" }

func TestErrorPagesLeakNothing(t *testing.T) {
	pages := newErrorPages()
	for _, code := range []int{502, 503, 504} {
		page := string(pages[code])
		if !strings.Contains(page, "<title>") || strings.Contains(page, "127.0.0.1") || strings.Contains(page, "upstream") {
			t.Errorf("page %d = %q", code, page)
		}
	}
}

func TestBackendHealthTransitions(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := newBackend("a", "127.0.0.1:1", t0)
	if !b.Up(t0) {
		t.Fatal("a new backend is down")
	}
	// Failed answers eject only at the threshold, once.
	for range 2 {
		if b.Fail(t0, 3) {
			t.Fatal("ejected before the threshold")
		}
	}
	if !b.Fail(t0, 3) || b.Up(t0) {
		t.Fatal("not ejected at the threshold")
	}
	if b.MarkFailed(t0) {
		t.Error("a second failure within the window counted as a new ejection")
	}
	// A success clears everything and says it recovered, once.
	t1 := t0.Add(2 * time.Second)
	if !b.MarkSucceeded(t1) || b.MarkSucceeded(t1) {
		t.Error("recovery not reported exactly once")
	}
	if !b.UpSince().Equal(t1) {
		t.Errorf("up since %v, want %v (slow start restarts)", b.UpSince(), t1)
	}
	// The active check overrides: down whatever the passive record says.
	if !b.SetChecked(false, t1) || b.Up(t1) || b.SetChecked(false, t1) {
		t.Error("check down not applied exactly once")
	}
	t2 := t1.Add(time.Second)
	if !b.SetChecked(true, t2) || !b.Up(t2) || !b.UpSince().Equal(t2) {
		t.Error("check up not applied")
	}
}

func TestBackendLatencyEWMA(t *testing.T) {
	b := newBackend("a", "127.0.0.1:1", time.Now())
	b.ObserveLatency(100 * time.Millisecond)
	if b.Latency() != 100*time.Millisecond {
		t.Fatalf("first sample: %v", b.Latency())
	}
	for range 50 {
		b.ObserveLatency(10 * time.Millisecond)
	}
	if l := b.Latency(); l < 10*time.Millisecond || l > 11*time.Millisecond {
		t.Errorf("after 50 fast answers: %v, want ~10ms", l)
	}
}
