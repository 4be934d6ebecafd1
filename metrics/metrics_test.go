package metrics

import (
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	reqs     = "tlsedge_requests_total"
	duration = "tlsedge_request_duration_seconds"
	ttfb     = "tlsedge_backend_ttfb_seconds"
)

func TestObserveRequest(t *testing.T) {
	m := New()
	shop := m.App("shop")
	b1, b2 := shop.Backend("10.0.0.1:80"), shop.Backend("10.0.0.2:80")
	events := []struct {
		method      string
		status      int
		b           *BackendMetrics
		total, ttfb time.Duration
	}{
		{"GET", 200, b1, 3 * time.Millisecond, 2 * time.Millisecond},
		{"GET", 204, b1, 30 * time.Millisecond, 20 * time.Millisecond},
		{"POST", 502, b2, 2 * time.Second, 0}, // no response from b2
		{"PROPFIND", 301, b2, 700 * time.Microsecond, 400 * time.Microsecond},
		{"get", 999, b2, time.Millisecond, time.Millisecond},
		{"DELETE", 403, nil, 100 * time.Microsecond, time.Millisecond}, // refused: no TTFB
	}
	for _, e := range events {
		shop.ObserveRequest(e.method, e.status, e.b, e.total, e.ttfb)
	}
	s := scrape(t, m)

	tests := []struct {
		backend, method, class string
		want                   float64
	}{
		{"10.0.0.1:80", "GET", "2xx", 2},
		{"10.0.0.2:80", "POST", "5xx", 1},
		{"10.0.0.2:80", "other", "3xx", 1},
		{"10.0.0.2:80", "other", "other", 1},
		{"none", "DELETE", "4xx", 1},
		{"10.0.0.1:80", "HEAD", "1xx", 0}, // bound at creation, so present at 0
		{"none", "OPTIONS", "other", 0},
	}
	for _, tt := range tests {
		s.want(t, tt.want, reqs, "app", "shop", "backend", tt.backend, "method", tt.method, "status_class", tt.class)
	}
	// Three handles (none, b1, b2) of methods x classes each, nothing else.
	if n, sum := s.count(reqs); n != 3*numMethods*numClasses || sum != float64(len(events)) {
		t.Errorf("%s: %d series summing to %v, want %d summing to %d", reqs, n, sum, 3*numMethods*numClasses, len(events))
	}

	s.want(t, 6, duration+"_count", "app", "shop")
	if sum := round(s.values[key(duration+"_sum", "app", "shop")]); sum != 2.0348 {
		t.Errorf("%s_sum = %v, want 2.0348", duration, sum)
	}
	s.want(t, 1, duration+"_bucket", "app", "shop", "le", "0.0005") // 100µs
	s.want(t, 3, duration+"_bucket", "app", "shop", "le", "0.001")  // + 700µs, 1ms
	s.want(t, 4, duration+"_bucket", "app", "shop", "le", "0.005")  // + 3ms
	s.want(t, 5, duration+"_bucket", "app", "shop", "le", "0.05")   // + 30ms
	s.want(t, 6, duration+"_bucket", "app", "shop", "le", "2.5")    // + 2s
	s.want(t, 6, duration+"_bucket", "app", "shop", "le", "+Inf")

	s.want(t, 2, ttfb+"_count", "app", "shop", "backend", "10.0.0.1:80")
	s.want(t, 1, ttfb+"_bucket", "app", "shop", "backend", "10.0.0.1:80", "le", "0.0025")
	s.want(t, 2, ttfb+"_count", "app", "shop", "backend", "10.0.0.2:80") // 400µs and 1ms; the 502 had none
	s.want(t, 1, ttfb+"_bucket", "app", "shop", "backend", "10.0.0.2:80", "le", "0.0005")
	if _, ok := s.values[key(ttfb+"_count", "app", "shop", "backend", "none")]; ok {
		t.Errorf("TTFB recorded for backend none")
	}
}

// round keeps four decimals: sums of float seconds are not exact.
func round(v float64) float64 {
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'f', 4, 64), 64)
	return r
}

func TestFolding(t *testing.T) {
	methods := map[string]string{
		"GET": "GET", "HEAD": "HEAD", "POST": "POST", "PUT": "PUT", "DELETE": "DELETE",
		"PATCH": "PATCH", "OPTIONS": "OPTIONS", "CONNECT": "other", "TRACE": "other",
		"get": "other", "": "other", "GET ": "other", strings.Repeat("X", 1000): "other",
	}
	for in, want := range methods {
		if got := methodNames[methodIndex(in)]; got != want {
			t.Errorf("method %.20q -> %s, want %s", in, got, want)
		}
	}
	statuses := map[int]string{
		-1: "other", 0: "other", 99: "other", 100: "1xx", 101: "1xx", 200: "2xx", 299: "2xx",
		304: "3xx", 404: "4xx", 499: "4xx", 500: "5xx", 599: "5xx", 600: "other", 999: "other",
	}
	for in, want := range statuses {
		if got := classNames[classIndex(in)]; got != want {
			t.Errorf("status %d -> %s, want %s", in, got, want)
		}
	}
}

