package upstream

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// An idempotent request without a body whose backend died before
// answering goes to another backend.
func TestRetryIdempotentAfterReset(t *testing.T) {
	for _, tc := range []struct {
		method string
		header string
	}{{"GET", ""}, {"HEAD", ""}, {"DELETE", ""}, {"OPTIONS", ""}, {"POST", "Idempotency-Key: 8e03978e-40d5-43e8-bc93-6894a57f9324"}} {
		t.Run(tc.method, func(t *testing.T) {
			reset := newResetBackend(t)
			live := newTestBackend(t, "live", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
			p, hook := newTestProxy(t, PoolConfig{Backends: []BackendConfig{{ID: "reset", Addr: reset.addr()}, live.config(1)}}, nil)
			front := newFront(t, p, func() *Backend { return p.pool.Backend("reset") })
			req, _ := http.NewRequest(tc.method, front.URL+"/x", nil)
			if k, v, ok := strings.Cut(tc.header, ": "); ok {
				req.Header.Set(k, v)
			}
			resp, err := front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("X-Attempts") != "2" {
				t.Errorf("status %d after %s attempts, want 200 after 2", resp.StatusCode, resp.Header.Get("X-Attempts"))
			}
			if a, l := reset.arrivals.Load(), live.requests.Load(); a != 1 || l != 1 {
				t.Errorf("arrivals: reset %d, live %d; want 1 and 1", a, l)
			}
			if e := errorEntries(hook); len(e) != 0 {
				t.Errorf("a successful retry logged %q", e[0].Message)
			}
		})
	}
}

// A response timeout is not retried (the backend may still be working),
// is answered 504, and counts towards the backend's ejection.
func TestResponseTimeoutNotRetried(t *testing.T) {
	var arrivals atomic.Int64
	slow := newRawBackend(t, func(c net.Conn, br *bufio.Reader) {
		if _, _, err := readRequest(br); err == nil {
			arrivals.Add(1)
		}
		waitClosed(c, 5*time.Second)
	})
	live := newTestBackend(t, "live", nil)
	pool, err := NewPool(PoolConfig{Backends: []BackendConfig{{ID: "slow", Addr: slow.addr()}, live.config(1)}, ResponseHeaderTimeout: 100 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	p, err := NewProxy(ProxyConfig{Pool: pool, PassiveFails: 2})
	if err != nil {
		t.Fatal(err)
	}
	front := newFront(t, p, func() *Backend { return pool.Backend("slow") })
	for i := range 2 {
		status, _, _ := get(t, front.Client(), front.URL+"/report")
		if status != http.StatusGatewayTimeout {
			t.Fatalf("request %d: status %d, want 504", i, status)
		}
	}
	if arrivals.Load() != 2 || live.requests.Load() != 0 {
		t.Errorf("arrivals slow %d, live %d; want 2 and 0", arrivals.Load(), live.requests.Load())
	}
	if pool.Backend("slow").Up(time.Now()) {
		t.Error("two timeouts in a row (PassiveFails 2) did not eject the backend")
	}
}

// With Passive5xx, a backend answering 5xx is ejected after PassiveFails
// answers in a row, and traffic moves to the others.
func TestPassive5xxEjects(t *testing.T) {
	bad := newTestBackend(t, "bad", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	good := newTestBackend(t, "good", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	p, hook := newTestProxy(t, PoolConfig{Backends: []BackendConfig{bad.config(1), good.config(1)}}, nil)
	p.passive5xx, p.passiveFails = true, 3
	front := newFront(t, p, nil)
	statuses := map[int]int{}
	for range 20 {
		status, _, _ := get(t, front.Client(), front.URL+"/")
		statuses[status]++
	}
	// Round robin: bad gets requests 1, 3, 5 (three 503s), then none.
	if statuses[503] != 3 || statuses[200] != 17 {
		t.Errorf("statuses %v, want 3×503 then only 200", statuses)
	}
	if got := strings.Join(stateEntries(hook), ","); got != "bad up->down" {
		t.Errorf("state lines %q", got)
	}
}

func TestRetryBudget(t *testing.T) {
	rb := newRetryBudget(RetryBudget{Ratio: 0.2, Window: 10 * time.Second, Min: 1})
	now := time.Unix(1000, 0)
	for range 100 {
		rb.request(now)
	}
	allowed := 0
	for range 50 {
		if rb.allowRetry(now) {
			allowed++
		}
	}
	if allowed != 21 { // 1 + 20 % of 100
		t.Errorf("%d retries allowed after 100 requests, want 21", allowed)
	}
	// Ten seconds later the window holds nothing: the minimum again.
	later := now.Add(10 * time.Second)
	if !rb.allowRetry(later) || rb.allowRetry(later) {
		t.Error("after the window: want exactly the minimum (1) allowed")
	}
}

// The budget stops retries of an outage: with every backend resetting
// connections, retries stay within the budget.
func TestRetryBudgetCapsRetries(t *testing.T) {
	resets := []*resetBackend{newResetBackend(t), newResetBackend(t), newResetBackend(t)}
	var cfgs []BackendConfig
	for i, r := range resets {
		cfgs = append(cfgs, BackendConfig{ID: string(rune('a' + i)), Addr: r.addr()})
	}
	pool, err := NewPool(PoolConfig{Backends: cfgs}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	p, err := NewProxy(ProxyConfig{Pool: pool, PassiveFails: 1000, RetryBudget: RetryBudget{Ratio: 0.1, Min: 2}})
	if err != nil {
		t.Fatal(err)
	}
	front := newFront(t, p, nil)
	const n = 50
	for range n {
		get(t, front.Client(), front.URL+"/")
	}
	total := int64(0)
	for _, r := range resets {
		total += r.arrivals.Load()
	}
	// n first attempts + at most 2 + 10 % of n retries.
	if max := int64(n + 2 + n/10); total > max || total < n {
		t.Errorf("%d requests reached backends for %d client requests, budget allows at most %d", total, n, max)
	}
}
