package tlsedge

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/internal/acmetest"
)

// The ACME tests run tlsedge against a real Pebble CA on loopback, with
// real HTTP-01 and TLS-ALPN-01 validation: Pebble connects to the ports
// tlsedge listens on.

const shopHost = "shop.tlsedge.test"

// acmeConfig is one app on shopHost with certificates from ca, listening
// where Pebble validates.
func acmeConfig(ca *acmetest.CA, backendAddr string) *config.Config {
	return acmeConfigFor(ca, backendAddr, shopHost)
}

// acmeConfigFor is acmeConfig for another host name. Tests that run in
// parallel need their own names: certmagic keeps the challenges being
// solved in one map per process, by name.
func acmeConfigFor(ca *acmetest.CA, backendAddr, host string) *config.Config {
	return &config.Config{
		Listen:     ca.TLSAddr(),
		HTTPListen: ca.HTTPAddr(),
		TLS: config.TLS{ACME: config.ACME{
			Email:  "ops@tlsedge.test",
			CA:     ca.DirectoryURL(),
			CARoot: ca.APIRootFile(),
		}},
		Apps: []config.App{{Hosts: []string{host}, Backends: []config.Backend{{Addr: backendAddr}}}},
	}
}

// tlsGet does one handshake to addr with SNI host, trusting only roots,
// and one GET over it. It returns the leaf served and the body.
func tlsGet(addr, host string, roots *x509.CertPool) (*x509.Certificate, string, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: host, RootCAs: roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		return nil, "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	leaf := conn.ConnectionState().PeerCertificates[0]
	fmt.Fprintf(conn, "GET /hello HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return leaf, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return leaf, string(body), err
}

// handshakeLeaf only completes a handshake and returns the served leaf.
func handshakeLeaf(addr, host string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: host, RootCAs: roots})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

func serial(c *x509.Certificate) string { return acmetest.Serial(c) }

