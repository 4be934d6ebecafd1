package upstream

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// h2Backend answers with the protocol it saw and a gRPC-style trailer.
func h2Backend(t *testing.T, pki *testPKI) *httptest.Server {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "Grpc-Status")
		w.Write([]byte(r.Proto + " " + string(body)))
		w.Header().Set("Grpc-Status", "0")
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	if pki == nil {
		srv.Config.Protocols.SetUnencryptedHTTP2(true)
		srv.Start()
	} else {
		srv.Config.Protocols.SetHTTP2(true)
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{pki.issue(t, "grpc.internal", false, net.IPv4(127, 0, 0, 1))}, NextProtos: []string{"h2", "http/1.1"}}
		srv.StartTLS()
	}
	t.Cleanup(srv.Close)
	return srv
}

func h2Front(t *testing.T, pc PoolConfig) *httptest.Server {
	pool, err := NewPool(pc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	p, err := NewProxy(ProxyConfig{Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	// The front speaks HTTP/2 too (TLS), as gRPC clients need.
	front := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.Serve(w, r, nil) }))
	front.EnableHTTP2 = true
	front.StartTLS()
	t.Cleanup(front.Close)
	return front
}

func checkH2(t *testing.T, front *httptest.Server) {
	t.Helper()
	resp, err := front.Client().Post(front.URL+"/svc.Method", "application/grpc", strings.NewReader("ping"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "HTTP/2.0 ping" {
		t.Errorf("got %d %q, want the backend to see HTTP/2.0", resp.StatusCode, body)
	}
	if got := resp.Trailer.Get("Grpc-Status"); got != "0" {
		t.Errorf("trailer Grpc-Status %q, want 0 passed through", got)
	}
}

func TestH2CBackend(t *testing.T) {
	be := h2Backend(t, nil)
	checkH2(t, h2Front(t, PoolConfig{Backends: []BackendConfig{{Addr: be.Listener.Addr().String()}}, Protocol: ProtocolH2C}))
}

func TestH2TLSBackend(t *testing.T) {
	pki := newTestPKI(t, "Private CA")
	be := h2Backend(t, pki)
	checkH2(t, h2Front(t, PoolConfig{Backends: []BackendConfig{{Addr: be.Listener.Addr().String()}}, Protocol: ProtocolH2,
		TLS: &tls.Config{RootCAs: pki.pool, ServerName: "grpc.internal"}}))
}

// A refused connect moves an h2 request to the next backend, as on the
// HTTP/1.1 path.
func TestH2CRetryAfterRefusedConnect(t *testing.T) {
	be := h2Backend(t, nil)
	front := h2Front(t, PoolConfig{Backends: []BackendConfig{{ID: "dead", Addr: refusedAddr(t)}, {ID: "live", Addr: be.Listener.Addr().String()}}, Protocol: ProtocolH2C})
	for range 3 {
		checkH2(t, front)
	}
}

func TestH2ConfigErrors(t *testing.T) {
	for _, pc := range []PoolConfig{
		{Backends: []BackendConfig{{Addr: "127.0.0.1:1"}}, Protocol: ProtocolH2},
		{Backends: []BackendConfig{{Addr: "127.0.0.1:1"}}, Protocol: ProtocolH2C, TLS: &tls.Config{}},
		{Backends: []BackendConfig{{Addr: "127.0.0.1:1"}}, Protocol: "spdy"},
	} {
		if _, err := NewPool(pc, nil); err == nil {
			t.Errorf("protocol %q (TLS %v) accepted", pc.Protocol, pc.TLS != nil)
		}
	}
}

// An idempotent request whose h2c backend drops the connection before an
// answer goes to another backend; a POST does not.
func TestH2CRetryIdempotentAfterReset(t *testing.T) {
	reset := newResetBackend(t)
	be := h2Backend(t, nil)
	front := h2Front(t, PoolConfig{Backends: []BackendConfig{{ID: "reset", Addr: reset.addr()}, {ID: "live", Addr: be.Listener.Addr().String()}}, Protocol: ProtocolH2C})
	for range 4 { // round robin: the reset backend comes first or second
		resp, err := front.Client().Get(front.URL + "/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET: %d, want 200 from the live backend", resp.StatusCode)
		}
	}
	if reset.arrivals.Load() == 0 {
		t.Fatal("the resetting backend was never tried")
	}
}
