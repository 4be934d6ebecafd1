package tlsedge

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/upstream"
)

// The frontend end to end: PROXY protocol on the listener, forwarding
// headers, per-address connection and handshake limits, global and
// per-app lists and rates. Clients are told apart by their loopback
// source address (dialFrom).

// feGateway is a gateway with the given frontend serving two apps,
// fe.example.com and other.example.com; app edits the first.
func feGateway(t *testing.T, fe config.Frontend, app func(*config.App)) (*gateway, *backend, *backend) {
	t.Helper()
	be, other := startBackend(t, "fe"), startBackend(t, "other")
	a := config.App{Hosts: []string{"fe.example.com"}, Backends: []config.Backend{{Addr: be.addr()}}}
	if app != nil {
		app(&a)
	}
	g := startGateway(t, &config.Config{Frontend: fe, Apps: []config.App{a,
		{Hosts: []string{"other.example.com"}, Backends: []config.Backend{{Addr: other.addr()}}}}})
	return g, be, other
}

// feDial opens a TLS connection from src for host, writing pre (a PROXY
// header, say) before the handshake.
func feDial(g *gateway, src, host string, pre []byte) (*tls.Conn, error) {
	nc, err := dialFrom(src, g.srv.TLSAddr().String())
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
	if len(pre) > 0 {
		if _, err := nc.Write(pre); err != nil {
			nc.Close()
			return nil, err
		}
	}
	tc := tls.Client(nc, &tls.Config{ServerName: host, RootCAs: g.roots, NextProtos: []string{"http/1.1"}})
	if err := tc.Handshake(); err != nil {
		nc.Close()
		return nil, err
	}
	return tc, nil
}

// feGet sends GET path on c (kept alive) with extra header lines.
func feGet(c *tls.Conn, host, path string, hdr ...string) (*http.Response, error) {
	req := "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\n"
	for _, h := range hdr {
		req += h + "\r\n"
	}
	if _, err := c.Write([]byte(req + "\r\n")); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "GET"})
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	return resp, nil
}

// feRequest is one request on a new connection from src.
func feRequest(g *gateway, src, host, path string, pre []byte, hdr ...string) (*http.Response, error) {
	c, err := feDial(g, src, host, pre)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return feGet(c, host, path, hdr...)
}

func feMust(t *testing.T, what string, resp *http.Response, err error, status int) *http.Response {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if resp.StatusCode != status {
		t.Fatalf("%s: %d, want %d", what, resp.StatusCode, status)
	}
	return resp
}

// tcpAddr is a TCP address for a PROXY header.
func tcpAddr(s string) *net.TCPAddr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }

// feGateCount is what the gate counts for ip: open connections and
// handshakes in progress.
func feGateCount(g *gateway, ip string) (conns, handshakes int) {
	a := netip.MustParseAddr(ip)
	s := g.srv.gate.counts.shard(a)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.m[a]; e != nil {
		return e.n[countConns], e.n[countHandshakes]
	}
	return 0, 0
}

func TestFrontendProxyProtocol(t *testing.T) {
	g, be, _ := feGateway(t, config.Frontend{TrustedProxies: []string{"127.0.0.1"}}, nil)
	dst := tcpAddr("192.0.2.1:443")
	logged := map[string]string{} // path: the client its access log line must name
	for _, tc := range []struct {
		name, src, client, want string
		header                  func(b []byte, src, dst net.Addr) []byte
	}{
		{"v1 from a trusted proxy", "127.0.0.1", "203.0.113.7:40001", "203.0.113.7", upstream.AppendProxyV1},
		{"v2 from a trusted proxy", "127.0.0.1", "203.0.113.8:40002", "203.0.113.8", upstream.AppendProxyV2},
		{"v2 IPv6 from a trusted proxy", "127.0.0.1", "[2001:db8::9]:40003", "2001:db8::9", upstream.AppendProxyV2},
		{"v1 from an untrusted peer", "127.0.0.5", "203.0.113.7:40004", "127.0.0.5", upstream.AppendProxyV1},
		{"v2 from an untrusted peer", "127.0.0.5", "203.0.113.8:40005", "127.0.0.5", upstream.AppendProxyV2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := dst
			if strings.HasPrefix(tc.client, "[") {
				d = tcpAddr("[2001:db8::1]:443")
			}
			path := "/" + strings.ReplaceAll(tc.name, " ", "-")
			// The client's own X-Forwarded-For is not believed: the PROXY
			// header's source is no trusted proxy.
			resp, err := feRequest(g, tc.src, "fe.example.com", path, tc.header(nil, tcpAddr(tc.client), d), "X-Forwarded-For: 6.6.6.6")
			feMust(t, tc.name, resp, err, 200)
			if got := be.lastHeader("X-Forwarded-For"); got != tc.want {
				t.Errorf("backend saw X-Forwarded-For %q, want %q", got, tc.want)
			}
			logged[path] = tc.want
		})
	}
	// The access log, written in the background, names the same client.
	eventually(t, "the access log lines", func() bool {
		seen := 0
		for _, l := range strings.Split(g.access.String(), "\n") {
			if f := strings.Fields(l); len(f) > 4 {
				if want, ok := logged[strings.TrimSuffix(f[4], `"`)]; ok && f[1] == want {
					seen++
				}
			}
		}
		return seen == len(logged)
	})
	// Keep-alive: the address holds for every request of the connection,
	// and the bytes after the header in the same write are the handshake.
	c, err := feDial(g, "127.0.0.1", "fe.example.com", upstream.AppendProxyV1(nil, tcpAddr("198.18.0.1:5000"), dst))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 3; i++ {
		resp, err := feGet(c, "fe.example.com", "/again")
		feMust(t, "keep-alive", resp, err, 200)
		if got := be.lastHeader("X-Forwarded-For"); got != "198.18.0.1" {
			t.Errorf("request %d: backend saw %q", i, got)
		}
	}
}

