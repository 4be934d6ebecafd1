package upstream

import (
	"testing"
	"time"
)

// The first pick of a request takes its arrival time (Target.Start) for
// the clock, as the caller read it microseconds before; any later pick (a
// retry, or a pick after a wait in the queue, which may have lasted
// seconds) reads the clock. A proxy with an injected clock never takes
// the caller's reading.
func TestPickClock(t *testing.T) {
	pool, err := NewPool(PoolConfig{Backends: []BackendConfig{{ID: "a", Addr: "127.0.0.1:1"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	p, err := NewProxy(ProxyConfig{Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-time.Hour) // as if it had waited an hour
	st := getAttempt(p, &Target{Start: start})
	defer putAttempt(st)
	if st.next(); !st.now.Equal(start) {
		t.Errorf("first pick: clock %v, want the request's start %v", st.now, start)
	}
	if st.next(); time.Since(st.now) > time.Minute {
		t.Errorf("second pick: clock %v, want a new reading", st.now)
	}

	fake := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	pf, err := NewProxy(ProxyConfig{Pool: pool, Now: func() time.Time { return fake }})
	if err != nil {
		t.Fatal(err)
	}
	sf := getAttempt(pf, &Target{Start: start})
	defer putAttempt(sf)
	if sf.next(); !sf.now.Equal(fake) {
		t.Errorf("injected clock: first pick at %v, want %v", sf.now, fake)
	}
}