// waitLog polls the gateway's log for a line containing every part.
func waitLog(t *testing.T, g *gateway, timeout time.Duration, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, line := range strings.Split(g.logs.String(), "\n") {
			if containsAll(line, parts...) {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q within %v", parts, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// obtainVia runs one challenge type only (the other disabled) and checks
// the certificate is served, trusted by Pebble's root alone, and ordered
// once.
func obtainVia(t *testing.T, disable func(*config.Config)) {
	ca := acmetest.Start(t, acmetest.Options{})
	be := startBackend(t, "b1")
	cfg := acmeConfig(ca, be.addr())
	disable(cfg)
	g := startGateway(t, cfg)

	// The first handshake waits for the order (handshake_wait) instead of
	// failing at once.
	leaf, body, err := tlsGet(ca.TLSAddr(), shopHost, ca.Roots(t))
	if err != nil {
		t.Fatalf("first handshake: %v", err)
	}
	if body != "b1 /hello" {
		t.Errorf("body %q", body)
	}
	if !slices.Contains(leaf.DNSNames, shopHost) {
		t.Errorf("leaf names %v", leaf.DNSNames)
	}
	if got := ca.Issued(); !slices.Contains(got, serial(leaf)) {
		t.Errorf("served serial %s, Pebble issued %v", serial(leaf), got)
	}
	if n := ca.Orders(); n != 1 {
		t.Errorf("%d orders, want 1", n)
	}
	line := waitLog(t, g, 5*time.Second, "certificate obtained", shopHost, ca.DirectoryURL())
	t.Logf("log: %s", line)
	// The handshake came before the certificate (the order takes hundreds
	// of milliseconds, the handshake one) and was held, not refused.
	waitLog(t, g, time.Second, "handshake waits for the certificate being ordered", shopHost)
}

func TestACMEHTTP01(t *testing.T) {
	obtainVia(t, func(c *config.Config) { c.TLS.ACME.DisableTLSALPN01 = true })
}

func TestACMETLSALPN01(t *testing.T) {
	// No plain-HTTP listener at all: only TLS-ALPN-01 can succeed.
	obtainVia(t, func(c *config.Config) { c.TLS.ACME.DisableHTTP01 = true; c.HTTPListen = config.Off })
}

// A CA that requires external account binding: the right key gets a
// certificate, a wrong one a clear failure.
func TestACMEExternalAccountBinding(t *testing.T) {
	const kid, hmac = "kid-tlsedge", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
	ca := acmetest.Start(t, acmetest.Options{EAB: map[string]string{kid: hmac}})
	be := startBackend(t, "b1")
	cfg := acmeConfig(ca, be.addr())
	cfg.TLS.ACME.EABKeyID, cfg.TLS.ACME.EABHMAC = kid, hmac
	startGateway(t, cfg)
	if _, err := handshakeLeaf(ca.TLSAddr(), shopHost, ca.Roots(t)); err != nil {
		t.Fatalf("with the right EAB key: %v", err)
	}

	ca2 := acmetest.Start(t, acmetest.Options{EAB: map[string]string{kid: hmac}})
	cfg2 := acmeConfig(ca2, be.addr())
	cfg2.TLS.ACME.EABKeyID, cfg2.TLS.ACME.EABHMAC = "kid-unknown", hmac
	g2 := startGateway(t, cfg2)
	line := waitLog(t, g2, 10*time.Second, "certificate order failed", shopHost, "'kid' references a key that is not known")
	t.Logf("wrong key: %s", line)
	if ca2.Orders() != 0 {
		t.Errorf("%d orders without a valid account", ca2.Orders())
	}
}

// handshakeLoop handshakes every interval until stop returns true or the
// timeout passes, and returns the serials seen and every failure.
func handshakeLoop(addr, host string, roots func() *x509.CertPool, interval, timeout time.Duration, stop func(serials []string) bool) (serials []string, failures []error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		leaf, err := handshakeLeaf(addr, host, roots())
		if err != nil {
			failures = append(failures, err)
		} else if s := serial(leaf); len(serials) == 0 || serials[len(serials)-1] != s {
			serials = append(serials, s)
		}
		if stop(serials) {
			break
		}
		time.Sleep(interval)
	}
	return serials, failures
}

// Short-lived certificates are renewed and the new one served without a
// restart and without one failed handshake in between.
func TestACMERenewal(t *testing.T) {
	t.Parallel() // mostly waiting for the certificate to age; own CA and ports
	ca := acmetest.Start(t, acmetest.Options{ValidityPeriod: 40 * time.Second})
	be := startBackend(t, "b1")
	const host = "renew.tlsedge.test"
	g := startGatewayWith(t, acmeConfigFor(ca, be.addr(), host), Options{RenewCheckInterval: time.Second})
	roots := ca.Roots(t)
	serials, failures := handshakeLoop(ca.TLSAddr(), host, func() *x509.CertPool { return roots }, 200*time.Millisecond, 60*time.Second,
		func(s []string) bool { return len(s) >= 2 })
	if len(failures) > 0 {
		t.Errorf("%d failed handshakes, first: %v", len(failures), failures[0])
	}
	if len(serials) < 2 {
		t.Fatalf("served serials %v: no renewal within 60s", serials)
	}
	waitLog(t, g, 5*time.Second, "certificate renewed", host)
	if issued := ca.Issued(); !slices.Contains(issued, serials[1]) {
		t.Errorf("renewed serial %s not issued by Pebble (%v)", serials[1], issued)
	}
}

// With the CA down (the Pebble process stopped, its port closed), tlsedge
// serves the certificate it has, logs why the renewal failed, and renews
// once the CA is back.
func TestACMECADown(t *testing.T) {
	t.Parallel() // mostly waiting for certmagic's retry; own CA and ports
	ca := acmetest.Start(t, acmetest.Options{ValidityPeriod: 100 * time.Second})
	be := startBackend(t, "b1")
	const host = "down.tlsedge.test"
	cfg := acmeConfigFor(ca, be.addr(), host)
	// Renewal is due 15 s after issuance; certmagic retries a failed
	// renewal after one minute, so the certificate outlives the outage.
	cfg.TLS.ACME.RenewalWindowRatio = 0.85
	g := startGatewayWith(t, cfg, Options{RenewCheckInterval: time.Second})
	roots := ca.Roots(t)
	first, err := handshakeLeaf(ca.TLSAddr(), host, roots)
	if err != nil {
		t.Fatalf("first handshake: %v", err)
	}
	ca.Pause(t)

	resumed := false
	serials, failures := handshakeLoop(ca.TLSAddr(), host, func() *x509.CertPool { return roots }, 250*time.Millisecond, 95*time.Second,
		func(s []string) bool {
			if !resumed && strings.Contains(g.logs.String(), "certificate renewal failed") {
				ca.Resume(t)
				resumed = true
			}
			return len(s) >= 2
		})
	if !resumed {
		ca.Resume(t)
		t.Fatal("no renewal failure logged while the CA was down")
	}
	line := waitLog(t, g, time.Second, "certificate renewal failed", host, "connection refused")
	t.Logf("while down: %s", line)
	if len(failures) > 0 {
		t.Errorf("%d failed handshakes while the CA was down, first: %v", len(failures), failures[0])
	}
	if len(serials) < 2 || serials[0] != serial(first) {
		t.Fatalf("served serials %v (first %s): no renewal after the CA came back", serials, serial(first))
	}
	waitLog(t, g, 5*time.Second, "certificate renewed", host)
}

// An unreachable CA: one clear error line, the other apps served, and a
// handshake for the ACME host refused with the order's reason.
func TestACMEOrderFailureEndsWait(t *testing.T) {
	be := startBackend(t, "b1")
	cfg := &config.Config{
		TLS: config.TLS{ACME: config.ACME{Email: "ops@tlsedge.test", CA: "https://127.0.0.1:1/dir", HandshakeWait: config.Duration(20 * time.Second)}},
		Apps: []config.App{
			{Hosts: []string{shopHost}, Backends: []config.Backend{{Addr: be.addr()}}},
			{Hosts: []string{"intranet.tlsedge.test"}, Backends: []config.Backend{{Addr: be.addr()}}, TLS: config.TLSInternal},
		},
	}
	g := startGateway(t, cfg)
	line := waitLog(t, g, 10*time.Second, "certificate order failed", shopHost, "127.0.0.1:1")
	t.Logf("log: %s", line)
	// The internal app is served all along.
	resp, body := get(t, g.client(true), "https://intranet.tlsedge.test/x", "")
	if resp.StatusCode != 200 || body != "b1 /x" {
		t.Errorf("internal app: %d %q", resp.StatusCode, body)
	}
	// The ACME host fails its handshake at once (nothing is being ordered
	// until certmagic's next retry), and the server says why.
	_, err := handshakeLeaf(g.srv.TLSAddr().String(), shopHost, x509.NewCertPool())
	if err == nil {
		t.Fatal("handshake for a host without a certificate succeeded")
	}
	waitLog(t, g, 5*time.Second, "TLS handshake failed", "no certificate yet for "+shopHost, "the last order failed", "connection refused")
	if n := strings.Count(g.logs.String(), "level=error"); n != 1 {
		t.Errorf("%d error lines, want the one order failure:\n%s", n, g.logs.String())
	}
}
