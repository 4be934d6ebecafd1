package upstream

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The statistical tests draw 100k picks; their bounds are at least six
// standard deviations wide, so a failure means a broken balancer, not bad
// luck.
const balPicks = 100_000

// balEpoch is "now" of the tests that need a clock; backends built by
// balBackends came up an hour before it, long past any ramp.
var balEpoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func balClock() time.Time { return balEpoch }

// balBackends returns n real backends named a, b, c, ... (b0, b1, ... past
// 26), up since an hour before balEpoch.
func balBackends(n int) []*Backend {
	bs := make([]*Backend, n)
	for i := range bs {
		id := string(rune('a' + i))
		if n > 26 {
			id = fmt.Sprintf("b%d", i)
		}
		bs[i] = newBackend(id, fmt.Sprintf("127.0.0.1:%d", 8000+i), balEpoch.Add(-time.Hour))
	}
	return bs
}

func mustBalancer(t testing.TB, name string, bs []*Backend, weights []int, opts BalancerOptions) Balancer {
	t.Helper()
	b, err := NewBalancer(name, bs, weights, opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ones(n int) []int {
	w := make([]int, n)
	for i := range w {
		w[i] = 1
	}
	return w
}

// shares returns the fraction of n picks that went to each of bs (by
// index), failing on a nil pick.
func shares(t testing.TB, bal Balancer, bs []*Backend, n int, skip func(*Backend) bool) []float64 {
	t.Helper()
	counts := make([]int, len(bs))
	for range n {
		b := bal.Pick(skip)
		i := slices.Index(bs, b)
		if i < 0 {
			t.Fatalf("Pick = %v, not one of the backends", b)
		}
		counts[i]++
	}
	out := make([]float64, len(bs))
	for i, c := range counts {
		out[i] = float64(c) / float64(n)
	}
	return out
}

func skipIDs(ids string) func(*Backend) bool {
	return func(b *Backend) bool { return strings.Contains(ids, b.ID()) }
}

func TestBalancerDistribution(t *testing.T) {
	weights := []int{5, 3, 1, 1}
	for _, name := range []string{"roundrobin", "random", "hash"} { // hash: Pick without a key
		t.Run(name, func(t *testing.T) {
			bs := balBackends(len(weights))
			got := shares(t, mustBalancer(t, name, bs, weights, BalancerOptions{}), bs, balPicks, nil)
			for i, w := range weights {
				if want := float64(w) / 10; math.Abs(got[i]-want) > 0.01 {
					t.Errorf("share of %s = %.4f, want %.2f±0.01", bs[i].ID(), got[i], want)
				}
			}
		})
	}
}

// Every balancer, with and without slow start, honours skip: nil is
// allowed, a skipped backend is never returned, nil when all are skipped.
func TestBalancerSkip(t *testing.T) {
	for _, name := range BalancerNames() {
		for _, opts := range []BalancerOptions{{}, {SlowStart: time.Minute, Now: balClock}} {
			t.Run(fmt.Sprintf("%s/slowstart=%v", name, opts.SlowStart), func(t *testing.T) {
				bs := balBackends(4)
				bs[1] = newBackend("b", "127.0.0.1:2", balEpoch) // ramping: just up
				bal := mustBalancer(t, name, bs, []int{1, 2, 3, 4}, opts)
				for range 1000 {
					if bal.Pick(nil) == nil {
						t.Fatal("Pick(nil) = nil")
					}
					if b := bal.Pick(skipIDs("ac")); b == nil || b.ID() == "a" || b.ID() == "c" {
						t.Fatalf("Pick(skip a, c) = %v", b)
					}
					if b := bal.Pick(skipIDs("acd")); b == nil || b.ID() != "b" {
						t.Fatalf("Pick(skip all but b) = %v, want b", b)
					}
					if b := bal.Pick(skipIDs("abcd")); b != nil {
						t.Fatalf("Pick(skip all) = %s, want nil", b.ID())
					}
				}
				if kb, ok := bal.(KeyBalancer); ok {
					for k := range uint64(1000) {
						key := k * golden64
						if b := kb.PickKey(key, skipIDs("acd")); b == nil || b.ID() != "b" {
							t.Fatalf("PickKey(skip all but b) = %v, want b", b)
						}
						if b := kb.PickKey(key, skipIDs("abcd")); b != nil {
							t.Fatalf("PickKey(skip all) = %s, want nil", b.ID())
						}
					}
				}
			})
		}
	}
}

// Past 256 backends the rejected sets no longer fit on the stack.
func TestBalancerSkipLargePool(t *testing.T) {
	const n = 300
	weights := make([]int, n)
	for i := range weights {
		weights[i] = 1 + i%3
	}
	for _, name := range BalancerNames() {
		t.Run(name, func(t *testing.T) {
			bs := balBackends(n)
			bal := mustBalancer(t, name, bs, weights, BalancerOptions{})
			last := bs[n-1]
			onlyLast := func(b *Backend) bool { return b != last }
			for range 20 {
				if got := bal.Pick(onlyLast); got != last {
					t.Fatalf("Pick = %v, want the only survivor", got)
				}
			}
			if kb, ok := bal.(KeyBalancer); ok {
				if got := kb.PickKey(HashKey("x"), onlyLast); got != last {
					t.Fatalf("PickKey = %v, want the only survivor", got)
				}
			}
			if got := bal.Pick(func(*Backend) bool { return true }); got != nil {
				t.Fatalf("Pick with everything skipped = %v, want nil", got)
			}
		})
	}
}

func TestBalancerConstructorErrors(t *testing.T) {
	for _, name := range BalancerNames() {
		for _, tc := range []struct {
			name     string
			backends int
			weights  []int
		}{
			{"empty", 0, nil},
			{"length mismatch", 2, []int{1}},
			{"zero weight", 2, []int{1, 0}},
			{"too heavy", 1, []int{MaxWeight + 1}},
		} {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				if _, err := NewBalancer(name, balBackends(tc.backends), tc.weights, BalancerOptions{}); err == nil {
					t.Error("NewBalancer succeeded, want an error")
				}
			})
		}
	}
}