// Without trusted proxies nothing is read ahead: a PROXY header is not a
// TLS record, and the connection fails.
func TestFrontendProxyProtocolNotConfigured(t *testing.T) {
	g, be, _ := feGateway(t, config.Frontend{}, nil)
	for name, h := range map[string][]byte{
		"v1": upstream.AppendProxyV1(nil, tcpAddr("203.0.113.7:4000"), tcpAddr("192.0.2.1:443")),
		"v2": upstream.AppendProxyV2(nil, tcpAddr("203.0.113.7:4000"), tcpAddr("192.0.2.1:443")),
	} {
		if resp, err := feRequest(g, "127.0.0.1", "fe.example.com", "/", h); err == nil {
			t.Errorf("%s: %d, want the connection to fail", name, resp.StatusCode)
		}
	}
	resp, err := feRequest(g, "127.0.0.1", "fe.example.com", "/", nil)
	feMust(t, "without a header", resp, err, 200)
	if be.count() != 1 {
		t.Errorf("backend saw %d requests, want 1", be.count())
	}
}

// X-Forwarded-For is believed from trusted proxies only, and the lists
// judge the address it gives.
func TestFrontendForwardedFor(t *testing.T) {
	g, be, other := feGateway(t, config.Frontend{TrustedProxies: []string{"127.0.0.1"}},
		func(a *config.App) { a.Allow = []string{"198.51.100.0/24"} })
	xff := "X-Forwarded-For: 198.51.100.9"

	resp, err := feRequest(g, "127.0.0.1", "fe.example.com", "/trusted", nil, xff)
	feMust(t, "from the trusted proxy", resp, err, 200)
	if got := be.lastHeader("X-Forwarded-For"); got != "198.51.100.9" {
		t.Errorf("backend saw %q, want 198.51.100.9", got)
	}

	resp, err = feRequest(g, "127.0.0.5", "fe.example.com", "/untrusted", nil, xff)
	feMust(t, "from an untrusted peer, allow list", resp, err, http.StatusForbidden)
	if be.count() != 1 {
		t.Errorf("backend saw %d requests, want 1 (the refused one never arrived)", be.count())
	}
	resp, err = feRequest(g, "127.0.0.5", "other.example.com", "/untrusted", nil, xff)
	feMust(t, "from an untrusted peer, no list", resp, err, 200)
	if got := other.lastHeader("X-Forwarded-For"); got != "127.0.0.5" {
		t.Errorf("backend saw %q, want the peer 127.0.0.5", got)
	}
}

func TestFrontendMaxConnsPerIP(t *testing.T) {
	g, be, _ := feGateway(t, config.Frontend{MaxConnsPerIP: 5}, nil)
	var held []*tls.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := 0; i < 5; i++ {
		c, err := feDial(g, "127.0.0.6", "fe.example.com", nil)
		if err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
		held = append(held, c)
		resp, err := feGet(c, "fe.example.com", "/held")
		feMust(t, "connection "+strconv.Itoa(i+1), resp, err, 200)
	}
	if resp, err := feRequest(g, "127.0.0.6", "fe.example.com", "/sixth", nil); err == nil {
		t.Fatalf("6th connection from 127.0.0.6: %d, want it closed", resp.StatusCode)
	}
	if be.count() != 5 {
		t.Errorf("backend saw %d requests, want 5", be.count())
	}
	if g.srv.gate.refusedConns.Load() == 0 {
		t.Error("refusedConns not counted")
	}
	resp, err := feRequest(g, "127.0.0.7", "fe.example.com", "/other-client", nil)
	feMust(t, "another address", resp, err, 200)
	// The held connections still work.
	resp, err = feGet(held[0], "fe.example.com", "/held")
	feMust(t, "a held connection", resp, err, 200)

	for _, c := range held {
		c.Close()
	}
	held = nil
	eventually(t, "a new connection from 127.0.0.6 once the 5 closed", func() bool {
		resp, err := feRequest(g, "127.0.0.6", "fe.example.com", "/after", nil)
		return err == nil && resp.StatusCode == 200
	})
	eventually(t, "the gate's table empty", func() bool { return g.srv.gate.counts.size() == 0 })
}

