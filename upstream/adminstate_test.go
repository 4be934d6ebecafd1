package upstream

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

func TestParseAdminState(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want AdminState
		ok   bool
	}{
		{"ready", Ready, true},
		{"drain", Drain, true},
		{"MAINT", Maint, true},
		{"", Ready, false},
		{"down", Ready, false},
		{"maintenance", Ready, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseAdminState(tc.in)
			if !tc.ok {
				if !errors.Is(err, ErrUnknownAdminState) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.in)) {
					t.Fatalf("err = %v, want ErrUnknownAdminState naming %q", err, tc.in)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("= %v, %v; want %v", got, err, tc.want)
			}
			if back, _ := ParseAdminState(got.String()); back != got {
				t.Errorf("String %q does not parse back", got)
			}
		})
	}
	if s := AdminState(7).String(); s != "AdminState(7)" {
		t.Errorf("AdminState(7).String() = %q", s)
	}
}

// adminPool returns a round-robin pool over n real backends a, b, c, ...
// with the given weights (nil: 1 each), its proxy and the log hook of the
// pool's admin lines.
func adminPool(t *testing.T, balancer string, weights []int) (*Pool, *Proxy, *logtest.Hook) {
	t.Helper()
	var cfgs []BackendConfig
	for i, w := range weights {
		cfgs = append(cfgs, newTestBackend(t, string(rune('a'+i)), nil).config(w))
	}
	logger, hook := logtest.NewNullLogger()
	pool, err := NewPool(PoolConfig{Backends: cfgs, Balancer: balancer, Log: logger.WithField("app", "test")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	proxy, err := NewProxy(ProxyConfig{Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	return pool, proxy, hook
}

// poolPicks counts n picks by backend ID, the way a request without a hint
// gets them: only backends that are up.
func poolPicks(t *testing.T, pool *Pool, now time.Time, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		b := pool.PickAt(now, func(b *Backend) bool { return !b.Up(now) })
		if b == nil {
			t.Fatal("no backend picked")
		}
		got[b.ID()]++
	}
	return got
}

// serveHinted sends one request through proxy with a sticky hint for
// prefer and returns the backend that answered.
func serveHinted(t *testing.T, proxy *Proxy, prefer *Backend) *Backend {
	t.Helper()
	tg := &Target{Prefer: prefer}
	rec := httptest.NewRecorder()
	proxy.Serve(rec, httptest.NewRequest(http.MethodGet, "/", nil), tg)
	if rec.Code != http.StatusOK || tg.Chosen == nil {
		t.Fatalf("status %d, chosen %v", rec.Code, tg.Chosen)
	}
	return tg.Chosen
}

func TestDrainAndMaintRoundRobin(t *testing.T) {
	pool, proxy, _ := adminPool(t, "roundrobin", []int{1, 1, 1})
	b := pool.Backend("b")
	now := time.Now()

	if err := pool.SetAdminState("b", Drain); err != nil {
		t.Fatal(err)
	}
	if got := poolPicks(t, pool, now, 300); got["b"] != 0 || got["a"] == 0 || got["c"] == 0 {
		t.Errorf("drain: picks without a hint %v, want a and c only", got)
	}
	for range 10 {
		if got := serveHinted(t, proxy, b); got != b {
			t.Fatalf("drain: a request hinted to b went to %s", got.ID())
		}
	}
	for range 30 {
		if got := serveHinted(t, proxy, nil); got == b {
			t.Fatal("drain: a request without a hint went to b")
		}
	}
	// Down, a draining backend loses its sticky users like any other.
	b.SetChecked(false, now)
	if got := serveHinted(t, proxy, b); got == b {
		t.Error("drain: a hinted request went to b while it is down")
	}
	b.SetChecked(true, now)

	if err := pool.SetAdminState("b", Maint); err != nil {
		t.Fatal(err)
	}
	if pool.Active(b, now) {
		t.Error("maint: b is active for sticky hints")
	}
	for range 10 {
		if got := serveHinted(t, proxy, b); got == b {
			t.Fatal("maint: a request hinted to b went to b")
		}
	}
	if got := poolPicks(t, pool, now, 300); got["b"] != 0 {
		t.Errorf("maint: picks %v, want no b", got)
	}

	if err := pool.SetAdminState("b", Ready); err != nil {
		t.Fatal(err)
	}
	if got := poolPicks(t, pool, now, 300); got["a"] != 100 || got["b"] != 100 || got["c"] != 100 {
		t.Errorf("ready again: picks %v, want 100 each", got)
	}
	if got := serveHinted(t, proxy, b); got != b {
		t.Errorf("ready again: a request hinted to b went to %s", got.ID())
	}
}

// A hash key is affinity, not a session: a drained backend's keys move.
func TestDrainMovesHashKeys(t *testing.T) {
	pool, _, _ := adminPool(t, "hash", []int{1, 1, 1})
	now := time.Now()
	keys := hashKeys(300)
	onB := 0
	for _, k := range keys {
		if pool.PickKeyAt(now, k, nil).ID() == "b" {
			onB++
		}
	}
	if onB == 0 {
		t.Fatal("no key on b to begin with")
	}
	if err := pool.SetAdminState("b", Drain); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if pool.PickKeyAt(now, k, nil).ID() == "b" {
			t.Fatal("a key still goes to the draining b")
		}
	}
}

func TestAdminChangesAreLogged(t *testing.T) {
	pool, _, hook := adminPool(t, "roundrobin", []int{1, 1})
	if err := pool.SetAdminState("a", Drain); err != nil {
		t.Fatal(err)
	}
	if err := pool.SetAdminState("a", Drain); err != nil {
		t.Fatal(err)
	}
	if err := pool.SetWeight("a", 3); err != nil {
		t.Fatal(err)
	}
	if err := pool.SetWeight("a", 3); err != nil {
		t.Fatal(err)
	}
	if err := pool.SetWeight("a", 0); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		msg      string
		from, to any
	}{
		{"backend a ready -> drain", "ready", "drain"},
		{"backend a weight 1 -> 3", 1, 3},
		{"backend a weight 3 -> 1", 3, 1},
	}
	entries := hook.AllEntries()
	if len(entries) != len(want) {
		t.Fatalf("%d log lines, want %d (one per change)", len(entries), len(want))
	}
	for i, e := range entries {
		w := want[i]
		if e.Message != w.msg || e.Level != logrus.InfoLevel || e.Data["from"] != w.from || e.Data["to"] != w.to ||
			e.Data["backend"] != "a" || e.Data["app"] != "test" || e.Data["reason"] != "admin" {
			t.Errorf("line %d: %s %q %v, want %q from %v to %v", i, e.Level, e.Message, e.Data, w.msg, w.from, w.to)
		}
	}

	for _, tc := range []struct {
		name   string
		err    error
		target error
		names  string
	}{
		{"unknown id", pool.SetAdminState("nope", Drain), ErrUnknownBackend, `"nope"`},
		{"unknown id, weight", pool.SetWeight("nope", 2), ErrUnknownBackend, `"nope"`},
		{"bad state", pool.SetAdminState("a", AdminState(9)), ErrUnknownAdminState, "AdminState(9)"},
		{"too heavy", pool.SetWeight("a", MaxWeight+1), ErrInvalidWeight, "257"},
		{"negative", pool.SetWeight("a", -1), ErrInvalidWeight, "-1"},
	} {
		if !errors.Is(tc.err, tc.target) || !strings.Contains(tc.err.Error(), tc.names) {
			t.Errorf("%s: err = %v, want %v naming %s", tc.name, tc.err, tc.target, tc.names)
		}
	}
	if pool.Backend("a").SetAdminState(AdminState(9)) {
		t.Error("an invalid state was set")
	}
	if got := pool.Backend("a").AdminState(); got != Drain {
		t.Errorf("state after the failed calls = %v, want drain", got)
	}
}

func TestSetWeightRoundRobinExact(t *testing.T) {
	pool, _, _ := adminPool(t, "roundrobin", []int{1, 1})
	now := time.Now()
	a := pool.Backend("a")
	if err := pool.SetWeight("a", 3); err != nil {
		t.Fatal(err)
	}
	if got := poolPicks(t, pool, now, 400); got["a"] != 300 || got["b"] != 100 {
		t.Errorf("weight 3:1: picks %v, want a 300, b 100", got)
	}
	if w, o := pool.Weight(a), a.WeightOverride(); w != 3 || o != 3 {
		t.Errorf("Weight, WeightOverride = %d, %d; want 3, 3", w, o)
	}
	if w := pool.Config().Backends[0].Weight; w != 1 {
		t.Errorf("Config reports weight %d, want the configured 1", w)
	}
	if err := pool.SetWeight("a", 0); err != nil {
		t.Fatal(err)
	}
	if got := poolPicks(t, pool, now, 400); got["a"] != 200 || got["b"] != 200 {
		t.Errorf("override cleared: picks %v, want 200 each", got)
	}
	if w := pool.Weight(a); w != 1 {
		t.Errorf("Weight = %d after clearing, want 1", w)
	}
}

// Every weighted balancer honours a weight set at run time, at once.
func TestSetWeightEveryBalancer(t *testing.T) {
	now := time.Now()
	t.Run("random", func(t *testing.T) {
		pool, _, _ := adminPool(t, "random", []int{1, 1})
		if err := pool.SetWeight("a", 3); err != nil {
			t.Fatal(err)
		}
		got := poolPicks(t, pool, now, 40_000)
		// 0.75 ± 6σ, σ = sqrt(0.75·0.25/40000) ≈ 0.0022.
		if share := float64(got["a"]) / 40_000; share < 0.737 || share > 0.763 {
			t.Errorf("a's share %.4f, want 0.75", share)
		}
	})
	// Load balancers: a carries 2 requests, b 1. At 1:1, b is less
	// loaded; at 3:1, a is (3/3 against 2/1).
	for _, name := range []string{"leastreq", "p2c"} {
		t.Run(name, func(t *testing.T) {
			pool, _, _ := adminPool(t, name, []int{1, 1})
			a, b := pool.Backend("a"), pool.Backend("b")
			a.inflight.Store(2)
			b.inflight.Store(1)
			if got := pool.PickAt(now, nil); got != b {
				t.Fatalf("1:1 picked %s, want b", got.ID())
			}
			if err := pool.SetWeight("a", 3); err != nil {
				t.Fatal(err)
			}
			if got := pool.PickAt(now, nil); got != a {
				t.Errorf("3:1 picked %s, want a", got.ID())
			}
		})
	}
	t.Run("hash", func(t *testing.T) {
		pool, _, _ := adminPool(t, "hash", []int{1, 1})
		keys := hashKeys(10_000)
		before := make([]*Backend, len(keys))
		for i, k := range keys {
			before[i] = pool.PickKeyAt(now, k, nil)
		}
		if err := pool.SetWeight("a", 3); err != nil {
			t.Fatal(err)
		}
		onA := 0
		for i, k := range keys {
			got := pool.PickKeyAt(now, k, nil)
			if before[i].ID() == "a" && got.ID() != "a" {
				t.Fatal("raising a's weight moved a key off a")
			}
			if got.ID() == "a" {
				onA++
			}
		}
		// 300 points against 100: 0.75, give or take the ring's ±10%.
		if share := float64(onA) / float64(len(keys)); share < 0.65 || share > 0.85 {
			t.Errorf("a's share of the keys %.3f, want about 0.75", share)
		}
	})
}

// Admin state and weight live on the Backend: another pool sharing it
// (another app, or the pool of the next configuration) sees them.
func TestAdminStateSharedAndSurvivesReload(t *testing.T) {
	reg := NewRegistry()
	cfg := PoolConfig{Backends: []BackendConfig{
		{ID: "a", Addr: "127.0.0.1:8001"},
		{ID: "b", Addr: "127.0.0.1:8002"},
	}}
	one, err := NewPool(cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(one.Close)
	other, err := NewPool(cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	now := time.Now()
	picksOf := func(p *Pool) map[string]int { return poolPicks(t, p, now, 400) }

	if err := one.SetWeight("a", 3); err != nil {
		t.Fatal(err)
	}
	// SetWeight rebuilt the other pool's balancers as well.
	if got := picksOf(other); got["a"] != 300 {
		t.Errorf("other pool after the weight change: %v, want a 300", got)
	}
	if err := one.SetAdminState("b", Maint); err != nil {
		t.Fatal(err)
	}
	if got := picksOf(other); got["b"] != 0 {
		t.Errorf("other pool with b in maint: %v", got)
	}

	reloaded, err := NewPool(cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reloaded.Close)
	reg.Retain(reloaded)
	if st := reloaded.Backend("b").AdminState(); st != Maint {
		t.Errorf("b is %v after the reload, want maint", st)
	}
	if err := reloaded.SetAdminState("b", Ready); err != nil {
		t.Fatal(err)
	}
	if got := picksOf(reloaded); got["a"] != 300 || got["b"] != 100 {
		t.Errorf("reloaded pool: %v, want the weight override (a 300, b 100)", got)
	}
}

// A membership the resolver built before a weight change, swapped in
// after it, gets the new weight: the swap rebuilds it.
func TestSetWeightRacingResolverSwap(t *testing.T) {
	pool, _, _ := adminPool(t, "roundrobin", []int{1, 1})
	cur := pool.state.Load()
	built, err := pool.newState(cur.sets, cur)
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.SetWeight("a", 3); err != nil {
		t.Fatal(err)
	}
	if !pool.swap(built) {
		t.Fatal("swap refused")
	}
	if got := poolPicks(t, pool, time.Now(), 400); got["a"] != 300 || got["b"] != 100 {
		t.Errorf("after the stale swap: %v, want a 300, b 100", got)
	}
}

// Retain forgets a held backend, and with it the slow path of picks, and
// retires the pools it is not given: weight changes leave them alone.
func TestRetainForgetsHeldBackendsAndRetiredPools(t *testing.T) {
	reg := NewRegistry()
	old, err := NewPool(PoolConfig{Backends: []BackendConfig{{ID: "a", Addr: "127.0.0.1:8001"}, {ID: "gone", Addr: "127.0.0.1:8009"}}}, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(old.Close)
	if err := old.SetAdminState("gone", Maint); err != nil {
		t.Fatal(err)
	}
	if reg.held.Load() != 1 {
		t.Fatal("a backend in maint does not count as held")
	}
	cur, err := NewPool(PoolConfig{Backends: []BackendConfig{{ID: "a", Addr: "127.0.0.1:8001"}}}, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cur.Close)
	reg.Retain(cur)
	if reg.held.Load() != 0 {
		t.Error("the forgotten backend still counts as held")
	}
	retired := old.state.Load()
	if err := cur.SetWeight("a", 5); err != nil {
		t.Fatal(err)
	}
	if old.state.Load() != retired {
		t.Error("a weight change rebuilt a retired pool")
	}
	if cur.state.Load().weights[0] != 5 {
		t.Error("a weight change did not rebuild the current pool")
	}
	cur.Close()
	reg.mu.Lock()
	n := len(reg.pools)
	reg.mu.Unlock()
	if n != 0 {
		t.Errorf("registry still holds %d pools after Retain and Close", n)
	}
}

// Picks, admin changes, weight changes and sticky notes all at once, for
// the race detector; c is held throughout (drain or maint), so no pick
// without a hint may return it.
func TestAdminConcurrent(t *testing.T) {
	for _, balancer := range []string{"roundrobin", "hash", "p2c"} {
		t.Run(balancer, func(t *testing.T) {
			pool, _, _ := adminPool(t, balancer, []int{1, 1, 1, 1})
			c := pool.Backend("c")
			if err := pool.SetAdminState("c", Drain); err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			var stop atomic.Bool
			var wrong atomic.Int64
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					for i := uint64(0); !stop.Load(); i++ {
						var b *Backend
						if g%2 == 0 {
							b = pool.PickAt(now, nil)
						} else {
							b = pool.PickKeyAt(now, i*golden64, nil)
						}
						if b == nil || b == c {
							wrong.Add(1)
						}
						pool.Active(c, now)
						b.NoteSticky(i, now)
					}
				})
			}
			wg.Go(func() {
				for !stop.Load() {
					c.StickySessions(now, 30*time.Minute)
				}
			})
			for i := range 200 {
				st := Drain
				if i%2 == 0 {
					st = Maint
				}
				if err := pool.SetAdminState("c", st); err != nil {
					t.Error(err)
				}
				if err := pool.SetAdminState("b", AdminState(i%3)); err != nil {
					t.Error(err)
				}
				if err := pool.SetWeight("a", i%4); err != nil {
					t.Error(err)
				}
			}
			stop.Store(true)
			wg.Wait()
			if n := wrong.Load(); n != 0 {
				t.Errorf("%d picks returned nil or the held c", n)
			}
		})
	}
}

// Health checks go on in maint: a backend that broke meanwhile is down
// when it is set ready again, and one that recovered is up.
func TestHealthChecksRunInMaint(t *testing.T) {
	sb := newSwitchBackend(t, http.StatusOK)
	pool, _ := startHealthPool(t, nil, fastHealth(), nil, sb.addr())
	b := pool.Backend("b0")
	if err := pool.SetAdminState("b0", Maint); err != nil {
		t.Fatal(err)
	}
	sb.code.Store(http.StatusServiceUnavailable)
	eventually(t, "backend in maint checked down", b.CheckedDown)
	sb.code.Store(http.StatusOK)
	eventually(t, "backend in maint checked up", func() bool { return !b.CheckedDown() })
}