func TestNewBalancer(t *testing.T) {
	if got, want := BalancerNames(), []string{"roundrobin", "leastreq", "p2c", "random", "hash"}; !slices.Equal(got, want) {
		t.Errorf("BalancerNames() = %v, want %v", got, want)
	}
	BalancerNames()[0] = "changed"
	if BalancerNames()[0] != "roundrobin" {
		t.Error("BalancerNames returns the package's own slice")
	}
	bs := balBackends(2)
	for _, tc := range []struct {
		name string
		opts BalancerOptions
		want string // %T of the result
	}{
		{"", BalancerOptions{}, "*upstream.SWRR"},
		{"roundrobin", BalancerOptions{}, "*upstream.SWRR"},
		{"leastreq", BalancerOptions{}, "*upstream.LeastRequests"},
		{"p2c", BalancerOptions{}, "*upstream.P2CEWMA"},
		{"random", BalancerOptions{}, "*upstream.Random"},
		{"hash", BalancerOptions{}, "*upstream.ConsistentHash"},
		{"roundrobin", BalancerOptions{SlowStart: time.Second}, "*upstream.slowStart"},
		{"hash", BalancerOptions{SlowStart: time.Second}, "*upstream.slowStartKey"},
	} {
		bal := mustBalancer(t, tc.name, bs, []int{1, 1}, tc.opts)
		if got := fmt.Sprintf("%T", bal); got != tc.want {
			t.Errorf("NewBalancer(%q, %+v) is a %s, want %s", tc.name, tc.opts, got, tc.want)
		}
	}
	for _, tc := range []struct {
		opts BalancerOptions
		want float64
	}{
		{BalancerOptions{}, DefaultHashLoadFactor},
		{BalancerOptions{HashLoadFactor: 2}, 2},
		{BalancerOptions{HashUnbounded: true}, 0},
	} {
		if got := mustBalancer(t, "hash", bs, []int{1, 1}, tc.opts).(*ConsistentHash).factor; got != tc.want {
			t.Errorf("load factor with %+v = %v, want %v", tc.opts, got, tc.want)
		}
	}

	_, err := NewBalancer("leastconn", bs, []int{1, 1}, BalancerOptions{})
	if !errors.Is(err, ErrUnknownBalancer) {
		t.Fatalf("unknown name: err = %v, want ErrUnknownBalancer", err)
	}
	want := `upstream: unknown balancer "leastconn" (valid: roundrobin, leastreq, p2c, random, hash)`
	if err.Error() != want {
		t.Errorf("unknown name: err = %q, want %q", err, want)
	}
	for _, opts := range []BalancerOptions{{SlowStart: -time.Second}, {HashLoadFactor: 0.5}} {
		if _, err := NewBalancer("hash", bs, []int{1, 1}, opts); err == nil {
			t.Errorf("NewBalancer(hash, %+v) succeeded, want an error", opts)
		}
	}
}

