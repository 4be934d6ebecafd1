package metrics

import (
	"testing"
	"time"
)

func TestStateSource(t *testing.T) {
	m := New()
	calls := 0
	m.SetStateSource(func() []BackendState {
		calls++
		return []BackendState{
			{App: "shop", Backend: "b1", Up: true, InFlight: 7, Weight: 3, AdminState: "ready"},
			{App: "shop", Backend: "b2", Up: false, InFlight: 0, Weight: 1, AdminState: "drain"},
			{App: "shop", Backend: "b1", Up: false, InFlight: 99}, // duplicate: dropped
			{App: "blog", Backend: "b1", Up: true, Weight: 1},     // no admin state
		}
	})
	m.SetQueueSource(func() []QueueState {
		return []QueueState{{App: "shop", Waiting: 12, Capacity: 256}, {App: "shop", Waiting: 1}}
	})
	s := scrape(t, m)
	if calls != 1 {
		t.Errorf("source called %d times per scrape, want 1", calls)
	}
	s.want(t, 1, "tlsedge_backend_up", "app", "shop", "backend", "b1")
	s.want(t, 0, "tlsedge_backend_up", "app", "shop", "backend", "b2")
	s.want(t, 1, "tlsedge_backend_up", "app", "blog", "backend", "b1")
	s.want(t, 7, "tlsedge_backend_in_flight_requests", "app", "shop", "backend", "b1")
	s.want(t, 0, "tlsedge_backend_in_flight_requests", "app", "shop", "backend", "b2")
	s.want(t, 3, "tlsedge_backend_weight", "app", "shop", "backend", "b1")
	s.want(t, 1, "tlsedge_backend_admin_state", "app", "shop", "backend", "b1", "state", "ready")
	s.want(t, 1, "tlsedge_backend_admin_state", "app", "shop", "backend", "b2", "state", "drain")
	if n, _ := s.count("tlsedge_backend_up"); n != 3 {
		t.Errorf("backend_up: %d series, want 3", n)
	}
	if n, _ := s.count("tlsedge_backend_admin_state"); n != 2 {
		t.Errorf("admin_state: %d series, want 2", n)
	}
	s.want(t, 12, "tlsedge_queue_length", "app", "shop")
	s.want(t, 256, "tlsedge_queue_capacity", "app", "shop")

	// A reload replaces the source; nil removes it.
	m.SetStateSource(func() []BackendState { return []BackendState{{App: "shop", Backend: "b3", Up: true}} })
	m.SetQueueSource(nil)
	s = scrape(t, m)
	s.want(t, 1, "tlsedge_backend_up", "app", "shop", "backend", "b3")
	if n, _ := s.count("tlsedge_backend_up"); n != 1 {
		t.Errorf("after replacing the source: %d backend_up series, want 1", n)
	}
	s.absent(t, "tlsedge_queue_length")
	s.absent(t, "tlsedge_queue_capacity")
	m.SetStateSource(nil)
	scrape(t, m).absent(t, "tlsedge_backend_up")
}

func TestCertSource(t *testing.T) {
	m := New()
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	now := start
	m.now = func() time.Time { return now }
	m.SetCertSource(func() []CertState {
		return []CertState{
			{Name: "shop.example", Issuer: "R11", NotAfter: start.Add(30 * 24 * time.Hour)},
			{Name: "old.example", Issuer: "tlsedge local CA", NotAfter: start.Add(-90 * time.Second)},
			{Name: "shop.example", Issuer: "R11", NotAfter: start}, // duplicate: dropped
		}
	})
	s := scrape(t, m)
	s.want(t, 30*24*3600, "tlsedge_certificate_expiry_seconds", "name", "shop.example", "issuer", "R11")
	s.want(t, -90, "tlsedge_certificate_expiry_seconds", "name", "old.example", "issuer", "tlsedge local CA")
	if n, _ := s.count("tlsedge_certificate_expiry_seconds"); n != 2 {
		t.Errorf("%d certificate series, want 2", n)
	}
	now = now.Add(time.Hour) // read at scrape time
	scrape(t, m).want(t, 30*24*3600-3600, "tlsedge_certificate_expiry_seconds", "name", "shop.example", "issuer", "R11")
}

func TestLogSource(t *testing.T) {
	m := New()
	var dropped uint64
	m.SetLogSource(func() []LogSinkState {
		return []LogSinkState{{Sink: "access", Dropped: dropped}, {Sink: "error"}}
	})
	dropped = 41
	s := scrape(t, m)
	if s.types["tlsedge_log_lines_dropped_total"] != "counter" {
		t.Errorf("type %q, want counter", s.types["tlsedge_log_lines_dropped_total"])
	}
	s.want(t, 41, "tlsedge_log_lines_dropped_total", "sink", "access")
	s.want(t, 0, "tlsedge_log_lines_dropped_total", "sink", "error")
}

// TestNoSources: with no source set, the scrape carries the live gauges and
// none of the source families.
func TestNoSources(t *testing.T) {
	s := scrape(t, New())
	for _, name := range []string{"tlsedge_backend_up", "tlsedge_queue_length", "tlsedge_certificate_expiry_seconds", "tlsedge_log_lines_dropped_total"} {
		s.absent(t, name)
	}
	s.want(t, 0, "tlsedge_connections_active", "proto", "h2")
	s.want(t, 0, "tlsedge_http2_streams_active")
}
