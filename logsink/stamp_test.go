package logsink

import (
	"math"
	"strconv"
	"testing"
	"time"
)

// The hand-written appenders print what the time and strconv packages
// print, for the times and durations an access log sees and for edges.
func TestAppendTimeMillisMatchesFormat(t *testing.T) {
	times := []time.Time{
		time.Date(2026, 11, 30, 4, 35, 8, 123456789, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 999999999, time.FixedZone("x", -7*3600)),
		time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Unix(0, 0),
		time.Unix(-1, 5e8),
		{},
	}
	for _, tm := range times {
		want := tm.UTC().Format("2006-01-02T15:04:05.000Z")
		if got := string(AppendTimeMillis([]byte("x"), tm)); got != "x"+want {
			t.Errorf("AppendTimeMillis(%v) = %q, want %q", tm, got, "x"+want)
		}
	}
}

func TestAppendSecondsMatchesAppendFloat(t *testing.T) {
	ds := []time.Duration{0, 1, 499, 501, 999, 1000, 1234567, 999999499, 999999501,
		time.Second, 90 * time.Minute, 123456789012345, -1234567, -1, -501,
		math.MaxInt64, math.MinInt64 + 1, math.MinInt64}
	for _, d := range ds {
		want := strconv.AppendFloat([]byte("x"), d.Seconds(), 'f', 6, 64)
		if got := AppendSeconds([]byte("x"), d); string(got) != string(want) {
			t.Errorf("AppendSeconds(%d) = %q, want %q", d, got, want)
		}
	}
}

func FuzzAppendSeconds(f *testing.F) {
	f.Add(int64(1234567))
	f.Add(int64(-1))
	f.Fuzz(func(t *testing.T, n int64) {
		d := time.Duration(n)
		// Below 2^53 ns a float64 holds d exactly; away from a half
		// microsecond both round the same way.
		if d > 1<<53 || d < -1<<53 || (d%1000+1000)%1000 == 500 {
			return
		}
		want := strconv.AppendFloat(nil, d.Seconds(), 'f', 6, 64)
		if got := AppendSeconds(nil, d); string(got) != string(want) {
			t.Fatalf("AppendSeconds(%d) = %q, want %q", d, got, want)
		}
	})
}
