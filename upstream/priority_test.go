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

// Drain counts toward MinActive, Maint does not; a group whose up
// backends all drain lets the next group take the new sessions.
func TestPriorityDrainCountsMaintDoesNot(t *testing.T) {
	pool, err := NewPool(PoolConfig{MinActive: 2, Backends: []BackendConfig{
		{ID: "p1", Addr: "127.0.0.1:8001"},
		{ID: "p2", Addr: "127.0.0.1:8002"},
		{ID: "p3", Addr: "127.0.0.1:8003"},
		{ID: "b1", Addr: "127.0.0.1:9001", Priority: 1},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	now := time.Now()
	set := func(id string, s AdminState) {
		t.Helper()
		if err := pool.SetAdminState(id, s); err != nil {
			t.Fatal(err)
		}
	}
	p1, b1 := pool.Backend("p1"), pool.Backend("b1")

	set("p1", Drain)
	set("p2", Drain)
	// p1 and p2 draining, p3 ready: 3 >= MinActive, primaries only.
	if got := poolPicks(t, pool, now, 90); got["p3"] != 90 {
		t.Errorf("two primaries draining: %v, want p3 alone", got)
	}
	if !pool.Active(p1, now) || pool.Active(b1, now) {
		t.Error("two primaries draining: want p1 active for its sticky users, the backup not")
	}

	set("p1", Maint)
	// p1 in maint no longer counts: p2 (drain) + p3 = 2, still enough.
	if got := poolPicks(t, pool, now, 90); got["p3"] != 90 {
		t.Errorf("p1 maint, p2 drain: %v, want p3 alone", got)
	}
	if pool.Active(p1, now) {
		t.Error("p1 in maint is active for sticky hints")
	}
	set("p2", Maint)
	// p3 alone: below MinActive, the backup joins.
	if got := poolPicks(t, pool, now, 90); got["p3"] == 0 || got["b1"] == 0 {
		t.Errorf("two primaries in maint: %v, want p3 and b1", got)
	}

	set("p1", Drain)
	set("p2", Drain)
	set("p3", Drain)
	// Every primary draining: enough of them, but none takes new
	// sessions, so the backup does; the primaries keep their users.
	if got := poolPicks(t, pool, now, 90); got["b1"] != 90 {
		t.Errorf("all primaries draining: %v, want b1 alone", got)
	}
	if !pool.Active(p1, now) || !pool.Active(b1, now) {
		t.Error("all primaries draining: want p1 (sticky users) and b1 active")
	}

	for _, id := range []string{"p1", "p2", "p3"} {
		set(id, Ready)
	}
	if got := poolPicks(t, pool, now, 90); got["b1"] != 0 {
		t.Errorf("primaries ready: %v, want the backup released", got)
	}
}
