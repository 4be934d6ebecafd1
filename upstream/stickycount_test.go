package upstream

import (
	"fmt"
	"testing"
	"time"
)

var stickyEpoch = time.Date(2025, 1, 1, 12, 0, 30, 0, time.UTC)

func sessionKey(i int) uint64 { return HashKey(fmt.Sprintf("session-%d", i)) }

func TestStickySessions(t *testing.T) {
	b := newBackend("a", "127.0.0.1:1", stickyEpoch)
	if n, last := b.StickySessions(stickyEpoch, 30*time.Minute); n != 0 || !last.IsZero() {
		t.Fatalf("no note yet: %d, %v", n, last)
	}
	t0 := stickyEpoch
	for i := range 1000 {
		b.NoteSticky(sessionKey(i), t0)
	}
	// Returning sessions do not count twice.
	for i := range 1000 {
		b.NoteSticky(sessionKey(i), t0.Add(time.Minute))
	}
	n, last := b.StickySessions(t0.Add(time.Minute), 30*time.Minute)
	if n < 950 || n > 1050 {
		t.Errorf("1,000 sessions counted as %d", n)
	}
	if !last.Equal(t0.Add(time.Minute)) {
		t.Errorf("last = %v, want %v", last, t0.Add(time.Minute))
	}

	// 500 other sessions 40 minutes later: a 30-minute window sees them
	// alone, an hour sees both.
	t1 := t0.Add(40 * time.Minute)
	for i := range 500 {
		b.NoteSticky(sessionKey(10_000+i), t1)
	}
	if n, _ := b.StickySessions(t1, 30*time.Minute); n < 475 || n > 525 {
		t.Errorf("30-minute window counts %d, want about 500", n)
	}
	if n, _ := b.StickySessions(t1, time.Hour); n < 1425 || n > 1575 {
		t.Errorf("1-hour window counts %d, want about 1,500", n)
	}
	if n, _ := b.StickySessions(t1, 10*time.Hour); n < 1425 || n > 1575 {
		t.Errorf("window cut to an hour counts %d, want about 1,500", n)
	}

	// Once the window has passed, nothing counts, but last stays.
	later := t1.Add(30*time.Minute + stickyBucket)
	if n, last := b.StickySessions(later, 30*time.Minute); n != 0 || !last.Equal(t1) {
		t.Errorf("after the window: %d, %v; want 0, %v", n, last, t1)
	}
	if n, _ := b.StickySessions(later, 0); n != 0 {
		t.Errorf("zero window counts %d", n)
	}

	// Small counts are exact: what a drain waits on.
	small := newBackend("s", "127.0.0.1:2", stickyEpoch)
	for i := range 3 {
		small.NoteSticky(sessionKey(i), t0)
		small.NoteSticky(sessionKey(i), t0.Add(time.Second))
	}
	if n, _ := small.StickySessions(t0.Add(time.Second), 30*time.Minute); n != 3 {
		t.Errorf("3 sessions counted as %d", n)
	}
	// last moves in steps of a second at least; an older note does not
	// move it back.
	small.NoteSticky(sessionKey(0), t0.Add(1500*time.Millisecond))
	small.NoteSticky(sessionKey(0), t0)
	if _, last := small.StickySessions(t0, time.Minute); !last.Equal(t0.Add(time.Second)) {
		t.Errorf("last = %v, want %v", last, t0.Add(time.Second))
	}
}

// The buckets are recycled: a day of notes keeps the memory and the
// count of one window.
func TestStickySessionsRecycle(t *testing.T) {
	b := newBackend("a", "127.0.0.1:1", stickyEpoch)
	now := stickyEpoch
	for m := range 24 * 60 {
		now = stickyEpoch.Add(time.Duration(m) * time.Minute)
		for i := range 10 {
			b.NoteSticky(sessionKey(m*10+i), now) // 10 new sessions a minute
		}
	}
	// 30 minutes of 10 a minute, rounded out to whole buckets: 300..320.
	if n, _ := b.StickySessions(now, 30*time.Minute); n < 285 || n > 336 {
		t.Errorf("30-minute window after a day: %d, want about 300-320", n)
	}
}

// The estimate's error, over many key sets: unbiased, and within 5% for
// at least 90% of sets of 1,000 keys (σ ≈ 2.5% there).
func TestStickySessionsAccuracy(t *testing.T) {
	const sets, n = 50, 1000
	within, sum := 0, 0.0
	for s := range sets {
		b := newBackend("a", "127.0.0.1:1", stickyEpoch)
		for i := range n {
			b.NoteSticky(sessionKey(s*n+i), stickyEpoch)
		}
		got, _ := b.StickySessions(stickyEpoch, time.Minute)
		e := float64(got-n) / n
		sum += e
		if e > -0.05 && e < 0.05 {
			within++
		}
	}
	if mean := sum / sets; mean < -0.01 || mean > 0.01 || within < sets*9/10 {
		t.Errorf("mean error %.4f, %d of %d sets within 5%%", mean, within, sets)
	}
}
