package upstream

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// adoptFront builds a pool of pc in reg and a front serving it.
func adoptFront(t *testing.T, pc PoolConfig, reg *Registry) (*Pool, *httptest.Server) {
	t.Helper()
	pool, err := NewPool(pc, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	p, err := NewProxy(ProxyConfig{Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	return pool, newFront(t, p, nil)
}

// getOK does a GET through front and fails the test unless it is a 200.
func getOK(t *testing.T, front *httptest.Server, path string) {
	t.Helper()
	if code, _, body := get(t, front.Client(), front.URL+path); code != http.StatusOK {
		t.Fatalf("GET %s: %d %q", path, code, body)
	}
}

func stackClosed(s *connStack) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// TestAdoptKeepsIdleConnections: the new pool reuses the TCP connection
// the old one left idle, the old pool's Close leaves it open, and the new
// pool's Close closes it.
func TestAdoptKeepsIdleConnections(t *testing.T) {
	be := newTestBackend(t, "a", nil)
	reg := NewRegistry()
	pc := PoolConfig{Backends: []BackendConfig{be.config(1)}}
	oldPool, oldFront := adoptFront(t, pc, reg)
	getOK(t, oldFront, "/")
	if n := be.conns.Load(); n != 1 {
		t.Fatalf("%d backend connections before the reload, want 1", n)
	}

	newPool, newFront := adoptFront(t, pc, reg)
	if n := newPool.Adopt(oldPool); n != 1 {
		t.Fatalf("Adopt = %d, want 1", n)
	}
	if newPool.stack(newPool.Backend("a")) != oldPool.stack(oldPool.Backend("a")) {
		t.Fatal("the new pool does not use the old pool's stack")
	}
	oldPool.Close()
	for range 3 {
		getOK(t, newFront, "/")
	}
	if n, c := be.conns.Load(), be.closed.Load(); n != 1 || c != 0 {
		t.Errorf("after the reload: %d connections, %d closed; want the first one reused and open", n, c)
	}
	if again := newPool.Adopt(oldPool); again != 0 {
		t.Errorf("a closed pool handed over %d stacks", again)
	}

	newPool.Close()
	eventually(t, "the new pool's Close to close the adopted connection", func() bool { return be.closed.Load() == 1 })
}

// TestAdoptFromClosedPool: a closed pool hands nothing over; the new pool
// keeps its own stack, open.
func TestAdoptFromClosedPool(t *testing.T) {
	be := newTestBackend(t, "a", nil)
	reg := NewRegistry()
	pc := PoolConfig{Backends: []BackendConfig{be.config(1)}}
	oldPool, oldFront := adoptFront(t, pc, reg)
	getOK(t, oldFront, "/")
	oldPool.Close()
	newPool, newFront := adoptFront(t, pc, reg)
	if n := newPool.Adopt(oldPool); n != 0 {
		t.Fatalf("Adopt = %d from a closed pool, want 0", n)
	}
	if s := newPool.state.Load().stacks[0]; stackClosed(s) || s.owner.Load() != newPool {
		t.Fatalf("the new pool's stack: closed %v, its own %v", stackClosed(s), s.owner.Load() == newPool)
	}
	getOK(t, newFront, "/")
	getOK(t, newFront, "/")
	if n := be.conns.Load(); n != 2 {
		t.Errorf("%d connections, want the old one closed and one new one kept alive", n)
	}
}

// TestAdoptInFlightRequest: a request still running on the old pool when
// it is replaced and closed puts its connection back into the adopted
// stack, for the new pool.
func TestAdoptInFlightRequest(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	be := newTestBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release
		}
	})
	reg := NewRegistry()
	pc := PoolConfig{Backends: []BackendConfig{be.config(1)}}
	oldPool, oldFront := adoptFront(t, pc, reg)
	getOK(t, oldFront, "/")
	slow := make(chan struct{})
	go func() { // ends when release is closed; the test waits for it
		defer close(slow)
		resp, err := oldFront.Client().Get(oldFront.URL + "/slow")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	<-started

	newPool, newFront := adoptFront(t, pc, reg)
	if n := newPool.Adopt(oldPool); n != 1 {
		t.Fatalf("Adopt = %d, want 1", n)
	}
	oldPool.Close()
	close(release)
	<-slow
	s := newPool.stack(newPool.Backend("a"))
	eventually(t, "the old request's connection back in the adopted stack", func() bool { return s.idleLen() == 1 })
	getOK(t, newFront, "/")
	if n, c := be.conns.Load(), be.closed.Load(); n != 1 || c != 0 {
		t.Errorf("%d connections, %d closed; want the old request's connection reused", n, c)
	}
}

// TestAdoptRefuses: a backend that moved or was renamed gets a stack of
// its own, and a transport setting that differs prevents adoption; the
// old pool's Close then closes the old connection.
func TestAdoptRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(pc *PoolConfig, moved string)
		serve  bool // a request through the new pool is expected to work
	}{
		{"address changed", func(pc *PoolConfig, moved string) { pc.Backends[0].Addr = moved }, true},
		{"id changed", func(pc *PoolConfig, _ string) { pc.Backends[0].ID = "b" }, true},
		{"protocol", func(pc *PoolConfig, _ string) { pc.Protocol = ProtocolH2C }, false},
		{"tls", func(pc *PoolConfig, _ string) { pc.TLS = &tls.Config{} }, false},
		{"dial timeout", func(pc *PoolConfig, _ string) { pc.DialTimeout = time.Second }, true},
		{"response header timeout", func(pc *PoolConfig, _ string) { pc.ResponseHeaderTimeout = time.Second }, true},
		{"idle timeout", func(pc *PoolConfig, _ string) { pc.IdleConnTimeout = time.Minute }, true},
		{"max idle", func(pc *PoolConfig, _ string) { pc.MaxIdleConnsPerHost = 4 }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be, moved := newTestBackend(t, "a", nil), newTestBackend(t, "a", nil)
			reg := NewRegistry()
			oldPool, oldFront := adoptFront(t, PoolConfig{Backends: []BackendConfig{be.config(1)}}, reg)
			getOK(t, oldFront, "/")

			pc := PoolConfig{Backends: []BackendConfig{be.config(1)}}
			tc.change(&pc, moved.addr())
			newPool, newFront := adoptFront(t, pc, reg)
			if n := newPool.Adopt(oldPool); n != 0 {
				t.Fatalf("Adopt = %d, want 0", n)
			}
			if newPool.state.Load().stacks[0] == oldPool.state.Load().stacks[0] {
				t.Fatal("the new pool shares the old pool's stack")
			}
			oldPool.Close()
			eventually(t, "the old pool's Close to close its connection", func() bool { return be.closed.Load() == 1 })
			if tc.serve {
				getOK(t, newFront, "/")
				if n := be.conns.Load() + moved.conns.Load(); n != 2 {
					t.Errorf("%d connections in all, want a new one for the new pool", n)
				}
			}
		})
	}
}

