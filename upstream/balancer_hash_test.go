package upstream

import (
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strings"
	"testing"
)

// HashKey is shared by gateways of different versions: a change of its
// values remaps every client, so it must break this test.
func TestHashKeyStable(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
	}{
		{"", 0xefd01f60ba992926},
		{"192.0.2.1", 0x8fc433616f773343},
		{"session=3f2a9c", 0x8c7fdac8dc2e03ba},
	} {
		if got := HashKey(tc.in); got != tc.want {
			t.Errorf("HashKey(%q) = %#x, want %#x", tc.in, got, tc.want)
		}
	}
}

// HashKey is what its doc says: FNV-1a, then the murmur3 finalizer.
func TestHashKeyIsFNV1a(t *testing.T) {
	for _, s := range []string{"", "a", "10.0.0.1", "2001:db8::1", strings.Repeat("cookie", 50)} {
		h := fnv.New64a()
		h.Write([]byte(s))
		if got, want := HashKey(s), fmix64(h.Sum64()); got != want {
			t.Errorf("HashKey(%q) = %#x, want %#x", s, got, want)
		}
	}
}

// hashKeys returns n keys as a gateway would make them from client
// addresses.
func hashKeys(n int) []uint64 {
	keys := make([]uint64, n)
	for i := range keys {
		keys[i] = HashKey(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
	}
	return keys
}

func mustHash(t testing.TB, bs []*Backend, weights []int, loadFactor float64) *ConsistentHash {
	t.Helper()
	h, err := NewConsistentHash(bs, weights, loadFactor)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// The same key goes to the same backend, on every pick and on every
// gateway, whatever order the configuration lists the backends in.
func TestConsistentHashSameKey(t *testing.T) {
	bs := balBackends(5)
	weights := []int{1, 2, 3, 1, 1}
	h := mustHash(t, bs, weights, 0)
	rev, revWeights := slices.Clone(bs), slices.Clone(weights)
	slices.Reverse(rev)
	slices.Reverse(revWeights)
	other := mustHash(t, rev, revWeights, 0)
	for _, key := range hashKeys(10_000) {
		b := h.PickKey(key, nil)
		if again := h.PickKey(key, nil); again != b {
			t.Fatalf("key %#x: %s, then %s", key, b.ID(), again.ID())
		}
		if o := other.PickKey(key, nil); o != b {
			t.Fatalf("key %#x: %s, but %s with the backends reversed", key, b.ID(), o.ID())
		}
	}
}

// Removing a backend moves the keys that were on it and no others.
func TestConsistentHashRemoveBackend(t *testing.T) {
	bs := balBackends(5)
	h := mustHash(t, bs, ones(5), 0)
	removed := bs[2]
	rest := slices.Delete(slices.Clone(bs), 2, 3)
	after := mustHash(t, rest, ones(4), 0)
	movedTo := map[string]int{}
	for _, key := range hashKeys(10_000) {
		was, now := h.PickKey(key, nil), after.PickKey(key, nil)
		if was == removed {
			movedTo[now.ID()]++
		} else if now != was {
			t.Fatalf("key %#x moved from %s to %s, though %s is still there", key, was.ID(), now.ID(), was.ID())
		}
	}
	// The removed backend's keys spread over the others, not onto one.
	if len(movedTo) < 3 {
		t.Errorf("keys of the removed backend went to %v, want spread over the others", movedTo)
	}
}

// Raising a weight moves keys only onto the backend that gained it.
func TestConsistentHashRaiseWeight(t *testing.T) {
	bs := balBackends(3)
	h := mustHash(t, bs, []int{1, 1, 1}, 0)
	heavier := mustHash(t, bs, []int{1, 3, 1}, 0)
	for _, key := range hashKeys(10_000) {
		if was, now := h.PickKey(key, nil), heavier.PickKey(key, nil); now != was && now != bs[1] {
			t.Fatalf("key %#x moved from %s to %s", key, was.ID(), now.ID())
		}
	}
}

// The ring gives each backend about its weight's share of the keys.
func TestConsistentHashWeights(t *testing.T) {
	bs := balBackends(4)
	weights := []int{1, 2, 3, 4}
	h := mustHash(t, bs, weights, 0)
	counts := make([]int, len(bs))
	keys := hashKeys(100_000)
	for _, key := range keys {
		counts[slices.Index(bs, h.PickKey(key, nil))]++
	}
	for i, w := range weights {
		want := float64(w) / 10
		// ±10% of the share per 100 points of weight: allow ±25%.
		if got := float64(counts[i]) / float64(len(keys)); math.Abs(got-want) > 0.25*want {
			t.Errorf("%s (weight %d) has %.3f of the keys, want %.2f±25%%", bs[i].ID(), w, got, want)
		}
	}
}

// A skipped backend's key goes to the next backend clockwise, the same one
// an overload sends it to.
func TestConsistentHashSkip(t *testing.T) {
	bs := balBackends(4)
	h := mustHash(t, bs, ones(4), 0)
	for _, key := range hashKeys(1000) {
		home := h.PickKey(key, nil)
		next := h.PickKey(key, func(b *Backend) bool { return b == home })
		if next == nil || next == home {
			t.Fatalf("key %#x: next after %s = %v", key, home.ID(), next)
		}
		// Skipping a backend that is not the key's changes nothing.
		other := bs[(slices.Index(bs, home)+1)%len(bs)]
		if got := h.PickKey(key, func(b *Backend) bool { return b == other }); got != home {
			t.Fatalf("key %#x: skipping %s moved it from %s to %s", key, other.ID(), home.ID(), got.ID())
		}
	}
}

func TestConsistentHashBoundedLoad(t *testing.T) {
	for _, tc := range []struct {
		name    string
		weights []int // of a (the key's backend), b, c, d
		home    int64 // in flight on a
		others  int64 // in flight on each of the others
		factor  float64
		stays   bool
	}{
		{"idle", []int{1, 1, 1, 1}, 0, 0, 1.25, true},
		{"balanced", []int{1, 1, 1, 1}, 5, 5, 1.25, true},
		// 7 < ceil(1.25 × (22+1) / 4) = 8
		{"below bound", []int{1, 1, 1, 1}, 7, 5, 1.25, true},
		// 8 = ceil(1.25 × (23+1) / 4)
		{"at bound", []int{1, 1, 1, 1}, 8, 5, 1.25, false},
		{"inflated", []int{1, 1, 1, 1}, 100, 0, 1.25, false},
		{"unbounded", []int{1, 1, 1, 1}, 100, 0, 0, true},
		{"larger factor", []int{1, 1, 1, 1}, 8, 5, 2, true},
		// a has weight 3 of 6, so its bound is ceil(1.25 × 25 × 3/6) = 16,
		// where an unweighted one would be 8.
		{"weighted below bound", []int{3, 1, 1, 1}, 12, 4, 1.25, true},
		// 17 = ceil(1.25 × (26+1) × 3/6)
		{"weighted at bound", []int{3, 1, 1, 1}, 17, 3, 1.25, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs := balBackends(4)
			home := bs[0]
			unbounded := mustHash(t, bs, tc.weights, 0)
			var key uint64
			for _, k := range hashKeys(100) {
				if unbounded.PickKey(k, nil) == home {
					key = k
					break
				}
			}
			for _, b := range bs {
				b.inflight.Store(tc.others)
			}
			home.inflight.Store(tc.home)

			next := unbounded.PickKey(key, func(b *Backend) bool { return b == home })
			want := home
			if !tc.stays {
				want = next
			}
			h := mustHash(t, bs, tc.weights, tc.factor)
			for range 10 {
				if got := h.PickKey(key, nil); got != want {
					t.Fatalf("PickKey = %s, want %s (next on the ring %s)", got.ID(), want.ID(), next.ID())
				}
			}
		})
	}
}

// Requests racing the pick can push every backend over its bound between
// the sum and the walk; the key then still goes to its own backend rather
// than nowhere. The skip function plays the racing requests.
func TestConsistentHashBoundedNeverRefuses(t *testing.T) {
	bs := balBackends(3)
	h := mustHash(t, bs, ones(3), DefaultHashLoadFactor)
	unbounded := mustHash(t, bs, ones(3), 0)
	race := func(b *Backend) bool {
		if b == bs[len(bs)-1] { // the end of the summing pass
			for _, b := range bs {
				b.inflight.Add(1000)
			}
		}
		return false
	}
	for _, key := range hashKeys(100) {
		if got, want := h.PickKey(key, race), unbounded.PickKey(key, nil); got != want {
			t.Fatalf("key %#x: PickKey = %v, want its own backend %s", key, got, want.ID())
		}
	}
}

func TestNewConsistentHashErrors(t *testing.T) {
	for _, f := range []float64{-1, 0.5, 0.999, math.Inf(1), math.NaN()} {
		if _, err := NewConsistentHash(balBackends(2), ones(2), f); err == nil {
			t.Errorf("load factor %v accepted", f)
		}
	}
	bs := balBackends(2)
	bs[1] = newBackend("a", "127.0.0.1:9", balEpoch)
	if _, err := NewConsistentHash(bs, ones(2), 0); err == nil {
		t.Error("duplicate backend IDs accepted")
	}
}