func TestLeastRequestsPicksMin(t *testing.T) {
	for _, tc := range []struct {
		name     string
		weights  []int
		inflight []int64
		skip     string
		want     string
	}{
		{"min", []int{1, 1, 1}, []int64{3, 1, 2}, "", "b"},
		{"min last", []int{1, 1, 1, 1}, []int64{3, 3, 2, 0}, "", "d"},
		{"min skipped", []int{1, 1, 1}, []int64{3, 1, 2}, "b", "c"},
		// (inflight+1)/weight: 5/4 beats 2/1.
		{"weighted", []int{1, 4}, []int64{1, 4}, "", "b"},
		// 7/3 loses to 2/1.
		{"weighted loses", []int{1, 3}, []int64{1, 6}, "", "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs := balBackends(len(tc.weights))
			for i, n := range tc.inflight {
				bs[i].inflight.Add(n)
			}
			l, err := NewLeastRequests(bs, tc.weights)
			if err != nil {
				t.Fatal(err)
			}
			for range 2 * len(bs) { // every rotation of the start
				if got := l.Pick(skipIDs(tc.skip)); got == nil || got.ID() != tc.want {
					t.Fatalf("Pick = %v, want %s", got, tc.want)
				}
			}
		})
	}
}

// Equally loaded backends take turns.
func TestLeastRequestsRotatesTies(t *testing.T) {
	bs := balBackends(3)
	bs[0].inflight.Add(1) // not part of the tie
	l, err := NewLeastRequests(bs, ones(3))
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for range 600 {
		counts[l.Pick(nil).ID()]++
	}
	if len(counts) != 2 || counts["b"] != 300 || counts["c"] != 300 {
		t.Errorf("counts = %v, want b:300 c:300", counts)
	}
}

// Requests that never finish pile up in proportion to the weights.
func TestLeastRequestsWeightedLoad(t *testing.T) {
	bs := balBackends(3)
	l, err := NewLeastRequests(bs, []int{3, 1, 2})
	if err != nil {
		t.Fatal(err)
	}
	for range 600 {
		l.Pick(nil).inflight.Add(1)
	}
	for i, want := range []int64{300, 100, 200} {
		if got := bs[i].InFlight(); got < want-1 || got > want+1 {
			t.Errorf("%s has %d in flight, want %d±1", bs[i].ID(), got, want)
		}
	}
}

func TestP2CPrefersFastBackend(t *testing.T) {
	for _, tc := range []struct {
		name string
		fast int // the first fast backends are fast, the rest slow
		n    int
		min  float64 // minimum share of the fast ones
	}{
		// Both are always the candidates: the slow one never wins.
		{"1 fast 1 slow", 1, 2, 1},
		// A pick goes to a slow backend only when both candidates are
		// slow: 1 pair in 6.
		{"2 fast 2 slow", 2, 4, 0.80},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs := balBackends(tc.n)
			for i, b := range bs {
				if i < tc.fast {
					b.ObserveLatency(time.Millisecond)
				} else {
					b.ObserveLatency(10 * time.Millisecond)
				}
			}
			p, err := NewP2CEWMA(bs, ones(tc.n))
			if err != nil {
				t.Fatal(err)
			}
			got := shares(t, p, bs, balPicks, nil)
			fast := 0.0
			for _, s := range got[:tc.fast] {
				fast += s
			}
			if fast < tc.min {
				t.Errorf("fast backends got %.4f of the picks, want >= %.2f (shares %.4f)", fast, tc.min, got)
			}
		})
	}
}