// TestAdoptSomeBackends: only the backends both pools have carry over;
// the old pool's Close closes the connection of the one that moved.
func TestAdoptSomeBackends(t *testing.T) {
	a, b, b2 := newTestBackend(t, "a", nil), newTestBackend(t, "b", nil), newTestBackend(t, "b", nil)
	reg := NewRegistry()
	oldPool, oldFront := adoptFront(t, PoolConfig{Backends: []BackendConfig{a.config(1), b.config(1)}}, reg)
	for range 2 { // round robin: one each
		getOK(t, oldFront, "/")
	}
	newPool, newFront := adoptFront(t, PoolConfig{Backends: []BackendConfig{a.config(1), b2.config(1)}}, reg)
	if n := newPool.Adopt(oldPool); n != 1 {
		t.Fatalf("Adopt = %d, want 1 (a)", n)
	}
	oldPool.Close()
	eventually(t, "b's connection closed", func() bool { return b.closed.Load() == 1 })
	for range 2 {
		getOK(t, newFront, "/")
	}
	if a.conns.Load() != 1 || a.closed.Load() != 0 || b2.conns.Load() != 1 {
		t.Errorf("a: %d connections, %d closed (want 1, 0); b2: %d connections (want 1)",
			a.conns.Load(), a.closed.Load(), b2.conns.Load())
	}
}

// TestAdoptRacesClose: an Adopt racing the old pool's Close either takes
// an open stack or none; never one that Close closed.
func TestAdoptRacesClose(t *testing.T) {
	be := newTestBackend(t, "a", nil)
	pc := PoolConfig{Backends: []BackendConfig{be.config(1)}}
	for range 50 {
		reg := NewRegistry()
		oldPool, oldFront := adoptFront(t, pc, reg)
		getOK(t, oldFront, "/")
		newPool, err := NewPool(pc, reg)
		if err != nil {
			t.Fatal(err)
		}
		var (
			wg sync.WaitGroup
			n  int
		)
		start := make(chan struct{})
		wg.Go(func() { <-start; oldPool.Close() })
		wg.Go(func() { <-start; n = newPool.Adopt(oldPool) })
		close(start)
		wg.Wait()
		s := newPool.state.Load().stacks[0]
		if stackClosed(s) || (n == 1) != (s == oldPool.state.Load().stacks[0]) || s.owner.Load() != newPool {
			t.Fatalf("Adopt = %d: stack closed %v, the old one %v, owned by the new pool %v",
				n, stackClosed(s), s == oldPool.state.Load().stacks[0], s.owner.Load() == newPool)
		}
		newPool.Close()
		oldFront.Close()
	}
}

