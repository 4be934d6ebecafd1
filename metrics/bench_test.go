package metrics

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentRecording records from many goroutines while others scrape
// and swap sources; totals must be exact. Run under -race.
func TestConcurrentRecording(t *testing.T) {
	const (
		workers = 8
		each    = 2000
	)
	m := New()
	a := m.App("shop")
	backends := []*BackendMetrics{a.Backend("b0"), a.Backend("b1"), nil}
	methods := []string{"GET", "POST", "BREW"}
	var inflight atomic.Int64
	m.SetStateSource(func() []BackendState {
		return []BackendState{{App: "shop", Backend: "b0", Up: true, InFlight: inflight.Load()}}
	})

	stop := make(chan struct{})
	var scrapers sync.WaitGroup
	scrapers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				// Not scrape: t.Fatal belongs to the test's goroutine.
				rec := httptest.NewRecorder()
				m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
				if rec.Code != http.StatusOK {
					t.Errorf("concurrent scrape: %d %s", rec.Code, rec.Body)
					return
				}
				m.SetLogSource(func() []LogSinkState { return []LogSinkState{{Sink: "access"}} })
			}
		}
	})

	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				inflight.Add(1)
				m.ConnOpened("h2")
				m.StreamOpened()
				a.ObserveRequest(methods[i%3], 200+100*(i%4), backends[(w+i)%3], time.Millisecond, time.Millisecond)
				if i%10 == 0 {
					a.Refused(RefusedRateLimit)
					a.StickyRepin()
					a.Retry()
				}
				if i%100 == 0 {
					m.Handshake(0x0303, nil)
					m.Handshake(0, errors.New("remote error: tls: bad certificate"))
				}
				m.StreamClosed()
				m.ConnClosed("h2")
				inflight.Add(-1)
			}
		})
	}
	wg.Wait()
	close(stop)
	scrapers.Wait()

	s := scrape(t, m)
	const total = workers * each
	if _, sum := s.count(reqs); sum != total {
		t.Errorf("requests: %v, want %d", sum, total)
	}
	s.want(t, total, duration+"_count", "app", "shop")
	s.want(t, total/10, "tlsedge_requests_refused_total", "app", "shop", "reason", "rate_limit")
	s.want(t, total/10, "tlsedge_sticky_total", "app", "shop", "result", "repin")
	s.want(t, total/10, "tlsedge_retries_total", "app", "shop")
	s.want(t, total/100, "tlsedge_tls_handshakes_total", "version", "1.2")
	s.want(t, total/100, "tlsedge_tls_handshake_failures_total", "reason", "bad_certificate")
	s.want(t, total, "tlsedge_connections_total", "proto", "h2")
	s.want(t, 0, "tlsedge_connections_active", "proto", "h2")
	s.want(t, total, "tlsedge_http2_streams_total")
	s.want(t, 0, "tlsedge_http2_streams_active")
	s.want(t, 0, "tlsedge_backend_in_flight_requests", "app", "shop", "backend", "b0")
}

// BenchmarkObserveRequest is the per-request cost: a counter, the app's
// histogram and the backend's TTFB histogram.
func BenchmarkObserveRequest(b *testing.B) {
	m := New()
	a := m.App("shop")
	be := a.Backend("10.0.0.1:8080")
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			a.ObserveRequest("GET", 200, be, 3*time.Millisecond, 2*time.Millisecond)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				a.ObserveRequest("GET", 200, be, 3*time.Millisecond, 2*time.Millisecond)
			}
		})
	})
	// Many backends, as under a real load: less contention on one line.
	bes := make([]*BackendMetrics, 64)
	for i := range bes {
		bes[i] = a.Backend("10.0.1." + strconv.Itoa(i) + ":8080")
	}
	b.Run("parallel-64-backends", func(b *testing.B) {
		b.ReportAllocs()
		var next atomic.Uint32
		b.RunParallel(func(pb *testing.PB) {
			me := bes[next.Add(1)%uint32(len(bes))]
			for pb.Next() {
				a.ObserveRequest("POST", 503, me, 30*time.Millisecond, 25*time.Millisecond)
			}
		})
	})
}

func BenchmarkConnAndStream(b *testing.B) {
	m := New()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.ConnOpened("h2")
			m.StreamOpened()
			m.StreamClosed()
			m.ConnClosed("h2")
		}
	})
}

// BenchmarkScrape is the cost of one scrape of 20 apps x 5 backends with
// every source set, over HTTP-less Gather (what the handler encodes).
func BenchmarkScrape(b *testing.B) {
	m := New()
	var states []BackendState
	for i := range 20 {
		app := "app" + strconv.Itoa(i)
		a := m.App(app)
		for j := range 5 {
			id := "10.0." + strconv.Itoa(i) + "." + strconv.Itoa(j) + ":80"
			a.ObserveRequest("GET", 200, a.Backend(id), time.Millisecond, time.Millisecond)
			states = append(states, BackendState{App: app, Backend: id, Up: true, Weight: 1, AdminState: "ready"})
		}
	}
	m.SetStateSource(func() []BackendState { return states })
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Registry().Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