// TestCardinalityBounded records 10,000 distinct methods and status codes;
// the label set must not grow past methods x classes per backend.
func TestCardinalityBounded(t *testing.T) {
	m := New()
	a := m.App("api")
	b := a.Backend("b")
	const n = 10000
	for i := range n {
		a.ObserveRequest("M"+strconv.Itoa(i), i, b, time.Millisecond, time.Millisecond)
	}
	s := scrape(t, m)
	if got, sum := s.count(reqs); got != 2*numMethods*numClasses || sum != n {
		t.Fatalf("%s: %d series summing to %v, want %d summing to %d", reqs, got, sum, 2*numMethods*numClasses, n)
	}
	// Statuses 100..599 fall in their classes, the other 9,500 in "other".
	for c, want := range map[string]float64{"1xx": 100, "2xx": 100, "3xx": 100, "4xx": 100, "5xx": 100, "other": n - 500} {
		s.want(t, want, reqs, "app", "api", "backend", "b", "method", "other", "status_class", c)
	}
	for _, fam := range []string{duration + "_bucket", ttfb + "_bucket"} {
		if got, _ := s.count(fam); got != len(latencyBuckets)+1 {
			t.Errorf("%s: %d series, want %d", fam, got, len(latencyBuckets)+1)
		}
	}
}

func TestAppCounters(t *testing.T) {
	m := New()
	a := m.App("shop")
	b := a.Backend("b1")
	for r := range numRefusalReasons {
		for range int(r) + 1 {
			a.Refused(r)
		}
	}
	a.Refused(RefusalReason(200)) // out of range: other
	a.Retry()
	a.Retry()
	a.StickyHit()
	a.StickyHit()
	a.StickyHit()
	a.StickyMiss()
	a.StickyRepin()
	a.StickyRepin()
	b.Ejected()
	a.none.Ejected() // no series: "none" is never ejected
	s := scrape(t, m)

	for r := range numRefusalReasons {
		want := float64(r) + 1
		if r == RefusedOther {
			want++
		}
		s.want(t, want, "tlsedge_requests_refused_total", "app", "shop", "reason", r.String())
	}
	s.want(t, 2, "tlsedge_retries_total", "app", "shop")
	s.want(t, 3, "tlsedge_sticky_total", "app", "shop", "result", "hit")
	s.want(t, 1, "tlsedge_sticky_total", "app", "shop", "result", "miss")
	s.want(t, 2, "tlsedge_sticky_total", "app", "shop", "result", "repin")
	s.want(t, 1, "tlsedge_backend_ejections_total", "app", "shop", "backend", "b1")
	if n, _ := s.count("tlsedge_backend_ejections_total"); n != 1 {
		t.Errorf("ejections: %d series, want 1", n)
	}
}

func TestRefusalReasonNames(t *testing.T) {
	want := []string{"acl", "rate_limit", "method", "body_size", "limits", "path",
		"client_cert", "queue_full", "queue_timeout", "no_backend", "other"}
	for i, name := range want {
		r, ok := ParseRefusalReason(name)
		if !ok || r != RefusalReason(i) || r.String() != name {
			t.Errorf("%s: ParseRefusalReason = %v, %v; String %q", name, r, ok, r.String())
		}
	}
	if r, ok := ParseRefusalReason("nope"); ok || r != RefusedOther {
		t.Errorf(`ParseRefusalReason("nope") = %v, %v`, r, ok)
	}
	if s := RefusalReason(99).String(); s != "other" {
		t.Errorf("RefusalReason(99) = %q", s)
	}
}

func TestDeleteAppAndBackend(t *testing.T) {
	m := New()
	shop, blog := m.App("shop"), m.App("blog")
	b1, b2 := shop.Backend("b1"), shop.Backend("b2")
	shop.ObserveRequest("GET", 200, b1, time.Millisecond, time.Millisecond)
	shop.ObserveRequest("GET", 200, b2, time.Millisecond, time.Millisecond)
	blog.ObserveRequest("GET", 200, blog.Backend("b1"), time.Millisecond, time.Millisecond)

	shop.DeleteBackend("b2")
	s := scrape(t, m)
	for k := range s.values {
		if strings.Contains(k, `backend="b2"`) {
			t.Errorf("after DeleteBackend: %s", k)
		}
	}
	s.want(t, 1, reqs, "app", "shop", "backend", "b1", "method", "GET", "status_class", "2xx")

	m.DeleteApp("shop")
	s = scrape(t, m)
	for k := range s.values {
		if strings.Contains(k, `app="shop"`) {
			t.Errorf("after DeleteApp: %s", k)
		}
	}
	s.want(t, 1, reqs, "app", "blog", "backend", "b1", "method", "GET", "status_class", "2xx")

	// A reload that keeps the app binds its series again, from zero.
	shop = m.App("shop")
	shop.ObserveRequest("PUT", 201, shop.Backend("b1"), time.Millisecond, 0)
	s = scrape(t, m)
	s.want(t, 1, reqs, "app", "shop", "backend", "b1", "method", "PUT", "status_class", "2xx")
	s.want(t, 0, reqs, "app", "shop", "backend", "b1", "method", "GET", "status_class", "2xx")
}

