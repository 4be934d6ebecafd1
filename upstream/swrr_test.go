package upstream

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// testBackends returns n backends named a, b, c, ... with private state.
func testBackends(n int) []*Backend {
	bs := make([]*Backend, n)
	for i := range bs {
		id := string(rune('a' + i))
		if n > 26 {
			id = fmt.Sprintf("b%d", i)
		}
		bs[i] = &Backend{id: id, addr: "127.0.0.1:1"}
	}
	return bs
}

func mustSWRR(t testing.TB, weights ...int) (*SWRR, []*Backend) {
	t.Helper()
	bs := testBackends(len(weights))
	s, err := NewSWRR(bs, weights)
	if err != nil {
		t.Fatal(err)
	}
	return s, bs
}

// picks returns the IDs of n picks, concatenated.
func picks(s *SWRR, n int, skip func(*Backend) bool) string {
	var sb strings.Builder
	for range n {
		if b := s.Pick(skip); b != nil {
			sb.WriteString(b.ID())
		} else {
			sb.WriteString("-")
		}
	}
	return sb.String()
}

func TestSWRRSequence(t *testing.T) {
	for _, tc := range []struct {
		weights []int
		want    string // one cycle
	}{
		{[]int{1}, "a"},
		{[]int{1, 1}, "ab"},
		{[]int{1, 2}, "bab"},
		{[]int{5, 1, 1}, "aabacaa"}, // nginx's documented example
		{[]int{100, 200}, "bab"},    // reduced by the gcd
		{[]int{4, 2, 2}, "abca"},    // gcd 2
		{[]int{3, 3, 2}, "abcabcab"},
	} {
		t.Run(fmt.Sprint(tc.weights), func(t *testing.T) {
			s, _ := mustSWRR(t, tc.weights...)
			got := picks(s, 3*len(tc.want), nil)
			if want := strings.Repeat(tc.want, 3); got != want {
				t.Errorf("picks = %s, want %s", got, want)
			}
		})
	}
}

func TestSWRRExactCounts(t *testing.T) {
	s, _ := mustSWRR(t, 1, 2)
	counts := map[string]int{}
	for range 300 {
		counts[s.Pick(nil).ID()]++
	}
	if counts["a"] != 100 || counts["b"] != 200 {
		t.Errorf("counts = %v, want a:100 b:200", counts)
	}
}

// Concurrent picks draw distinct cursor values, so the counts stay exact.
func TestSWRRConcurrentExactCounts(t *testing.T) {
	s, _ := mustSWRR(t, 5, 1, 1)
	const workers, each = 8, 700
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			local := map[string]int{}
			for range each {
				local[s.Pick(nil).ID()]++
			}
			mu.Lock()
			defer mu.Unlock()
			for k, v := range local {
				counts[k] += v
			}
		})
	}
	wg.Wait()
	total := workers * each
	if counts["a"] != total*5/7 || counts["b"] != total/7 || counts["c"] != total/7 {
		t.Errorf("counts = %v over %d picks, want 5:1:1", counts, total)
	}
}

func TestSWRRSkip(t *testing.T) {
	skipIDs := func(ids string) func(*Backend) bool {
		return func(b *Backend) bool { return strings.Contains(ids, b.ID()) }
	}
	for _, tc := range []struct {
		name    string
		weights []int
		skip    string
		n       int
		want    string
	}{
		// The heavy backend is down: the survivors, equal in weight, alternate
		// instead of the one after the long run of a's taking it all.
		{"heavy down", []int{5, 1, 1}, "a", 6, "bcbcbc"},
		{"light down", []int{5, 1, 1}, "b", 6, "aaacaa"},
		{"one left", []int{1, 2, 3}, "bc", 4, "aaaa"},
		{"all down", []int{1, 2}, "ab", 3, "---"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := mustSWRR(t, tc.weights...)
			if got := picks(s, tc.n, skipIDs(tc.skip)); got != tc.want {
				t.Errorf("picks = %s, want %s", got, tc.want)
			}
		})
	}
}

// Past 256 backends the rejected set no longer fits the stack bitset.
func TestSWRRSkipLargePool(t *testing.T) {
	const n = 300
	weights := make([]int, n)
	for i := range weights {
		weights[i] = 1 + i%3
	}
	bs := testBackends(n)
	s, err := NewSWRR(bs, weights)
	if err != nil {
		t.Fatal(err)
	}
	last := bs[n-1]
	calls := 0
	onlyLast := func(b *Backend) bool { calls++; return b != last }
	for range 5 {
		calls = 0
		if got := s.Pick(onlyLast); got != last {
			t.Fatalf("Pick = %v, want the only survivor", got.ID())
		}
		if calls > n {
			t.Fatalf("skip called %d times for %d backends", calls, n)
		}
	}
	if got := s.Pick(func(*Backend) bool { return true }); got != nil {
		t.Fatalf("Pick with everything skipped = %v, want nil", got.ID())
	}
}

func TestNewSWRRErrors(t *testing.T) {
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
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewSWRR(testBackends(tc.backends), tc.weights); err == nil {
				t.Error("NewSWRR succeeded, want an error")
			}
		})
	}
}

func BenchmarkPick(b *testing.B) {
	s, bs := mustSWRR(b, 5, 3, 1, 1)
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.Pick(nil)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				s.Pick(nil)
			}
		})
	})
	down := bs[0]
	skip := func(b *Backend) bool { return b == down }
	b.Run("heaviest-down", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.Pick(skip)
		}
	})
}
