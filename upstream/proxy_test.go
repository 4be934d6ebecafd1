package upstream

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// bodyReader returns the body for a POST: sized (Content-Length) or chunked.
func bodyReader(data []byte, chunked bool) io.Reader {
	if chunked {
		return io.MultiReader(bytes.NewReader(data)) // hides the length
	}
	return bytes.NewReader(data)
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// errorEntries are the failed-request lines (warn and worse), without the
// backend state changes (stateEntries).
func errorEntries(hook *logtest.Hook) []*logrus.Entry {
	var out []*logrus.Entry
	for _, e := range hook.AllEntries() {
		if _, state := e.Data["to"]; e.Level <= logrus.WarnLevel && !state {
			out = append(out, e)
		}
	}
	return out
}

// stateEntries are the backend state change lines, as "id from->to".
func stateEntries(hook *logtest.Hook) []string {
	var out []string
	for _, e := range hook.AllEntries() {
		if to, ok := e.Data["to"]; ok {
			out = append(out, fmt.Sprintf("%v %v->%v", e.Data["backend"], e.Data["from"], to))
		}
	}
	return out
}

func TestRetryAfterRefusedConnect(t *testing.T) {
	for _, chunked := range []bool{false, true} {
		t.Run(map[bool]string{false: "sized", true: "chunked"}[chunked], func(t *testing.T) {
			clock := newFakeClock()
			live := newTestBackend(t, "live", nil)
			p, hook := newTestProxy(t, PoolConfig{Backends: []BackendConfig{
				{ID: "dead", Addr: refusedAddr(t)}, live.config(1),
			}}, clock)
			dead := p.pool.Backend("dead")
			front := newFront(t, p, func() *Backend { return dead })

			data := randomBytes(t, 1<<20)
			resp, err := front.Client().Post(front.URL+"/upload", "application/octet-stream", bodyReader(data, chunked))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 || !bytes.Equal(got, data) {
				t.Fatalf("status %d, %d bytes back (equal: %v), want 200 and the %d bytes sent",
					resp.StatusCode, len(got), bytes.Equal(got, data), len(data))
			}
			if c, a := resp.Header.Get("X-Chosen"), resp.Header.Get("X-Attempts"); c != "live" || a != "2" {
				t.Errorf("Chosen %q after %s attempts, want live after 2", c, a)
			}
			if dead.Up(clock.Now()) {
				t.Error("the refusing backend was not put in backoff")
			}
			if n := live.requests.Load(); n != 1 {
				t.Errorf("live backend got %d requests, want 1", n)
			}
			if e := errorEntries(hook); len(e) != 0 {
				t.Errorf("a successful retry logged %d errors: %v", len(e), e[0].Message)
			}
			if dead.InFlight() != 0 || p.pool.Backend("live").InFlight() != 0 {
				t.Error("in-flight counts not back to zero")
			}
		})
	}
}

// A backend that accepted the connection and reset it mid-request may have
// acted on it: a request that is not idempotent, or whose body started to
// flow, must not be replayed on another backend.
func TestNoRetryAfterConnectionMade(t *testing.T) {
	for _, tc := range []struct {
		name, method string
		body         []byte
		chunked      bool
	}{
		{"POST sized", "POST", make([]byte, 1<<20), false},
		{"POST chunked", "POST", make([]byte, 1<<20), true},
		{"POST without body", "POST", nil, false},
		{"PUT with body", "PUT", make([]byte, 64<<10), false},
		{"PATCH", "PATCH", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reset := newResetBackend(t)
			live := newTestBackend(t, "live", nil)
			p, hook := newTestProxy(t, PoolConfig{Backends: []BackendConfig{
				{ID: "reset", Addr: reset.addr()}, live.config(1),
			}}, nil)
			front := newFront(t, p, func() *Backend { return p.pool.Backend("reset") })

			var body io.Reader
			if tc.body != nil {
				body = bodyReader(tc.body, tc.chunked)
			}
			req, err := http.NewRequest(tc.method, front.URL+"/order", body)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			page, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway {
				t.Errorf("status %d, want 502", resp.StatusCode)
			}
			if strings.Contains(string(page), "127.0.0.1") || strings.Contains(string(page), "reset") {
				t.Errorf("error page leaks internals: %s", page)
			}
			if a, l := reset.arrivals.Load(), live.requests.Load(); a != 1 || l != 0 {
				t.Errorf("arrivals: reset backend %d, live backend %d; want 1 and 0", a, l)
			}
			entries := errorEntries(hook)
			if len(entries) != 1 || entries[0].Data["attempts"] != 1 {
				t.Fatalf("log entries %v, want one line for one attempt", entries)
			}
		})
	}
}