// TestAdoptSurvivesOldResolver: the old pool's resolver dropping an
// address whose stack the new pool adopted does not close that stack.
func TestAdoptSurvivesOldResolver(t *testing.T) {
	d := newDNSServer(t)
	port, tbs := newTestBackendsOnePort(t, "127.0.0.1", "127.0.0.2")
	d.setHost(appName, "127.0.0.1")
	reg := NewRegistry()
	pc := PoolConfig{
		Backends: []BackendConfig{{ID: "app", Addr: net.JoinHostPort(appName, port)}},
		Resolve:  time.Hour, // passes are driven by the test
		Resolver: d.resolver(),
	}
	oldPool, oldFront := adoptFront(t, pc, reg)
	getOK(t, oldFront, "/")
	newPool, newFront := adoptFront(t, pc, reg)
	if n := newPool.Adopt(oldPool); n != 1 {
		t.Fatalf("Adopt = %d, want 1", n)
	}
	adopted := newPool.stack(newPool.Backend("app@127.0.0.1"))

	d.setHost(appName, "127.0.0.2")
	r, _ := newTestResolver(oldPool)
	r.pass(t.Context())
	wantIDs(t, oldPool, "app@127.0.0.2")
	if stackClosed(adopted) || adopted.idleLen() != 1 {
		t.Fatalf("the old pool's resolver closed the adopted stack (closed %v, idle %d)", stackClosed(adopted), adopted.idleLen())
	}
	getOK(t, newFront, "/")
	if n := tbs[0].conns.Load(); n != 1 {
		t.Errorf("%d connections to 127.0.0.1, want the adopted one reused", n)
	}

	// The new pool's own resolver dropping it closes it: it is the owner.
	r, _ = newTestResolver(newPool)
	r.pass(t.Context())
	if !stackClosed(adopted) {
		t.Error("the owner's resolver left a dropped stack open")
	}
}

// countingH2Backend is an HTTP/2 backend (h2c, or h2 over TLS with pki)
// that counts its TCP connections.
func countingH2Backend(t *testing.T, pki *testPKI) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(r.Proto))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Config.Protocols = new(http.Protocols)
	if pki == nil {
		srv.Config.Protocols.SetUnencryptedHTTP2(true)
		srv.Start()
	} else {
		srv.Config.Protocols.SetHTTP2(true)
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{pki.issue(t, "grpc.internal", false, net.IPv4(127, 0, 0, 1))}, NextProtos: []string{"h2"}}
		srv.StartTLS()
	}
	t.Cleanup(srv.Close)
	return srv, &conns
}

// TestAdoptH2Transport: an h2 or h2c pool adopts the transport with its
// multiplexed connection; a connection dialled after that uses the new
// pool's TLS settings.
func TestAdoptH2Transport(t *testing.T) {
	pki := newTestPKI(t, "Private CA")
	for _, tc := range []struct {
		name string
		pki  *testPKI
		pc   PoolConfig
	}{
		{"h2c", nil, PoolConfig{Protocol: ProtocolH2C}},
		{"h2", pki, PoolConfig{Protocol: ProtocolH2, TLS: &tls.Config{RootCAs: pki.pool, ServerName: "grpc.internal"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be, conns := countingH2Backend(t, tc.pki)
			pc := tc.pc
			pc.Backends = []BackendConfig{{ID: "a", Addr: be.Listener.Addr().String()}}
			reg := NewRegistry()
			oldPool, oldFront := adoptFront(t, pc, reg)
			getOK(t, oldFront, "/")
			oldTr := oldPool.h2.Load()

			newPool, newFront := adoptFront(t, pc, reg)
			if n := newPool.Adopt(oldPool); n != 1 {
				t.Fatalf("Adopt = %d, want 1", n)
			}
			if newPool.h2.Load() != oldTr || oldTr.owner.Load() != newPool {
				t.Fatal("the h2 transport was not handed over")
			}
			oldPool.Close()
			getOK(t, newFront, "/")
			if n := conns.Load(); n != 1 {
				t.Errorf("%d connections, want the old pool's reused", n)
			}

			oldTr.CloseIdleConnections()
			getOK(t, newFront, "/") // dialled by the new owner
			if n := conns.Load(); n != 2 {
				t.Errorf("%d connections after closing the idle one, want 2", n)
			}
		})
	}
}
