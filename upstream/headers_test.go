package upstream

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// received is what the echo backend saw.
type received struct {
	Host   string
	Header http.Header
}

func newEchoHeadersBackend(t *testing.T) *testBackend {
	return newTestBackend(t, "echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(received{Host: r.Host, Header: r.Header})
	})
}

// rawRoundTrip writes a literal request on conn and parses the response, so
// that the test controls every header byte the proxy receives.
func rawRoundTrip(t *testing.T, conn net.Conn, request string) received {
	t.Helper()
	defer conn.Close()
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var got received
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	return got
}

const hostileRequest = "GET /path?q=1 HTTP/1.1\r\n" +
	"Host: app.example.com:8443\r\n" +
	"X-Forwarded-For: 6.6.6.6\r\n" +
	"X-Forwarded-Host: evil.example\r\n" +
	"X-Forwarded-Proto: https\r\n" +
	"Forwarded: for=6.6.6.6;proto=https\r\n" +
	"Connection: keep-alive, X-Secret-Hop, Upgrade\r\n" +
	"X-Secret-Hop: 1\r\n" +
	"Keep-Alive: timeout=5\r\n" +
	"Te: gzip\r\n" +
	"Upgrade: h2c\r\n" +
	"Proxy-Authorization: Basic c2VjcmV0\r\n" +
	"Proxy-Connection: keep-alive\r\n" +
	"X-End-To-End: kept\r\n" +
	"\r\n"

func TestForwardingHeaders(t *testing.T) {
	echo := newEchoHeadersBackend(t)
	p, _ := newTestProxy(t, PoolConfig{Backends: []BackendConfig{echo.config(1)}}, nil)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.Serve(w, r, nil) })

	plain := httptest.NewServer(handler)
	t.Cleanup(plain.Close)
	secure := httptest.NewTLSServer(handler)
	t.Cleanup(secure.Close)
	roots := x509.NewCertPool()
	roots.AddCert(secure.Certificate())

	for _, tc := range []struct {
		name  string
		dial  func() (net.Conn, error)
		proto string
	}{
		{"http", func() (net.Conn, error) { return net.Dial("tcp", plain.Listener.Addr().String()) }, "http"},
		{"https", func() (net.Conn, error) {
			return tls.Dial("tcp", secure.Listener.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "example.com"})
		}, "https"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := tc.dial()
			if err != nil {
				t.Fatal(err)
			}
			got := rawRoundTrip(t, conn, hostileRequest)
			if got.Host != "app.example.com:8443" {
				t.Errorf("backend saw Host %q, want the client's", got.Host)
			}
			want := map[string]string{
				"X-Forwarded-For":   "127.0.0.1", // the client's claim is dropped
				"X-Forwarded-Host":  "app.example.com:8443",
				"X-Forwarded-Proto": tc.proto,
				"Forwarded":         `for=127.0.0.1;host="app.example.com:8443";proto=` + tc.proto,
				"X-End-To-End":      "kept",
			}
			for k, v := range want {
				if g := got.Header.Values(k); len(g) != 1 || g[0] != v {
					t.Errorf("%s = %q, want [%q]", k, g, v)
				}
			}
			for _, hop := range []string{"Connection", "X-Secret-Hop", "Keep-Alive", "Te", "Upgrade", "Proxy-Authorization", "Proxy-Connection"} {
				if v, ok := got.Header[hop]; ok {
					t.Errorf("hop-by-hop %s reached the backend: %q", hop, v)
				}
			}
		})
	}
}

// Te: trailers is end-to-end in practice (gRPC needs it) and passes.
func TestTeTrailersPasses(t *testing.T) {
	echo := newEchoHeadersBackend(t)
	p, _ := newTestProxy(t, PoolConfig{Backends: []BackendConfig{echo.config(1)}}, nil)
	front := newFront(t, p, nil)
	conn, err := net.Dial("tcp", front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	got := rawRoundTrip(t, conn, "GET / HTTP/1.1\r\nHost: a\r\nTe: trailers\r\n\r\n")
	if v := got.Header.Get("Te"); v != "trailers" {
		t.Errorf("Te = %q, want trailers", v)
	}
}

func TestForwardedIPv6Client(t *testing.T) {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatalf("listen on [::1] (this machine kind has IPv6 loopback): %v", err)
	}
	echo := newEchoHeadersBackend(t)
	p, _ := newTestProxy(t, PoolConfig{Backends: []BackendConfig{echo.config(1)}}, nil)
	front := httptest.NewUnstartedServer(p)
	front.Listener = l
	front.Start()
	t.Cleanup(front.Close)
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	got := rawRoundTrip(t, conn, "GET / HTTP/1.1\r\nHost: [::1]:443\r\n\r\n")
	if v := got.Header.Get("Forwarded"); v != `for="[::1]";host="[::1]:443";proto=http` {
		t.Errorf("Forwarded = %s", v)
	}
	if v := got.Header.Get("X-Forwarded-For"); v != "::1" {
		t.Errorf("X-Forwarded-For = %s", v)
	}
}

func TestForwardedValue(t *testing.T) {
	for _, tc := range []struct {
		remote, host string
		tls          bool
		want         string
	}{
		{"192.0.2.60:4711", "example.com", false, "for=192.0.2.60;host=example.com;proto=http"},
		{"192.0.2.60:4711", "example.com", true, "for=192.0.2.60;host=example.com;proto=https"},
		{"[2001:db8:cafe::17]:4711", "example.com", false, `for="[2001:db8:cafe::17]";host=example.com;proto=http`},
		{"[fe80::1%eth0]:1", "a", false, `for="[fe80::1%eth0]";host=a;proto=http`},
		{"2001:db8::1", "a", false, `for="[2001:db8::1]";host=a;proto=http`}, // no port
		{"@", "a", false, "for=unknown;host=a;proto=http"},                   // unix socket
		{"192.0.2.1:1", "", false, "for=192.0.2.1;proto=http"},
		{"192.0.2.1:1", "[2001:db8::1]:8443", false, `for=192.0.2.1;host="[2001:db8::1]:8443";proto=http`},
		{"192.0.2.1:1", `we"ird\`, false, `for=192.0.2.1;host="we\"ird\\";proto=http`},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr, r.Host = tc.remote, tc.host
		if !tc.tls {
			r.TLS = nil
		} else if r.TLS == nil {
			r.TLS = &tls.ConnectionState{}
		}
		if got := forwarded(r); got != tc.want {
			t.Errorf("forwarded(%s, %s) = %s, want %s", tc.remote, tc.host, got, tc.want)
		}
	}
}

// Only WebSocket may be upgraded; other upgrade requests reach the backend
// as plain requests.
func TestOnlyWebSocketUpgrades(t *testing.T) {
	echo := newEchoHeadersBackend(t)
	p, _ := newTestProxy(t, PoolConfig{Backends: []BackendConfig{echo.config(1)}}, nil)
	front := newFront(t, p, nil)
	conn, err := net.Dial("tcp", front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	got := rawRoundTrip(t, conn, "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"+
		"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
	for _, h := range []string{"Upgrade", "Connection", "Http2-Settings"} {
		if v, ok := got.Header[h]; ok {
			t.Errorf("%s reached the backend: %q", h, v)
		}
	}
	if strings.Contains(got.Header.Get("Connection"), "Upgrade") {
		t.Error("backend was asked to upgrade")
	}
}
