package tlsedge

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/config"
)

func TestRoutingEndToEnd(t *testing.T) {
	shop, api, v2, wild := startBackend(t, "shop"), startBackend(t, "api"), startBackend(t, "v2"), startBackend(t, "wild")
	g := startGateway(t, &config.Config{Apps: []config.App{
		{Hosts: []string{"shop.example.com"}, Backends: []config.Backend{{Addr: shop.addr()}}},
		{Hosts: []string{"example.com"}, Path: "/api", Backends: []config.Backend{{Addr: api.addr()}}},
		{Hosts: []string{"example.com"}, Path: "/api/v2", Backends: []config.Backend{{Addr: v2.addr()}}},
		{Hosts: []string{"*.example.com"}, Backends: []config.Backend{{Addr: wild.addr()}}},
	}})
	c := g.client(false)
	// Unknown hosts: the handshake uses a known name (a client reaching an
	// unknown name would see the default certificate and refuse it), and
	// the Host header names another site.
	tests := []struct {
		url, host string
		status    int
		body      string
	}{
		{"https://shop.example.com/cart?id=1", "", 200, "shop /cart"},
		{"https://example.com/api/users", "", 200, "api /api/users"},
		{"https://example.com/api", "", 200, "api /api"},
		{"https://example.com/api/v2/x", "", 200, "v2 /api/v2/x"},
		{"https://example.com/apix", "", 404, "nothing at this path"},
		{"https://www.example.com/", "", 200, "wild /"},
		{"https://shop.example.com/", "a.b.example.com", 421, "No site here"},
		{"https://shop.example.com/", "other.org", 421, "No site here"},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest("GET", tt.url, nil)
		if tt.host != "" {
			req.Host = tt.host
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body := string(b)
		if resp.StatusCode != tt.status || !strings.Contains(body, tt.body) {
			t.Errorf("GET %s = %d %q; want %d containing %q", tt.url, resp.StatusCode, body, tt.status, tt.body)
		}
	}
}

func TestRedirectToHTTPS(t *testing.T) {
	b := startBackend(t, "b")
	g := startGateway(t, &config.Config{Apps: []config.App{{Hosts: []string{"shop.example.com"}, Backends: []config.Backend{{Addr: b.addr()}}}}})
	httpAddr := g.srv.HTTPAddr().String()
	_, tlsPort, _ := net.SplitHostPort(g.srv.TLSAddr().String())
	c := &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, httpAddr)
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	for _, tt := range []struct{ method, url, want string }{
		{"GET", "http://shop.example.com/cart/items?id=7&x=%20y", "https://shop.example.com:" + tlsPort + "/cart/items?id=7&x=%20y"},
		{"POST", "http://SHOP.example.com:80/login", "https://shop.example.com:" + tlsPort + "/login"},
		{"GET", "http://[::1]/", "https://[::1]:" + tlsPort + "/"},
	} {
		req, _ := http.NewRequest(tt.method, tt.url, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != tt.want {
			t.Errorf("%s %s = %d Location %q; want 308 %q", tt.method, tt.url, resp.StatusCode, resp.Header.Get("Location"), tt.want)
		}
	}
	if b.count() != 0 {
		t.Errorf("plain HTTP reached the backend %d times", b.count())
	}
}

func TestWeightedDistribution(t *testing.T) {
	a, b, c := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")
	g := startGateway(t, &config.Config{Apps: []config.App{{Hosts: []string{"shop.example.com"}, Backends: []config.Backend{
		{Addr: a.addr(), Weight: 1}, {Addr: b.addr(), Weight: 2}, {Addr: c.addr(), Weight: 3},
	}}}})
	cl := g.client(false)
	for range 600 {
		resp, _ := get(t, cl, "https://shop.example.com/", "")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if a.count() != 100 || b.count() != 200 || c.count() != 300 {
		t.Errorf("weights 1:2:3 over 600 requests gave %d:%d:%d, want 100:200:300", a.count(), b.count(), c.count())
	}
}

func TestTLSPolicy(t *testing.T) {
	b := startBackend(t, "b")
	g := startGateway(t, &config.Config{Apps: []config.App{{Hosts: []string{"shop.example.com"}, Backends: []config.Backend{{Addr: b.addr()}}}}})
	addr := g.srv.TLSAddr().String()
	dial := func(c *tls.Config) (tls.ConnectionState, error) {
		c.ServerName = "shop.example.com"
		c.RootCAs = g.roots
		d := &net.Dialer{Timeout: 5 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", addr, c)
		if err != nil {
			return tls.ConnectionState{}, err
		}
		defer conn.Close()
		return conn.ConnectionState(), nil
	}
	st, err := dial(&tls.Config{NextProtos: []string{"h2", "http/1.1"}})
	if err != nil || st.Version != tls.VersionTLS13 || st.NegotiatedProtocol != "h2" {
		t.Errorf("default client: %v, version %x, ALPN %q; want TLS 1.3 and h2", err, st.Version, st.NegotiatedProtocol)
	}
	if st, err := dial(&tls.Config{NextProtos: []string{"http/1.1"}}); err != nil || st.NegotiatedProtocol != "http/1.1" {
		t.Errorf("http/1.1 client: %v, ALPN %q", err, st.NegotiatedProtocol)
	}
	for _, curve := range []tls.CurveID{tls.X25519, tls.CurveP256} {
		if _, err := dial(&tls.Config{CurvePreferences: []tls.CurveID{curve}}); err != nil {
			t.Errorf("curve %v refused: %v", curve, err)
		}
	}
	if _, err := dial(&tls.Config{CurvePreferences: []tls.CurveID{tls.CurveP384}}); err == nil {
		t.Error("P-384 only client was accepted; want X25519 and P-256 only")
	}
	if st, err := dial(&tls.Config{MaxVersion: tls.VersionTLS12}); err != nil || st.Version != tls.VersionTLS12 {
		t.Errorf("TLS 1.2 client: %v", err)
	}
	if _, err := dial(&tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("TLS 1.1 was accepted")
	}
	// CBC suites (no AEAD) are refused even over TLS 1.2.
	if _, err := dial(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}); err == nil {
		t.Error("a CBC suite was accepted")
	}
	if st, err := dial(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}}); err != nil || st.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 {
		t.Errorf("ChaCha20-Poly1305 over TLS 1.2: %v", err)
	}
}

