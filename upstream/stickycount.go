package upstream

import (
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// Sticky sessions of a backend, for drain decisions: how many distinct
// sticky cookies naming a backend were seen lately, and when the last one
// was. The server calls NoteSticky on every request a sticky cookie pins
// to the backend; the admin API calls StickySessions.
//
// The count is a HyperLogLog sketch per time bucket: 1,024 one-byte
// registers (1 KiB) for each of 32 buckets of 2 minutes, 32 KiB per
// backend, allocated by its first NoteSticky. A window is the union
// (register-wise maximum) of the buckets it covers, estimated with Ertl's
// improved estimator (O. Ertl, "New cardinality estimation algorithms
// for HyperLogLog sketches", 2017), which needs no bias tables and is
// unbiased from one key to billions:
//
//   - Relative standard error 1.04/sqrt(1024) ≈ 3.3% for large counts,
//     less for small ones (a few keys are counted exactly or nearly:
//     "1 session left" reads 1). Memory does not grow with the count.
//   - The window is rounded out to whole buckets: keys seen up to 2
//     minutes before it may be counted. Windows longer than
//     MaxStickyWindow (an hour) are cut to it.
//   - A note racing the first note of a new bucket period is never lost
//     (the reset takes a mutex once per bucket period). A note more than
//     an hour late (its now long past) is dropped, or, racing the
//     recycling of its bucket, counted in the new period.
//
// NoteSticky is a hash, a few loads and, only when the key raises a
// register (a new key, rarely an old one), one compare-and-swap; a
// returning session's key is loads only. It allocates nothing after the
// first call.

const (
	stickyP       = 10                 // log2 of the registers per bucket
	stickyRegs    = 1 << stickyP       // 1,024 registers
	stickyQ       = 64 - stickyP       // hash bits left for the rank
	stickyWords   = stickyRegs / 8     // registers packed 8 to a uint64
	stickyBuckets = 32                 // time buckets kept
	stickyBucket  = 2 * time.Minute    // the span of one bucket
	noBucket      = math.MinInt64      // epoch of a bucket never used
	stickyLastRes = int64(time.Second) // resolution of the last-seen time

	// MaxStickyWindow is the longest window StickySessions counts over,
	// one hour. Rounded out to whole buckets it spans 31 of them, so it
	// never reaches the one recycled next.
	MaxStickyWindow = (stickyBuckets - 2) * stickyBucket
)

// stickyTracker is a backend's sketch.
type stickyTracker struct {
	last    atomic.Int64 // unix nanoseconds of the last note (to stickyLastRes)
	mu      sync.Mutex   // serialises bucket resets
	buckets [stickyBuckets]stickyRegisters
}

// stickyRegisters is one bucket: the registers of the notes whose time
// falls in bucket period epoch (unix time / stickyBucket).
type stickyRegisters struct {
	epoch atomic.Int64
	regs  [stickyWords]atomic.Uint64
}

func newStickyTracker() *stickyTracker {
	t := &stickyTracker{}
	for i := range t.buckets {
		t.buckets[i].epoch.Store(noBucket)
	}
	return t
}

// NoteSticky records that a request with a valid sticky cookie was pinned
// to b at now. key identifies the session, a hash of the cookie value
// computed by the caller (any 64-bit hash; it is mixed again here). See
// StickySessions.
func (b *Backend) NoteSticky(key uint64, now time.Time) {
	t := b.sticky.Load()
	if t == nil {
		t = newStickyTracker()
		if !b.sticky.CompareAndSwap(nil, t) {
			t = b.sticky.Load()
		}
	}
	t.note(key, now.UnixNano())
}

// StickySessions returns the number of distinct keys noted on b within
// window before now (an estimate; see the top of stickycount.go) and the
// time of the last note, within a second, at any time (zero if none). A
// draining backend is free when the count is 0, or last is older than the
// sessions' idle timeout.
func (b *Backend) StickySessions(now time.Time, window time.Duration) (count int, last time.Time) {
	t := b.sticky.Load()
	if t == nil {
		return 0, time.Time{}
	}
	if ns := t.last.Load(); ns != 0 {
		last = time.Unix(0, ns)
	}
	return t.count(now.UnixNano(), window), last
}

func (t *stickyTracker) note(key uint64, ns int64) {
	if ns-t.last.Load() >= stickyLastRes {
		t.last.Store(ns)
	}
	e := bucketOf(ns)
	bk := &t.buckets[uint64(e)%stickyBuckets]
	if be := bk.epoch.Load(); be != e {
		if be > e {
			return // the bucket holds a later period: this note is an hour late
		}
		t.reset(bk, e)
	}
	h := fmix64(key)
	idx := h >> stickyQ
	// The rank is the position of the first 1 in the other q bits, q+1 if
	// they are all 0: the sentinel bit below them caps the count.
	rank := uint64(bits.LeadingZeros64(h<<stickyP|1<<(stickyP-1))) + 1
	w := &bk.regs[idx/8]
	shift := (idx % 8) * 8
	for {
		old := w.Load()
		if old>>shift&0xff >= rank {
			return
		}
		if w.CompareAndSwap(old, old&^(0xff<<shift)|rank<<shift) {
			return
		}
	}
}

// reset recycles bk for period e, unless a racing note already did (or
// moved it on further).
func (t *stickyTracker) reset(bk *stickyRegisters, e int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if bk.epoch.Load() >= e {
		return
	}
	for i := range bk.regs {
		bk.regs[i].Store(0)
	}
	bk.epoch.Store(e) // after the clearing: a note that sees e writes into clean registers
}

// bucketOf returns the bucket period of unix nanoseconds ns.
func bucketOf(ns int64) int64 {
	e := ns / int64(stickyBucket)
	if ns < 0 && ns%int64(stickyBucket) != 0 {
		e-- // floor, for clocks before 1970 (tests)
	}
	return e
}

// count merges the buckets of the window ending at ns and estimates the
// number of distinct keys in them.
func (t *stickyTracker) count(ns int64, window time.Duration) int {
	if window <= 0 {
		return 0
	}
	window = min(window, MaxStickyWindow)
	to, from := bucketOf(ns), bucketOf(ns-int64(window))
	var regs [stickyRegs]uint8
	used := false
	for i := range t.buckets {
		bk := &t.buckets[i]
		if e := bk.epoch.Load(); e < from || e > to {
			continue
		}
		used = true
		for j := range bk.regs {
			w := bk.regs[j].Load()
			if w == 0 {
				continue
			}
			for k := range 8 {
				regs[j*8+k] = max(regs[j*8+k], uint8(w>>(8*k)))
			}
		}
	}
	if !used {
		return 0
	}
	return int(math.Round(ertlEstimate(&regs)))
}

// ertlEstimate is Ertl's improved raw estimator (Algorithm 6 of the
// paper) over registers of values 0..stickyQ+1.
func ertlEstimate(regs *[stickyRegs]uint8) float64 {
	var c [stickyQ + 2]int // histogram of register values
	for _, r := range regs {
		c[r]++
	}
	const m = float64(stickyRegs)
	if c[0] == stickyRegs {
		return 0
	}
	z := m * ertlTau(1-float64(c[stickyQ+1])/m)
	for k := stickyQ; k >= 1; k-- {
		z = 0.5 * (z + float64(c[k]))
	}
	z += m * ertlSigma(float64(c[0])/m)
	return m * m / (2 * math.Ln2 * z)
}

// ertlSigma is σ(x) = x + Σ_{k≥1} x^(2^k)·2^(k-1), for 0 <= x < 1.
func ertlSigma(x float64) float64 {
	if x == 1 {
		return math.Inf(1)
	}
	y, z := 1.0, x
	for {
		x *= x
		prev := z
		z += x * y
		y += y
		if z == prev {
			return z
		}
	}
}

// ertlTau is τ(x) = (1 - x - Σ_{k≥1} (1 - x^(2^-k))²·2^-k) / 3, for
// 0 <= x <= 1.
func ertlTau(x float64) float64 {
	if x == 0 || x == 1 {
		return 0
	}
	y, z := 1.0, 1-x
	for {
		x = math.Sqrt(x)
		prev := z
		y *= 0.5
		z -= (1 - x) * (1 - x) * y
		if z == prev {
			return z / 3
		}
	}
}
