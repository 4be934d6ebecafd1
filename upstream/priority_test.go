package upstream

import (
	"testing"
	"time"
)

func TestPriorityActivation(t *testing.T) {
	var cfgs []BackendConfig
	for i, id := range []string{"p1", "p2", "p3", "b1", "b2"} {
		prio := 0
		if i >= 3 {
			prio = 1
		}
		cfgs = append(cfgs, BackendConfig{ID: id, Addr: "127.0.0.1:" + string(rune('1'+i)) + "000", Priority: prio})
	}
	pool, err := NewPool(PoolConfig{Backends: cfgs, MinActive: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	now := time.Now()
	served := func() map[string]int {
		got := map[string]int{}
		for range 100 {
			if b := pool.PickAt(now, func(b *Backend) bool { return !b.Up(now) }); b != nil {
				got[b.ID()]++
			}
		}
		return got
	}
	backups := func(got map[string]int) int { return got["b1"] + got["b2"] }
	set := func(id string, up bool) { pool.Backend(id).SetChecked(up, now) }

	if got := served(); backups(got) != 0 || got["p1"] == 0 || got["p3"] == 0 {
		t.Errorf("3 primaries up: %v, want primaries only", got)
	}
	set("p1", false)
	if got := served(); backups(got) != 0 || got["p1"] != 0 {
		t.Errorf("2 primaries up (= min_active): %v, want p2 and p3 only", got)
	}
	if pool.Active(pool.Backend("b1"), now) {
		t.Error("a backup is active while min_active primaries are up")
	}
	set("p2", false)
	got := served()
	if got["b1"] == 0 || got["b2"] == 0 || got["p3"] == 0 {
		t.Errorf("1 primary up: %v, want p3 with both backups", got)
	}
	if !pool.Active(pool.Backend("b1"), now) {
		t.Error("a sticky session on a serving backup is not honoured")
	}
	set("p1", true)
	if got := served(); backups(got) != 0 {
		t.Errorf("primaries recovered: %v, want the backups released", got)
	}
	if pool.Active(pool.Backend("b1"), now) {
		t.Error("a released backup still takes its sticky sessions")
	}
	// Everything down: the last level is asked, and finds nothing.
	for _, id := range []string{"p1", "p2", "p3", "b1", "b2"} {
		set(id, false)
	}
	if got := served(); len(got) != 0 {
		t.Errorf("all down: %v", got)
	}
}
