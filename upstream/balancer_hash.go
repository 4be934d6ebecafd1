package upstream

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// vnodesPerWeight is the number of points a backend has on the ring per
// unit of weight. A backend's share of the keys deviates from its weight
// by about 1/sqrt(points): 100 points give ±10%. A point costs 12 bytes, so
// a weight-1 backend costs 1.2 KB and a MaxWeight one 300 KB.
const vnodesPerWeight = 100

// ConsistentHash maps keys to backends on a hash ring, bounded by load
// (Mirrokni, Thorup, Zadimoghaddam, "Consistent Hashing with Bounded
// Loads", 2017; HAProxy's hash-balance-factor): a key goes to the first
// backend clockwise from its point whose requests in flight are below
//
//	ceil(loadFactor × (in flight in total + 1) × weight / total weight)
//
// where the totals are over the backends skip accepts. With equal weights
// that is the paper's ceil(c·(m+1)/n). The bound is weighted, as HAProxy's
// is, because a heavier backend owns more of the ring: an unweighted bound
// would push a weight-3 backend's keys away whenever it carries its fair
// three times the average. Since the bounds add up to at least the load
// plus one, some backend is always below its bound; a key moves only while
// its backend is overloaded, and then to the same next backend on every
// gateway.
//
// The ring depends only on each backend's ID and weight, not on the order
// of the configuration or on the other backends, so gateways with the same
// backends agree on every key, and removing a backend moves only the keys
// that were on it. Raising a backend's weight adds points without moving
// the old ones, so it moves keys only onto that backend.
//
// Pick without a key is weighted random.
type ConsistentHash struct {
	backends []*Backend
	weights  []float64
	points   []uint64 // sorted ring
	owners   []int32  // owners[k] is the backend of points[k]
	factor   float64  // 0: unbounded
	random   *Random
}

// NewConsistentHash returns a consistent-hash balancer over backends with
// the given weights (same length, each 1..MaxWeight) and load bound
// loadFactor: 0 means unbounded, otherwise at least 1
// (DefaultHashLoadFactor is the usual choice). Backend IDs must be unique:
// they place the backends on the ring.
func NewConsistentHash(backends []*Backend, weights []int, loadFactor float64) (*ConsistentHash, error) {
	if err := checkWeights("hash", backends, weights); err != nil {
		return nil, err
	}
	if !validLoadFactor(loadFactor) {
		return nil, fmt.Errorf("upstream: hash: load factor %v: want 0 (unbounded) or at least 1", loadFactor)
	}
	random, err := NewRandom(backends, weights)
	if err != nil {
		return nil, err
	}
	h := &ConsistentHash{
		backends: random.backends,
		weights:  make([]float64, len(weights)),
		factor:   loadFactor,
		random:   random,
	}
	type vnode struct {
		point uint64
		owner int32
	}
	var ring []vnode
	seen := make(map[string]bool, len(backends))
	for i, b := range backends {
		if seen[b.ID()] {
			return nil, fmt.Errorf("upstream: hash: backend id %q used twice", b.ID())
		}
		seen[b.ID()] = true
		h.weights[i] = float64(weights[i])
		// The points of a backend are a splitmix64 sequence seeded by the
		// hash of its ID.
		seed := HashKey(b.ID())
		for k := range vnodesPerWeight * weights[i] {
			ring = append(ring, vnode{mix64(seed + uint64(k+1)*golden64), int32(i)})
		}
	}
	// Equal points (one in about 2^64/len(ring)²) are ordered by ID, so
	// that the ring does not depend on the configuration order.
	slices.SortFunc(ring, func(a, b vnode) int {
		if c := cmp.Compare(a.point, b.point); c != 0 {
			return c
		}
		return cmp.Compare(backends[a.owner].ID(), backends[b.owner].ID())
	})
	h.points = make([]uint64, len(ring))
	h.owners = make([]int32, len(ring))
	for k, v := range ring {
		h.points[k], h.owners[k] = v.point, v.owner
	}
	return h, nil
}

// Pick implements Balancer: without a key there is nothing to be consistent
// about, so it is weighted random.
func (h *ConsistentHash) Pick(skip func(*Backend) bool) *Backend { return h.random.Pick(skip) }

// PickKey implements KeyBalancer. Unbounded, it walks the ring from key's
// point to the first backend skip accepts, calling skip at most once per
// backend. Bounded, it first calls skip on every backend and sums their
// requests in flight (the bound needs the total), then walks the ring to
// the first accepted backend below its bound. If racing requests push every
// accepted backend to its bound, the first accepted one clockwise takes the
// key anyway.
func (h *ConsistentHash) PickKey(key uint64, skip func(*Backend) bool) *Backend {
	start, _ := slices.BinarySearch(h.points, key)
	if start == len(h.points) {
		start = 0
	}
	if h.factor == 0 {
		return h.pickUnbounded(start, skip)
	}
	return h.pickBounded(start, skip)
}

func (h *ConsistentHash) pickUnbounded(start int, skip func(*Backend) bool) *Backend {
	b := h.backends[h.owners[start]]
	if skip == nil || !skip(b) {
		return b
	}
	var small [stackWords]uint64
	seen := bitset(small[:])
	if n := words(len(h.backends)); n > len(small) {
		seen = make(bitset, n)
	}
	seen.set(int(h.owners[start]))
	left := len(h.backends) - 1
	for k := start + 1; left > 0; k++ {
		if k == len(h.points) {
			k = 0
		}
		i := int(h.owners[k])
		if seen.has(i) {
			continue
		}
		if b := h.backends[i]; !skip(b) {
			return b
		}
		seen.set(i)
		left--
	}
	return nil
}

func (h *ConsistentHash) pickBounded(start int, skip func(*Backend) bool) *Backend {
	var small [stackWords]uint64
	ok := bitset(small[:]) // accepted by skip and not yet found over the bound
	if n := words(len(h.backends)); n > len(small) {
		ok = make(bitset, n)
	}
	left := 0
	var load, weight float64
	for i, b := range h.backends {
		if skip == nil || !skip(b) {
			ok.set(i)
			left++
			load += float64(b.InFlight())
			weight += h.weights[i]
		}
	}
	if left == 0 {
		return nil
	}
	perWeight := h.factor * (load + 1) / weight
	var first *Backend
	for k := start; left > 0; k++ {
		if k == len(h.points) {
			k = 0
		}
		i := int(h.owners[k])
		if !ok.has(i) {
			continue
		}
		b := h.backends[i]
		if float64(b.InFlight()) < math.Ceil(perWeight*h.weights[i]) {
			return b
		}
		if first == nil {
			first = b
		}
		ok.unset(i)
		left--
	}
	return first
}

// HashKey hashes a key for PickKey: a client address, a header, cookie or
// query parameter value. It is 64-bit FNV-1a followed by the murmur3
// finalizer (FNV-1a alone leaves similar short strings, such as addresses
// in one subnet, close together in the high bits that order the ring).
//
// The value is part of the contract between gateways: several instances
// must send a key to the same backend, across versions too, so HashKey must
// never change; TestHashKeyStable pins it.
func HashKey(s string) uint64 {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime64
	}
	return fmix64(h)
}

// fmix64 is murmur3's 64-bit finalizer: every input bit affects every
// output bit.
func fmix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// golden64 is 2^64 divided by the golden ratio, splitmix64's increment.
const golden64 = 0x9e3779b97f4a7c15

// mix64 is splitmix64's output function.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
