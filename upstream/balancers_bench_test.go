//go:build !race

// The race detector allocates on its own, and under it sync.Pool drops a
// share of what it is given on purpose; the allocation counts hold without
// it (make test's pass without -race runs TestBalancerPickAllocations).

package upstream

import (
	"testing"
	"time"
)

type namedBalancer struct {
	name string
	bal  Balancer
}

// benchBalancers returns every balancer over 4 backends weighted 5,3,1,1,
// plus slow start over round robin with nothing ramping (the steady state)
// and with one backend ramping, the way a pick sees them.
func benchBalancers(tb testing.TB) ([]*Backend, []namedBalancer) {
	bs := balBackends(4)
	weights := []int{5, 3, 1, 1}
	for i, b := range bs {
		b.ObserveLatency(time.Duration(i+1) * time.Millisecond)
	}
	var out []namedBalancer
	for _, name := range BalancerNames() {
		out = append(out, namedBalancer{name, mustBalancer(tb, name, bs, weights, BalancerOptions{})})
	}
	slow := BalancerOptions{SlowStart: time.Minute, Now: balClock}
	ramping := append([]*Backend(nil), bs...)
	ramping[3] = newBackend("d", "127.0.0.1:8003", balEpoch.Add(-30*time.Second))
	return bs, append(out,
		namedBalancer{"slowstart-steady", mustBalancer(tb, "roundrobin", bs, weights, slow)},
		namedBalancer{"slowstart-ramping", mustBalancer(tb, "roundrobin", ramping, weights, slow)})
}

// BenchmarkBalancerPick measures one pick of every balancer: with nothing
// skipped, from 8 goroutines at once, and with the heaviest backend down
// (the fallback paths). BenchmarkBalancerPickKey measures a keyed pick.
func BenchmarkBalancerPick(b *testing.B) {
	bs, bals := benchBalancers(b)
	down := bs[0]
	skip := func(b *Backend) bool { return b == down }
	for _, tc := range bals {
		b.Run(tc.name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tc.bal.Pick(nil)
			}
		})
		b.Run(tc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					tc.bal.Pick(nil)
				}
			})
		})
		b.Run(tc.name+"/heaviest-down", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tc.bal.Pick(skip)
			}
		})
	}
}

func BenchmarkBalancerPickKey(b *testing.B) {
	bs := balBackends(4)
	keys := hashKeys(1024)
	for _, tc := range []struct {
		name   string
		factor float64
	}{{"unbounded", 0}, {"bounded", DefaultHashLoadFactor}} {
		h := mustHash(b, bs, []int{5, 3, 1, 1}, tc.factor)
		for i, b := range bs {
			b.inflight.Store(int64(3 * i)) // some load, so the bound is computed
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				h.PickKey(keys[i&1023], nil)
				i++
			}
		})
	}
	b.Run("HashKey", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			HashKey("203.0.113.195")
		}
	})
}

// No pick allocates: not the fast paths, not the fallbacks with skipped
// backends, not slow start's combined skip function.
func TestBalancerPickAllocations(t *testing.T) {
	bs, bals := benchBalancers(t)
	down := bs[0]
	skip := func(b *Backend) bool { return b == down }
	allButLast := func(b *Backend) bool { return b != bs[3] }
	for _, tc := range bals {
		for _, s := range []struct {
			name string
			fn   func(*Backend) bool
		}{{"nil", nil}, {"heaviest-down", skip}, {"one-left", allButLast}} {
			if n := testing.AllocsPerRun(1000, func() { tc.bal.Pick(s.fn) }); n != 0 {
				t.Errorf("%s: Pick(%s) allocates %v times", tc.name, s.name, n)
			}
		}
	}
	for _, factor := range []float64{0, DefaultHashLoadFactor} {
		h := mustHash(t, bs, []int{5, 3, 1, 1}, factor)
		if n := testing.AllocsPerRun(1000, func() { h.PickKey(12345, skip) }); n != 0 {
			t.Errorf("PickKey (load factor %v) allocates %v times", factor, n)
		}
	}
}