func TestBothProtocolsProxy(t *testing.T) {
	b := startBackend(t, "b")
	g := startGateway(t, &config.Config{Apps: []config.App{{Hosts: []string{"shop.example.com"}, Backends: []config.Backend{{Addr: b.addr()}}}}})
	for _, h2 := range []bool{false, true} {
		c := g.client(false)
		tr := c.Transport.(*http.Transport)
		tr.ForceAttemptHTTP2 = h2
		tr.TLSClientConfig.NextProtos = nil
		if !h2 {
			tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
		}
		resp, body := get(t, c, "https://shop.example.com/p", "")
		want := 1
		if h2 {
			want = 2
		}
		if resp.ProtoMajor != want || body != "b /p" || resp.Header.Get("X-Backend") != "b" {
			t.Errorf("got %s %q; want HTTP/%d and the backend's body", resp.Proto, body, want)
		}
	}
}

// A client that leaves before the backend answers is logged as 499, not
// as a gateway error. Over HTTP/2 the stream reset is seen at once; the
// HTTP/1.1 server does not watch an idle client while the backend thinks
// (no background read per request), so it notices on the response.
func TestClientGoneIsLogged499(t *testing.T) {
	release := make(chan struct{})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer origin.Close()
	defer close(release)
	g := startGateway(t, &config.Config{Apps: []config.App{{Hosts: []string{"slow.example.com"}, Backends: []config.Backend{{Addr: origin.Listener.Addr().String()}}}}})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://slow.example.com/wait", nil)
	go func() {
		time.Sleep(200 * time.Millisecond)
		cancel()
	}()
	c := g.client(false)
	c.Transport.(*http.Transport).ForceAttemptHTTP2 = true
	c.Transport.(*http.Transport).TLSClientConfig.NextProtos = nil
	if _, err := c.Do(req); err == nil {
		t.Fatal("the request succeeded; want it cancelled")
	}
	eventually(t, "a 499 access-log line", func() bool { return strings.Contains(g.access.String(), `"GET slow.example.com /wait" 499`) })
	if strings.Contains(g.logs.String(), "request failed") {
		t.Error("a client leaving was logged as a backend failure")
	}
}
