//go:build !race

// The race detector allocates on its own, and under it sync.Pool drops a
// share of what it is given on purpose; the allocation counts hold without
// it (make test's pass without -race runs TestAdminAllocations).

package upstream

import (
	"fmt"
	"testing"
	"time"
)

// benchPool returns a pool of 4 backends weighted 5,3,1,1 over levels
// priority groups (backends alternate between them), from reg.
func benchPool(tb testing.TB, reg *Registry, balancer string, levels int) *Pool {
	tb.Helper()
	var cfgs []BackendConfig
	for i, w := range []int{5, 3, 1, 1} {
		cfgs = append(cfgs, BackendConfig{ID: fmt.Sprint("b", i), Addr: fmt.Sprintf("127.0.0.1:%d", 9000+i), Weight: w, Priority: i % levels})
	}
	p, err := NewPool(PoolConfig{Backends: cfgs, Balancer: balancer}, reg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Close)
	return p
}

// adminCases are the admin situations a pick can meet: nothing held (the
// fast path, one extra atomic load), a backend of another pool of the
// registry held (the level is scanned, nothing wrapped), and a backend of
// this pool draining (the skip function is wrapped; with 2 levels the
// draining b3 is in the inactive backup group, so it is the scan only).
var adminCases = []struct {
	name string
	set  func(tb testing.TB, reg *Registry, p *Pool)
}{
	{"none-held", func(testing.TB, *Registry, *Pool) {}},
	{"held-elsewhere", func(tb testing.TB, reg *Registry, _ *Pool) {
		reg.Backend("x", "127.0.0.1:9999").SetAdminState(Drain)
	}},
	{"one-draining", func(tb testing.TB, _ *Registry, p *Pool) {
		if err := p.SetAdminState("b3", Drain); err != nil {
			tb.Fatal(err)
		}
	}},
}

// BenchmarkPoolPick measures Pool.PickAt with a skip function like a
// request's (backends that are down), for the admin cases. none-held is
// the pick as it was before admin states, plus one atomic load.
func BenchmarkPoolPick(b *testing.B) {
	now := time.Now()
	skip := func(b *Backend) bool { return !b.Up(now) }
	for _, bal := range []string{"roundrobin", "p2c", "hash"} {
		for _, levels := range []int{1, 2} {
			for _, ac := range adminCases {
				reg := NewRegistry()
				p := benchPool(b, reg, bal, levels)
				ac.set(b, reg, p)
				b.Run(fmt.Sprintf("%s/levels=%d/%s", bal, levels, ac.name), func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						p.PickAt(now, skip)
					}
				})
			}
		}
	}
}

// BenchmarkPoolReweigh measures SetWeight: the rebuild of the pool's
// balancers, which the admin call pays (requests pay nothing).
func BenchmarkPoolReweigh(b *testing.B) {
	for _, bal := range []string{"roundrobin", "hash"} {
		p := benchPool(b, nil, bal, 1)
		b.Run(bal, func(b *testing.B) {
			b.ReportAllocs()
			w := 0
			for b.Loop() {
				w = w%8 + 1
				if err := p.SetWeight("b3", w); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkNoteSticky measures NoteSticky: returning sessions (keys
// already in the registers: loads only), new sessions (a key per call),
// and returning sessions from every CPU at once.
func BenchmarkNoteSticky(b *testing.B) {
	now := time.Now()
	keys := hashKeys(4096)
	warm := func() *Backend {
		be := newBackend("a", "127.0.0.1:1", now)
		for _, k := range keys {
			be.NoteSticky(k, now)
		}
		return be
	}
	b.Run("returning", func(b *testing.B) {
		be := warm()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			be.NoteSticky(keys[i&4095], now)
			i++
		}
	})
	b.Run("new", func(b *testing.B) {
		be := warm()
		b.ReportAllocs()
		i := uint64(0)
		for b.Loop() {
			be.NoteSticky(i, now)
			i++
		}
	})
	b.Run("returning-parallel", func(b *testing.B) {
		be := warm()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				be.NoteSticky(keys[i&4095], now)
				i++
			}
		})
	})
	b.Run("StickySessions", func(b *testing.B) {
		be := warm()
		b.ReportAllocs()
		for b.Loop() {
			be.StickySessions(now, 30*time.Minute)
		}
	})
}

// No pick allocates in any admin case, and neither does NoteSticky once a
// backend has its sketch.
func TestAdminAllocations(t *testing.T) {
	now := time.Now()
	skip := func(b *Backend) bool { return !b.Up(now) }
	for _, bal := range []string{"roundrobin", "hash"} {
		for _, ac := range adminCases {
			reg := NewRegistry()
			p := benchPool(t, reg, bal, 2)
			ac.set(t, reg, p)
			if n := testing.AllocsPerRun(1000, func() { p.PickAt(now, skip) }); n != 0 {
				t.Errorf("%s/%s: PickAt allocates %v times", bal, ac.name, n)
			}
			if n := testing.AllocsPerRun(1000, func() { p.PickKeyAt(now, 12345, skip) }); n != 0 {
				t.Errorf("%s/%s: PickKeyAt allocates %v times", bal, ac.name, n)
			}
		}
	}
	b := newBackend("a", "127.0.0.1:1", now)
	b.NoteSticky(1, now)
	key := uint64(0)
	if n := testing.AllocsPerRun(1000, func() { key++; b.NoteSticky(key, now) }); n != 0 {
		t.Errorf("NoteSticky allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { b.StickySessions(now, time.Hour) }); n != 0 {
		t.Errorf("StickySessions allocates %v times", n)
	}
}