func TestAllBackendsDown(t *testing.T) {
	clock := newFakeClock()
	p, hook := newTestProxy(t, PoolConfig{Backends: []BackendConfig{
		{ID: "a", Addr: refusedAddr(t)}, {ID: "b", Addr: refusedAddr(t)},
	}}, clock)
	front := newFront(t, p, nil)
	c := front.Client()

	check := func(wantStatus, wantAttempts int, wantErr string) {
		t.Helper()
		hook.Reset()
		status, hdr, page := get(t, c, front.URL+"/x")
		if status != wantStatus {
			t.Fatalf("status %d, want %d", status, wantStatus)
		}
		if ct := hdr.Get("Content-Type"); ct != "text/html; charset=utf-8" || !strings.Contains(page, "<h1>") {
			t.Errorf("not an HTML page: %s %q", ct, page)
		}
		if strings.Contains(page, "127.0.0.1") || strings.Contains(page, "refused") {
			t.Errorf("error page leaks internals: %s", page)
		}
		entries := errorEntries(hook)
		if len(entries) != 1 {
			t.Fatalf("%d log lines, want 1", len(entries))
		}
		e := entries[0]
		errText := ""
		if err, ok := e.Data[logrus.ErrorKey].(error); ok {
			errText = err.Error()
		}
		if e.Data["app"] != "test" || e.Data["status"] != wantStatus || e.Data["attempts"] != wantAttempts ||
			!strings.Contains(errText, wantErr) {
			t.Errorf("log line %q %v", e.Message, e.Data)
		}
		if wantAttempts == 2 {
			if tried, _ := e.Data["backends"].(string); !strings.Contains(tried, "a@127.0.0.1:") || !strings.Contains(tried, "b@127.0.0.1:") {
				t.Errorf("log line names backends %q, want both", tried)
			}
		}
	}
	// Both are tried and refuse: 502, both go into backoff, each with a
	// state line.
	check(http.StatusBadGateway, 2, "connection refused")
	if got := strings.Join(stateEntries(hook), ","); got != "a up->down,b up->down" {
		t.Errorf("state lines %q", got)
	}
	// Within the backoff nothing is tried: 503 at once.
	check(http.StatusServiceUnavailable, 0, ErrNoBackend.Error())
	// After the first window both are tried again and the window doubles.
	clock.Advance(time.Second)
	check(http.StatusBadGateway, 2, "connection refused")
	if d := p.pool.Backend("a").DownUntil().Sub(clock.Now()); d != 2*time.Second {
		t.Errorf("second backoff %v, want 2s", d)
	}
}

