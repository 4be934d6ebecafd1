package upstream

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// A backend's share ramps from nothing to its weight's share: about f·w/W
// at a fraction f of the ramp, at most HAProxy's f·w/(W-(1-f)·w) (see
// WithSlowStart). Round robin lands up to 6% below f·w/W with a heavy
// ramping backend (weights 2,1,1,1 give 0.0945 for 0.1 at f=0.25), hence
// the 10% below.
func TestSlowStartShare(t *testing.T) {
	const ramp = time.Minute
	for _, name := range []string{"roundrobin", "random"} {
		for _, weights := range [][]int{{1, 1, 1, 1}, {2, 1, 1, 1}} {
			for _, elapsed := range []time.Duration{0, ramp / 4, ramp / 2, 3 * ramp / 4, ramp, 2 * ramp} {
				t.Run(fmt.Sprintf("%s/%v/%v", name, weights, elapsed), func(t *testing.T) {
					bs := balBackends(len(weights))
					bs[0] = newBackend("a", "127.0.0.1:1", balEpoch.Add(-elapsed))
					bal := mustBalancer(t, name, bs, weights, BalancerOptions{SlowStart: ramp, Now: balClock})

					f := min(1, float64(elapsed)/float64(ramp))
					w, total := float64(weights[0]), 0.0
					for _, x := range weights {
						total += float64(x)
					}
					lo, hi := 0.9*f*w/total-0.005, f*w/(total-(1-f)*w)+0.01
					got := shares(t, bal, bs, balPicks, nil)[0]
					if got < lo || got > hi {
						t.Errorf("share %.4f, want %.3f..%.3f", got, lo, hi)
					}
					if f == 0 && got != 0 {
						t.Errorf("a backend up just now got %.4f of the picks, want none", got)
					}
				})
			}
		}
	}
}

// The ramp follows the clock.
func TestSlowStartFollowsClock(t *testing.T) {
	const ramp = 100 * time.Second
	now := balEpoch
	clock := func() time.Time { return now }
	bs := balBackends(4)
	bs[3] = newBackend("d", "127.0.0.1:4", now) // just added
	bal := WithSlowStart(mustBalancer(t, "random", bs, ones(4), BalancerOptions{}), bs, ramp, clock)
	prev := -1.0
	for range 5 {
		got := shares(t, bal, bs, balPicks/2, nil)[3]
		if got <= prev {
			t.Fatalf("at %v share %.4f, not more than %.4f before", now.Sub(balEpoch), got, prev)
		}
		prev = got
		now = now.Add(ramp / 4)
	}
	if math.Abs(prev-0.25) > 0.01 {
		t.Errorf("share after the ramp = %.4f, want 0.25", prev)
	}
}

// When every backend is ramping (they came up together, as at startup),
// thinning them all would refuse requests; the balancer's own choice
// stands instead, so the shares are the weights'.
func TestSlowStartAllRamping(t *testing.T) {
	weights := []int{5, 3, 1, 1}
	for _, elapsed := range []time.Duration{0, 30 * time.Second} {
		t.Run(elapsed.String(), func(t *testing.T) {
			bs := make([]*Backend, len(weights))
			for i := range bs {
				bs[i] = newBackend(string(rune('a'+i)), "127.0.0.1:1", balEpoch.Add(-elapsed))
			}
			bal := mustBalancer(t, "random", bs, weights, BalancerOptions{SlowStart: time.Minute, Now: balClock})
			got := shares(t, bal, bs, balPicks, nil)
			for i, w := range weights {
				if want := float64(w) / 10; math.Abs(got[i]-want) > 0.01 {
					t.Errorf("share of %s = %.4f, want %.2f", bs[i].ID(), got[i], want)
				}
			}
			if b := bal.Pick(skipIDs("abcd")); b != nil {
				t.Errorf("Pick(skip all) = %s, want nil", b.ID())
			}
		})
	}
}

// Past every ramp the wrapper is invisible: round robin keeps its exact
// sequence.
func TestSlowStartSteadyState(t *testing.T) {
	bs := balBackends(3)
	bal := mustBalancer(t, "roundrobin", bs, []int{5, 1, 1}, BalancerOptions{SlowStart: time.Minute, Now: balClock})
	var sb strings.Builder
	for range 21 {
		sb.WriteString(bal.Pick(nil).ID())
	}
	if got, want := sb.String(), strings.Repeat("aabacaa", 3); got != want {
		t.Errorf("picks = %s, want %s", got, want)
	}
	inner := mustBalancer(t, "roundrobin", bs, []int{5, 1, 1}, BalancerOptions{})
	if WithSlowStart(inner, bs, 0, nil) != inner {
		t.Error("WithSlowStart with no ramp wrapped the balancer")
	}
}

// Keyed picks keep their affinity during a ramp.
func TestSlowStartKeyPassThrough(t *testing.T) {
	bs := balBackends(4)
	bs[0] = newBackend("a", "127.0.0.1:1", balEpoch) // just up
	inner := mustHash(t, bs, ones(4), DefaultHashLoadFactor)
	bal, ok := WithSlowStart(inner, bs, time.Minute, balClock).(KeyBalancer)
	if !ok {
		t.Fatal("slow start over a KeyBalancer is not a KeyBalancer")
	}
	onA := 0
	for _, key := range hashKeys(1000) {
		want := inner.PickKey(key, nil)
		if got := bal.PickKey(key, nil); got != want {
			t.Fatalf("key %#x: PickKey = %s, want %s", key, got.ID(), want.ID())
		}
		if want == bs[0] {
			onA++
		}
	}
	if onA == 0 {
		t.Error("no key on the ramping backend; the test proves nothing")
	}
	if got := shares(t, bal, bs, 10_000, nil)[0]; got != 0 {
		t.Errorf("unkeyed share of a backend up just now = %.4f, want 0", got)
	}
}
