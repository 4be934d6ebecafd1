package upstream

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gate is a backend handler that counts concurrent requests and holds each
// until the test lets it go.
type gate struct {
	cur, peak atomic.Int64
	release   chan struct{}
	mu        sync.Mutex
	order     []string // X-Name of requests, in arrival order
}

func newGate() *gate { return &gate{release: make(chan struct{}, 1000)} }

func (g *gate) handler(w http.ResponseWriter, r *http.Request) {
	n := g.cur.Add(1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			break
		}
	}
	g.mu.Lock()
	g.order = append(g.order, r.Header.Get("X-Name"))
	g.mu.Unlock()
	<-g.release
	g.cur.Add(-1)
}

func (g *gate) arrivals() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.order...)
}

// newQueueFront is newFront with the sticky preference set by the
// X-Sticky request header (the backend id).
func newQueueFront(t *testing.T, p *Proxy) *httptest.Server {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg := &Target{}
		if id := r.Header.Get("X-Sticky"); id != "" {
			tg.Prefer = p.pool.Backend(id)
		}
		p.Serve(&targetWriter{ResponseWriter: w, t: tg}, r, tg)
	}))
	t.Cleanup(ts.Close)
	return ts
}

func newQueueProxy(t *testing.T, maxConns int, q QueueConfig, backends ...*testBackend) *Proxy {
	t.Helper()
	var cfgs []BackendConfig
	for _, b := range backends {
		cfgs = append(cfgs, b.config(1))
	}
	pool, err := NewPool(PoolConfig{Backends: cfgs}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	p, err := NewProxy(ProxyConfig{Pool: pool, MaxConns: maxConns, Queue: q})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func send(t *testing.T, c *http.Client, url string, hdr map[string]string) (int, http.Header) {
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Error(err)
		return 0, nil
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// No backend ever has more than max_conns requests; the rest wait and
// are all served.
func TestMaxConnsQueue(t *testing.T) {
	g := newGate()
	be := newTestBackend(t, "a", g.handler)
	p := newQueueProxy(t, 4, QueueConfig{Timeout: 20 * time.Second}, be)
	front := newQueueFront(t, p)
	const n = 30
	var wg sync.WaitGroup
	codes := make(chan int, n)
	for range n {
		wg.Go(func() {
			code, _ := send(t, front.Client(), front.URL+"/", nil)
			codes <- code
		})
	}
	eventually(t, "4 in the backend and 26 queued", func() bool {
		return g.cur.Load() == 4 && p.queue.Waiting() == n-4
	})
	for range n {
		g.release <- struct{}{}
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Errorf("status %d, want every request served", c)
		}
	}
	if peak := g.peak.Load(); peak != 4 {
		t.Errorf("peak concurrency at the backend %d, want 4", peak)
	}
}

func TestQueueTimeoutAndLength(t *testing.T) {
	g := newGate()
	be := newTestBackend(t, "a", g.handler)
	p := newQueueProxy(t, 1, QueueConfig{Len: 1, Timeout: 300 * time.Millisecond}, be)
	front := newQueueFront(t, p)
	done := make(chan int, 1)
	go func() { c, _ := send(t, front.Client(), front.URL+"/", nil); done <- c }()
	eventually(t, "the slot taken", func() bool { return g.cur.Load() == 1 })
	waiting := make(chan http.Header, 1)
	go func() {
		c, h := send(t, front.Client(), front.URL+"/", nil)
		h.Set("X-Code", http.StatusText(c))
		waiting <- h
	}()
	eventually(t, "one queued", func() bool { return p.queue.Waiting() == 1 })
	// The queue holds one: the next is turned away at once.
	code, h := send(t, front.Client(), front.URL+"/", nil)
	if code != 503 || h.Get("Retry-After") == "" {
		t.Errorf("over the queue length: %d Retry-After %q, want 503 with Retry-After", code, h.Get("Retry-After"))
	}
	// The queued one times out.
	if h := <-waiting; h.Get("X-Code") != "Service Unavailable" || h.Get("Retry-After") != "1" {
		t.Errorf("queue timeout: %s Retry-After %q", h.Get("X-Code"), h.Get("Retry-After"))
	}
	g.release <- struct{}{}
	if c := <-done; c != 200 {
		t.Errorf("the request in the backend: %d", c)
	}
}

// Requests of users in a session (valid sticky cookie) and priority paths
// overtake new arrivals in the queue.
func TestQueuePriority(t *testing.T) {
	g := newGate()
	be := newTestBackend(t, "a", g.handler)
	p := newQueueProxy(t, 1, QueueConfig{Timeout: 20 * time.Second, PriorityPaths: []string{"/checkout"}}, be)
	front := newQueueFront(t, p)
	var wg sync.WaitGroup
	start := func(name, path string, hdr map[string]string) {
		h := map[string]string{"X-Name": name}
		for k, v := range hdr {
			h[k] = v
		}
		wg.Go(func() { send(t, front.Client(), front.URL+path, h) })
	}
	start("first", "/", nil)
	eventually(t, "the slot taken", func() bool { return g.cur.Load() == 1 })
	for i, name := range []string{"new1", "new2", "new3"} {
		start(name, "/", nil)
		eventually(t, name+" queued", func() bool { return p.queue.Waiting() == i+1 })
	}
	start("session", "/", map[string]string{"X-Sticky": "a"})
	eventually(t, "session queued", func() bool { return p.queue.Waiting() == 4 })
	start("checkout", "/checkout/pay", nil)
	eventually(t, "checkout queued", func() bool { return p.queue.Waiting() == 5 })
	for range 6 {
		g.release <- struct{}{}
	}
	wg.Wait()
	got := g.arrivals()
	want := []string{"first", "session", "checkout", "new1", "new2", "new3"}
	if len(got) != len(want) {
		t.Fatalf("arrivals %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("arrival order %v, want %v", got, want)
		}
	}
}

// The HTTP/2 path (an h2c pool) keeps max_conns and queues as well.
func TestMaxConnsQueueH2C(t *testing.T) {
	g := newGate()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(g.handler))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	pool, err := NewPool(PoolConfig{Backends: []BackendConfig{{ID: "a", Addr: srv.Listener.Addr().String()}}, Protocol: ProtocolH2C}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	p, err := NewProxy(ProxyConfig{Pool: pool, MaxConns: 2, Queue: QueueConfig{Timeout: 20 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	front := newQueueFront(t, p)
	const n = 10
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if code, _ := send(t, front.Client(), front.URL+"/", nil); code != 200 {
				t.Errorf("status %d", code)
			}
		})
	}
	eventually(t, "2 in the backend and 8 queued", func() bool { return g.cur.Load() == 2 && p.queue.Waiting() == n-2 })
	for range n {
		g.release <- struct{}{}
	}
	wg.Wait()
	if peak := g.peak.Load(); peak != 2 {
		t.Errorf("peak concurrency %d, want 2", peak)
	}
}