func TestPreferredBackend(t *testing.T) {
	clock := newFakeClock()
	a := newTestBackend(t, "a", nil)
	b := newTestBackend(t, "b", nil)
	p, _ := newTestProxy(t, PoolConfig{Backends: []BackendConfig{a.config(1), b.config(1)}}, clock)
	other, err := NewPool(PoolConfig{Backends: []BackendConfig{{ID: "b", Addr: "127.0.0.1:1"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var prefer *Backend
	front := newFront(t, p, func() *Backend { mu.Lock(); defer mu.Unlock(); return prefer })
	setPrefer := func(b *Backend) { mu.Lock(); defer mu.Unlock(); prefer = b }
	c := front.Client()

	counts := func() map[string]int {
		m := map[string]int{}
		for range 10 {
			status, hdr, _ := get(t, c, front.URL)
			if status != 200 {
				t.Fatalf("status %d", status)
			}
			m[hdr.Get("X-Chosen")]++
		}
		return m
	}
	setPrefer(p.pool.Backend("b"))
	if m := counts(); m["b"] != 10 {
		t.Errorf("preferring an up backend: %v, want all on b", m)
	}
	p.pool.Backend("b").MarkFailed(clock.Now())
	if m := counts(); m["a"] != 10 {
		t.Errorf("preferring a down backend: %v, want all on a", m)
	}
	clock.Advance(time.Second)
	if m := counts(); m["b"] != 10 {
		t.Errorf("after the backoff: %v, want all back on b", m)
	}
	// A hint that is not a member of this pool (a stale or forged one) is
	// ignored rather than followed to someone else's backend.
	setPrefer(other.Backend("b"))
	if m := counts(); m["a"] != 5 || m["b"] != 5 {
		t.Errorf("foreign hint: %v, want round robin", m)
	}
}

func TestKeepAliveReuse(t *testing.T) {
	be := newTestBackend(t, "a", nil)
	p, _ := newTestProxy(t, PoolConfig{Backends: []BackendConfig{be.config(1)}}, nil)
	front := newFront(t, p, nil)
	c := front.Client()
	const workers, each = 4, 50
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				resp, err := c.Post(front.URL, "text/plain", strings.NewReader("ping"))
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	if r, n := be.requests.Load(), be.conns.Load(); r != workers*each || n > 2*workers {
		t.Errorf("backend saw %d requests on %d connections, want %d on at most %d", r, n, workers*each, 2*workers)
	}
	if got := p.pool.Backend("a").InFlight(); got != 0 {
		t.Errorf("in flight after all requests: %d", got)
	}
}

func TestResponseHeaderTimeoutIs504(t *testing.T) {
	slow := newTestBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // until the proxy gives up and closes the connection
	})
	p, hook := newTestProxy(t, PoolConfig{
		Backends:              []BackendConfig{slow.config(1)},
		ResponseHeaderTimeout: 50 * time.Millisecond,
	}, nil)
	front := newFront(t, p, nil)
	status, _, page := get(t, front.Client(), front.URL)
	if status != http.StatusGatewayTimeout || !strings.Contains(page, "504 Gateway Timeout") {
		t.Errorf("status %d page %q, want the 504 page", status, page)
	}
	if e := errorEntries(hook); len(e) != 1 || e[0].Data["status"] != 504 {
		t.Errorf("log: %v", e)
	}
	// A timeout after the connection was made is not a connect failure.
	if !p.pool.Backend("slow").Up(time.Now()) {
		t.Error("a slow backend was put in connect backoff")
	}
}

// TestHeadTimeoutKeptAcrossRequests: the response head timeout stays on a
// keep-alive backend connection between requests (headDeadline), so it
// must still bound a late head there, and must be gone before a body that
// streams for longer than it.
func TestHeadTimeoutKeptAcrossRequests(t *testing.T) {
	var mu sync.Mutex
	peers := map[string]bool{}
	b := newTestBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		peers[r.RemoteAddr] = true
		mu.Unlock()
		switch r.URL.Path {
		case "/stream": // head at once, then a body slower than the timeout
			w.Header().Set("Content-Length", "6")
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, "abc")
			w.(http.Flusher).Flush()
			time.Sleep(300 * time.Millisecond)
			_, _ = io.WriteString(w, "def")
		case "/late": // a head after four times the timeout
			time.Sleep(400 * time.Millisecond)
			_, _ = io.WriteString(w, "late")
		default:
			_, _ = io.WriteString(w, "fast")
		}
	})
	p, _ := newTestProxy(t, PoolConfig{
		Backends:              []BackendConfig{b.config(1)},
		ResponseHeaderTimeout: 100 * time.Millisecond,
	}, nil)
	front := newFront(t, p, nil)
	for i, c := range []struct {
		pause  time.Duration // first, so that the last deadline has passed
		path   string
		status int
		body   string
	}{
		{0, "/", 200, "fast"}, {0, "/", 200, "fast"}, {150 * time.Millisecond, "/", 200, "fast"},
		{0, "/stream", 200, "abcdef"}, {0, "/", 200, "fast"}, {0, "/late", http.StatusGatewayTimeout, ""},
	} {
		time.Sleep(c.pause)
		status, _, body := get(t, front.Client(), front.URL+c.path)
		if status != c.status || c.body != "" && body != c.body {
			t.Fatalf("request %d (%s): %d %q, want %d %q", i, c.path, status, body, c.status, c.body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(peers) != 1 {
		t.Errorf("the backend saw %d connections, want the requests on one: %v", len(peers), peers)
	}
}

func TestNewProxyValidates(t *testing.T) {
	if _, err := NewProxy(ProxyConfig{}); err == nil {
		t.Error("NewProxy without a pool succeeded")
	}
	pool, err := NewPool(PoolConfig{Backends: []BackendConfig{{Addr: "127.0.0.1:1"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewProxy(ProxyConfig{Pool: pool, MaxAttempts: -1}); err == nil {
		t.Error("NewProxy with MaxAttempts -1 succeeded")
	}
}