func TestFrontendMaxHandshakesPerIP(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted []string // PROXY headers read: idle connections wait for a first byte
	}{
		{"no trusted proxies", nil},
		{"with trusted proxies", []string{"127.0.0.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, _, _ := feGateway(t, config.Frontend{MaxHandshakesPerIP: 3, TrustedProxies: tc.trusted}, nil)
			var idle []net.Conn
			defer func() {
				for _, c := range idle {
					c.Close()
				}
			}()
			for i := 0; i < 3; i++ {
				c, err := dialFrom("127.0.0.8", g.srv.TLSAddr().String())
				if err != nil {
					t.Fatal(err)
				}
				idle = append(idle, c)
			}
			eventually(t, "3 handshakes in progress from 127.0.0.8", func() bool {
				_, hs := feGateCount(g, "127.0.0.8")
				return hs == 3
			})
			if resp, err := feRequest(g, "127.0.0.8", "fe.example.com", "/", nil); err == nil {
				t.Fatalf("a 4th handshake from 127.0.0.8: %d, want it closed", resp.StatusCode)
			}
			resp, err := feRequest(g, "127.0.0.9", "fe.example.com", "/", nil)
			feMust(t, "another address", resp, err, 200)

			for _, c := range idle {
				c.Close()
			}
			idle = nil
			eventually(t, "127.0.0.8 served once its idle connections closed", func() bool {
				resp, err := feRequest(g, "127.0.0.8", "fe.example.com", "/", nil)
				return err == nil && resp.StatusCode == 200
			})
			eventually(t, "the gate's table empty", func() bool { return g.srv.gate.counts.size() == 0 })
		})
	}
}

// feClient is an HTTP client whose connections come from src.
func feClient(g *gateway, src string) *http.Client {
	c := g.client(false)
	c.Transport.(*http.Transport).DialContext = func(context.Context, string, string) (net.Conn, error) {
		return dialFrom(src, g.srv.TLSAddr().String())
	}
	return c
}

// Rate limits: a rate of 5 a minute, so that no token comes back while
// the test runs (5/1s would give one back every 200 ms, a race with a
// slow machine): exactly 5 requests pass, the 6th gets 429.
func TestFrontendRateLimit(t *testing.T) {
	for _, tc := range []struct {
		name string
		fe   config.Frontend
		app  func(*config.App)
		// otherLimited: the other app shares the limit (global) or not.
		otherLimited bool
	}{
		{"global", config.Frontend{RateLimit: "5/1m", RateBurst: 5}, nil, true},
		{"per app", config.Frontend{}, func(a *config.App) { a.RateLimit, a.RateBurst = "5/1m", 5 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, be, _ := feGateway(t, tc.fe, tc.app)
			c := feClient(g, "127.0.0.10")
			for i := 1; i <= 5; i++ {
				if resp, _ := get(t, c, "https://fe.example.com/", ""); resp.StatusCode != 200 {
					t.Fatalf("request %d: %d", i, resp.StatusCode)
				}
			}
			resp, _ := get(t, c, "https://fe.example.com/", "")
			if resp.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("6th request: %d, want 429", resp.StatusCode)
			}
			if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
				t.Errorf("Retry-After %q, want a number of seconds >= 1", resp.Header.Get("Retry-After"))
			}
			if be.count() != 5 {
				t.Errorf("backend saw %d requests, want 5", be.count())
			}
			resp, _ = get(t, c, "https://other.example.com/", "")
			if limited := resp.StatusCode == http.StatusTooManyRequests; limited != tc.otherLimited {
				t.Errorf("the same client on the other app: %d", resp.StatusCode)
			}
			if resp, _ := get(t, feClient(g, "127.0.0.11"), "https://fe.example.com/", ""); resp.StatusCode != 200 {
				t.Errorf("another client address: %d", resp.StatusCode)
			}
		})
	}
}

// The frontend's deny list holds for every app, before each app's own.
func TestFrontendDeny(t *testing.T) {
	g, be, other := feGateway(t, config.Frontend{Deny: []string{"127.0.0.12"}},
		func(a *config.App) { a.Allow = []string{"127.0.0.0/8"} })
	denied := feClient(g, "127.0.0.12")
	for _, host := range []string{"fe.example.com", "other.example.com"} {
		if resp, _ := get(t, denied, "https://"+host+"/", ""); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s from a denied address: %d, want 403", host, resp.StatusCode)
		}
		if resp, _ := get(t, feClient(g, "127.0.0.13"), "https://"+host+"/", ""); resp.StatusCode != 200 {
			t.Errorf("%s from another address: %d", host, resp.StatusCode)
		}
	}
	if be.count() != 1 || other.count() != 1 {
		t.Errorf("backends saw %d and %d requests, want 1 each", be.count(), other.count())
	}
}