func TestP2CScore(t *testing.T) {
	for _, tc := range []struct {
		name     string
		latency  [2]time.Duration
		inflight [2]int64
		weights  []int
		want     string
	}{
		{"faster", [2]time.Duration{time.Millisecond, 10 * time.Millisecond}, [2]int64{0, 0}, []int{1, 1}, "a"},
		// 1ms × 21 loses to 10ms × 1.
		{"faster but busy", [2]time.Duration{time.Millisecond, 10 * time.Millisecond}, [2]int64{20, 0}, []int{1, 1}, "b"},
		// 10ms × 1 / 20 beats 1ms × 1 / 1.
		{"slower but heavy", [2]time.Duration{10 * time.Millisecond, time.Millisecond}, [2]int64{0, 0}, []int{20, 1}, "a"},
		// No sample: compared by load alone.
		{"new backend idle", [2]time.Duration{0, 10 * time.Millisecond}, [2]int64{0, 1}, []int{1, 1}, "a"},
		{"new backend busy", [2]time.Duration{0, 10 * time.Millisecond}, [2]int64{2, 1}, []int{1, 1}, "b"},
		{"no samples", [2]time.Duration{0, 0}, [2]int64{2, 1}, []int{1, 1}, "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs := balBackends(2)
			for i, b := range bs {
				if tc.latency[i] != 0 {
					b.ObserveLatency(tc.latency[i])
				}
				b.inflight.Add(tc.inflight[i])
			}
			p, err := NewP2CEWMA(bs, tc.weights)
			if err != nil {
				t.Fatal(err)
			}
			for range 100 {
				if got := p.Pick(nil); got.ID() != tc.want {
					t.Fatalf("Pick = %s, want %s", got.ID(), tc.want)
				}
			}
		})
	}
}

// When a candidate is skipped, the two are drawn among the others, so equal
// survivors still share the load.
func TestP2CSkipSharesSurvivors(t *testing.T) {
	bs := balBackends(3)
	p, err := NewP2CEWMA(bs, ones(3))
	if err != nil {
		t.Fatal(err)
	}
	got := shares(t, p, bs, balPicks, skipIDs("a"))
	if got[0] != 0 || math.Abs(got[1]-0.5) > 0.01 || math.Abs(got[2]-0.5) > 0.01 {
		t.Errorf("shares with a skipped = %.4f, want 0 0.5 0.5", got)
	}
}

func TestRandomSkipRedistributes(t *testing.T) {
	bs := balBackends(4)
	r, err := NewRandom(bs, []int{1, 1, 2, 6})
	if err != nil {
		t.Fatal(err)
	}
	got := shares(t, r, bs, balPicks, skipIDs("d"))
	for i, want := range []float64{0.25, 0.25, 0.5, 0} {
		if math.Abs(got[i]-want) > 0.01 {
			t.Errorf("share of %s with d skipped = %.4f, want %.2f", bs[i].ID(), got[i], want)
		}
	}
}

// Every balancer is safe for concurrent picks while the backends' state
// changes under it (run with -race).
func TestBalancerConcurrent(t *testing.T) {
	for _, name := range BalancerNames() {
		t.Run(name, func(t *testing.T) {
			bs := balBackends(5)
			bal := mustBalancer(t, name, bs, []int{1, 2, 3, 4, 5}, BalancerOptions{SlowStart: time.Minute, Now: balClock})
			kb, _ := bal.(KeyBalancer)
			stop := make(chan struct{})
			var mutator sync.WaitGroup
			mutator.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					b := bs[i%len(bs)]
					b.inflight.Add(1)
					b.ObserveLatency(time.Duration(i%7+1) * time.Millisecond)
					b.SetChecked(i%3 != 0, balEpoch.Add(-time.Duration(i%90)*time.Second))
					b.inflight.Add(-1)
				}
			})
			up := func(b *Backend) bool { return !b.Up(balEpoch) }
			var pickers sync.WaitGroup
			for w := range 8 {
				pickers.Go(func() {
					for i := range 2000 {
						b := bal.Pick(up)
						if kb != nil && i%2 == 0 {
							b = kb.PickKey(uint64(w*2000+i)*golden64, up)
						}
						if b != nil && !slices.Contains(bs, b) {
							t.Errorf("Pick = %p, not a backend of the pool", b)
							return
						}
					}
				})
			}
			pickers.Wait()
			close(stop)
			mutator.Wait()
		})
	}
}
