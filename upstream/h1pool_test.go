package upstream

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// oneShotBackend answers the first request of every connection with a
// keep-alive response and then closes the connection without saying so,
// as a backend whose keep-alive timeout ran out does. What happens to the
// second request on a connection is up to second: nil closes at once.
type oneShotBackend struct {
	*rawBackend
	requests atomic.Int64
	closed   chan struct{}
}

func newOneShotBackend(t *testing.T, second func(c net.Conn, br *bufio.Reader)) *oneShotBackend {
	ob := &oneShotBackend{closed: make(chan struct{}, 16)}
	ob.rawBackend = newRawBackend(t, func(c net.Conn, br *bufio.Reader) {
		if _, _, err := readRequest(br); err != nil {
			return
		}
		ob.requests.Add(1)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		if second != nil {
			second(c, br)
		}
		_ = c.Close()
		ob.closed <- struct{}{}
	})
	return ob
}

// idleDead waits until the pool's idle connection has seen the backend's
// close, so that a test does not race the FIN.
func idleDead(t *testing.T, s *connStack) {
	t.Helper()
	eventually(t, "the idle connection to see the close", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.idle) == 1 && !s.idle[0].alive()
	})
}

// A reused connection that the backend closed while it was idle is not a
// backend failure: the request goes again on a new connection. Requests
// that could not be replayed are preceded by a probe instead.
func TestStaleKeepAlive(t *testing.T) {
	for _, tc := range []struct {
		name, method string
		body         string
	}{
		{"GET retried", "GET", ""},
		{"POST probed", "POST", "payload"},
		{"bodyless DELETE probed", "DELETE", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ob := newOneShotBackend(t, nil)
			p, hook := newTestProxy(t, PoolConfig{Backends: []BackendConfig{{ID: "a", Addr: ob.addr()}}}, nil)
			front := newFront(t, p, nil)
			for i := range 2 {
				req, _ := http.NewRequest(tc.method, front.URL, strings.NewReader(tc.body))
				resp, err := front.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(body) != "ok" || resp.Header.Get("X-Attempts") != "1" {
					t.Fatalf("request %d: %d %q after %s attempts", i, resp.StatusCode, body, resp.Header.Get("X-Attempts"))
				}
				if i == 0 {
					<-ob.closed
					idleDead(t, p.pool.stacks[0])
				}
			}
			if n, c := ob.requests.Load(), ob.conns.Load(); n != 2 || c != 2 {
				t.Errorf("backend saw %d requests on %d connections, want 2 on 2", n, c)
			}
			if e := errorEntries(hook); len(e) != 0 {
				t.Errorf("logged %v", e)
			}
			if !p.pool.Backend("a").Up(time.Now()) {
				t.Error("a stale connection put the backend in backoff")
			}
		})
	}
}

// When the connection dies after the request went out, only a request
// safe to replay is sent again; a bodyless POST may have been acted on.
func TestDeadAfterRequestNotReplayed(t *testing.T) {
	for _, tc := range []struct {
		method     string
		wantStatus int
	}{
		{"GET", 200},
		{"POST", 502},
	} {
		t.Run(tc.method, func(t *testing.T) {
			ob := newOneShotBackend(t, func(c net.Conn, br *bufio.Reader) {
				// The second request arrives and the connection closes
				// before any answer.
				_, _, _ = readRequest(br)
			})
			p, _ := newTestProxy(t, PoolConfig{Backends: []BackendConfig{{ID: "a", Addr: ob.addr()}}}, nil)
			front := newFront(t, p, nil)
			c := front.Client()
			resp, err := c.Get(front.URL)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			req, _ := http.NewRequest(tc.method, front.URL, nil)
			resp, err = c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			// First connection: GET, then the second request read and
			// dropped. A replay opens a second connection.
			if conns := ob.conns.Load(); tc.wantStatus == 200 && conns != 2 || tc.wantStatus != 200 && conns != 1 {
				t.Errorf("%d connections", conns)
			}
		})
	}
}

func TestIdleConnTimeout(t *testing.T) {
	be := newTestBackend(t, "a", nil)
	closed := &be.closed
	p, _ := newTestProxy(t, PoolConfig{Backends: []BackendConfig{be.config(1)}, IdleConnTimeout: 50 * time.Millisecond}, nil)
	front := newFront(t, p, nil)
	if status, _, _ := get(t, front.Client(), front.URL); status != 200 {
		t.Fatalf("status %d", status)
	}
	if n := p.pool.stacks[0].idleLen(); n != 1 {
		t.Fatalf("%d idle connections after a request, want 1", n)
	}
	eventually(t, "the reaper to close the idle connection", func() bool {
		return p.pool.stacks[0].idleLen() == 0 && closed.Load() == 1
	})
}

// An idle connection found expired when taken is closed, not used.
func TestIdleConnExpiredOnGet(t *testing.T) {
	s := newConnStack("127.0.0.1:1", &PoolConfig{IdleConnTimeout: time.Minute})
	defer s.close()
	a, b := net.Pipe()
	defer b.Close()
	now := time.Now()
	s.put(newH1Conn(a), now)
	if c := s.get(now.Add(time.Minute)); c != nil {
		t.Fatal("got an expired connection")
	}
	if _, err := a.Write([]byte("x")); err == nil {
		t.Error("the expired connection was not closed")
	}
}

func TestMaxIdleConnsPerHost(t *testing.T) {
	const n = 4
	var arrived sync.WaitGroup
	arrived.Add(n)
	release := make(chan struct{})
	be := newTestBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		arrived.Done()
		<-release
	})
	p, _ := newTestProxy(t, PoolConfig{Backends: []BackendConfig{be.config(1)}, MaxIdleConnsPerHost: 2}, nil)
	front := newFront(t, p, nil)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			resp, err := front.Client().Get(front.URL)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		})
	}
	arrived.Wait()
	close(release)
	wg.Wait()
	if got := p.pool.stacks[0].idleLen(); got != 2 {
		t.Errorf("%d idle connections, want 2", got)
	}
	if got := be.conns.Load(); got != n {
		t.Errorf("%d connections, want %d", got, n)
	}
}

func TestPoolCloseClosesIdle(t *testing.T) {
	be := newTestBackend(t, "a", nil)
	closed := &be.closed
	p, _ := newTestProxy(t, PoolConfig{Backends: []BackendConfig{be.config(1)}}, nil)
	front := newFront(t, p, nil)
	if status, _, _ := get(t, front.Client(), front.URL); status != 200 {
		t.Fatalf("status %d", status)
	}
	p.pool.Close()
	eventually(t, "the idle connection to close", func() bool { return closed.Load() == 1 })
	// A request that still reaches the retired pool works; its connection
	// is closed afterwards.
	if status, _, _ := get(t, front.Client(), front.URL); status != 200 {
		t.Fatalf("status %d after Close", status)
	}
	eventually(t, "the second connection to close", func() bool { return closed.Load() == 2 })
	if n := p.pool.stacks[0].idleLen(); n != 0 {
		t.Errorf("%d idle connections after Close", n)
	}
}