// TestAppTwice: a reload builds the handles again; they share the series.
func TestAppTwice(t *testing.T) {
	m := New()
	old, cur := m.App("shop"), m.App("shop")
	old.ObserveRequest("GET", 200, old.Backend("b"), time.Millisecond, time.Millisecond)
	cur.ObserveRequest("GET", 200, cur.Backend("b"), time.Millisecond, time.Millisecond)
	s := scrape(t, m)
	s.want(t, 2, reqs, "app", "shop", "backend", "b", "method", "GET", "status_class", "2xx")
	s.want(t, 2, ttfb+"_count", "app", "shop", "backend", "b")
}

func TestNilIsNoop(t *testing.T) {
	var m *Metrics
	a := m.App("x")
	b := a.Backend("y")
	a.ObserveRequest("GET", 200, b, time.Second, time.Second)
	a.Refused(RefusedACL)
	a.Retry()
	a.StickyHit()
	a.StickyMiss()
	a.StickyRepin()
	a.DeleteBackend("y")
	b.Ejected()
	m.ConnOpened("h2")
	m.ConnClosed("h2")
	m.StreamOpened()
	m.StreamClosed()
	m.Handshake(0, nil)
	m.DeleteApp("x")
	m.SetStateSource(nil)
	m.SetQueueSource(nil)
	m.SetCertSource(nil)
	m.SetLogSource(nil)
	if m.Handler() == nil {
		t.Error("nil Metrics: nil Handler")
	}
}

// TestDescribe checks Describe against a scrape in which every family has
// at least one series: names, types, labels and help agree both ways.
func TestDescribe(t *testing.T) {
	m := exercised()
	s := scrape(t, m)
	docs := Describe()
	seen := map[string]bool{}
	for _, d := range docs {
		if seen[d.Name] {
			t.Errorf("%s described twice", d.Name)
		}
		seen[d.Name] = true
		if !strings.HasPrefix(d.Name, "tlsedge_") {
			t.Errorf("%s: no tlsedge_ prefix", d.Name)
		}
		if d.Type == "counter" && !strings.HasSuffix(d.Name, "_total") {
			t.Errorf("%s: a counter without _total", d.Name)
		}
		if got := s.types[d.Name]; got != d.Type {
			t.Errorf("%s: scraped type %q, described %q", d.Name, got, d.Type)
		}
		if got := s.helps[d.Name]; got != d.Help {
			t.Errorf("%s: scraped help %q, described %q", d.Name, got, d.Help)
		}
		want := slices.Clone(d.Labels)
		if d.Type == "histogram" {
			want = append(want, "le") // the _bucket series carry le
		}
		slices.Sort(want)
		if got := s.labels[d.Name]; !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Errorf("%s: scraped labels %v, described %v", d.Name, got, want)
		}
	}
	for name := range s.types {
		if strings.HasPrefix(name, "tlsedge_") && !seen[name] {
			t.Errorf("%s scraped but not described", name)
		}
	}
	// Describe hands out copies.
	docs[0].Labels[0] = "mutated"
	if Describe()[0].Labels[0] == "mutated" {
		t.Error("Describe shares its label slices")
	}
}

// TestRuntimeCollectors: the Go runtime and process families are served.
func TestRuntimeCollectors(t *testing.T) {
	s := scrape(t, New())
	want := []string{"go_goroutines", "go_memstats_alloc_bytes"}
	if runtime.GOOS == "linux" {
		want = append(want, "process_resident_memory_bytes", "process_open_fds")
	}
	for _, name := range want {
		if _, ok := s.types[name]; !ok {
			t.Errorf("%s missing", name)
		}
	}
}

// exercised returns a Metrics on which every tlsedge family has a series.
func exercised() *Metrics {
	m := New()
	a := m.App("shop")
	b := a.Backend("b1")
	a.ObserveRequest("GET", 200, b, time.Millisecond, time.Millisecond)
	a.Refused(RefusedACL)
	a.Retry()
	a.StickyHit()
	b.Ejected()
	m.ConnOpened("h2")
	m.StreamOpened()
	m.Handshake(0x0304, nil)
	m.Handshake(0, fmt.Errorf("boom"))
	m.SetStateSource(func() []BackendState {
		return []BackendState{{App: "shop", Backend: "b1", Up: true, InFlight: 1, Weight: 1, AdminState: "ready"}}
	})
	m.SetQueueSource(func() []QueueState { return []QueueState{{App: "shop", Waiting: 1, Capacity: 256}} })
	m.SetCertSource(func() []CertState {
		return []CertState{{Name: "shop.example", Issuer: "R3", NotAfter: time.Now().Add(time.Hour)}}
	})
	m.SetLogSource(func() []LogSinkState { return []LogSinkState{{Sink: "access", Dropped: 1}} })
	return m
}
