package tlsedge

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/config"
)

// connBackend is a backend that counts the TCP connections the gateway
// opens to it and closes, and answers with its name and the protocol it
// was spoken to in. It speaks HTTP/1.1 and h2c, or HTTP/1.1 over TLS
// with cert.
type connBackend struct {
	srv           *httptest.Server
	conns, closed atomic.Int64
}

func startConnBackend(t *testing.T, name string, cert *tls.Certificate) *connBackend {
	t.Helper()
	b := &connBackend{}
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(name + " " + r.Proto)) //nolint:errcheck // the client checks the body
	}))
	b.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			b.conns.Add(1)
		case http.StateClosed, http.StateHijacked:
			b.closed.Add(1)
		}
	}
	if cert != nil {
		b.srv.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
		b.srv.StartTLS()
	} else {
		b.srv.Config.Protocols = new(http.Protocols)
		b.srv.Config.Protocols.SetHTTP1(true)
		b.srv.Config.Protocols.SetUnencryptedHTTP2(true)
		b.srv.Start()
	}
	t.Cleanup(b.srv.Close)
	return b
}

func (b *connBackend) addr() string { return b.srv.Listener.Addr().String() }

// A reload keeps the idle backend connections of the apps whose
// transport did not change: their backends see no new connection, not
// even once the old snapshot's pools are closed. An app whose protocol
// changed, or whose backend CA file has new content at the same path,
// gets new connections, and the old ones are closed.
func TestReloadKeepsBackendConnections(t *testing.T) {
	certPEM, keyPEM, _ := selfSigned(t, "api.internal", "api.internal")
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	otherCA, _, _ := selfSigned(t, "other.internal", "other.internal")
	dir := t.TempDir()
	sameCA, newCA := filepath.Join(dir, "same.pem"), filepath.Join(dir, "new.pem")
	for _, f := range []string{sameCA, newCA} {
		if err := os.WriteFile(f, certPEM, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	backends := map[string]*connBackend{
		"shop":   startConnBackend(t, "shop", nil),
		"grpc":   startConnBackend(t, "grpc", nil),
		"secure": startConnBackend(t, "secure", &cert),
		"rotate": startConnBackend(t, "rotate", &cert),
		"blog":   startConnBackend(t, "blog", nil),
	}
	apps := func(grpcProtocol string, blog bool) []config.App {
		mk := func(name string, btls *config.BackendTLS) config.App {
			a := app(name+".example.com", backends[name].addr())
			a.BackendTLS = btls
			return a
		}
		list := []config.App{
			mk("shop", nil),
			mk("grpc", nil),
			mk("secure", &config.BackendTLS{CA: sameCA, ServerName: "api.internal"}),
			mk("rotate", &config.BackendTLS{CA: newCA, ServerName: "api.internal"}),
		}
		list[1].Protocol = grpcProtocol
		if blog {
			list = append(list, mk("blog", nil))
		}
		return list
	}
	g := startGateway(t, &config.Config{Apps: apps("", false)})
	c := g.client(false)
	fetch := func(name, wantProto string) {
		t.Helper()
		resp, body := get(t, c, "https://"+name+".example.com/", "")
		if want := name + " " + wantProto; resp.StatusCode != 200 || body != want {
			t.Fatalf("%s: %d %q, want %q", name, resp.StatusCode, body, want)
		}
	}
	for range 3 {
		for _, name := range []string{"shop", "grpc", "secure", "rotate"} {
			fetch(name, "HTTP/1.1")
		}
	}
	for name, b := range backends {
		if name != "blog" && b.conns.Load() != 1 {
			t.Fatalf("%s: %d connections before the reload, want 1 kept alive", name, b.conns.Load())
		}
	}

	// The CA file of "rotate" gets another root at the same path: the same
	// backend_tls, other roots.
	writeFile(t, newCA, append(append([]byte{}, certPEM...), otherCA...))
	old := g.srv.snap.Load()
	if err := g.srv.Reload(reloadConfig(g, apps("h2c", true)...)); err != nil {
		t.Fatalf("reload: %v", err)
	}
	// What the reload schedules for later, now: the old pools close
	// what nobody adopted.
	old.closePools()
	for range 3 {
		fetch("shop", "HTTP/1.1")
		fetch("grpc", "HTTP/2.0")
		fetch("secure", "HTTP/1.1")
		fetch("rotate", "HTTP/1.1")
		fetch("blog", "HTTP/1.1")
	}

	for _, tc := range []struct {
		name          string
		conns, closed int64
	}{
		{"shop", 1, 0},   // unchanged: the same connection throughout
		{"secure", 1, 0}, // unchanged backend_tls and CA file
		{"grpc", 2, 1},   // http1 -> h2c
		{"rotate", 2, 1}, // new content in the CA file
		{"blog", 1, 0},   // added
	} {
		b := backends[tc.name]
		// Closes reach the backend asynchronously: poll, bounded.
		deadline := time.Now().Add(5 * time.Second)
		for (b.conns.Load() != tc.conns || b.closed.Load() != tc.closed) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n, c := b.conns.Load(), b.closed.Load(); n != tc.conns || c != tc.closed {
			t.Errorf("%s: %d connections, %d closed; want %d, %d", tc.name, n, c, tc.conns, tc.closed)
		}
	}
	if !strings.Contains(g.logs.String(), "backends_conns_kept=2") {
		t.Error("the reload line does not say that 2 backends kept their connections")
	}
}
