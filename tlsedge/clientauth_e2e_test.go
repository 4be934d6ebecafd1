package tlsedge

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/internal/testpki"
)

// Client certificates end to end: real TLS clients with and without
// certificates of several CAs, against a gateway with three apps:
//
//	a.mtls.example  client_auth=required, CA "A" with a CRL
//	b.mtls.example  client_auth=optional, CA "B"
//	c.mtls.example  no client certificates
const (
	mtlsHostA = "a.mtls.example"
	mtlsHostB = "b.mtls.example"
	mtlsHostC = "c.mtls.example"
)

type mtlsEnv struct {
	g             *gateway
	caA, caB      *testpki.CA
	stranger      *testpki.CA // trusted by no app
	crlPath       string
	beA, beB, beC *backend
	// alice is a good client of A, mallory one A revoked at start, bob
	// a client of B, eve a client of the stranger CA.
	alice, mallory, bob, eve *testpki.Leaf
}

func startMTLS(t *testing.T) *mtlsEnv {
	t.Helper()
	dir := t.TempDir()
	e := &mtlsEnv{
		caA: testpki.NewCA(t, "CA A"), caB: testpki.NewCA(t, "CA B"), stranger: testpki.NewCA(t, "Stranger CA"),
		beA: startBackend(t, "A"), beB: startBackend(t, "B"), beC: startBackend(t, "C"),
	}
	e.alice = e.caA.Client(t, "alice", "alice.clients.example", "alice2.clients.example")
	e.mallory = e.caA.Client(t, "mallory", "mallory.clients.example")
	e.bob = e.caB.Client(t, "bob", "bob.clients.example")
	e.eve = e.stranger.Client(t, "eve", "eve.clients.example")
	caAFile := testpki.WriteFile(t, dir, "ca-a.pem", e.caA.CertPEM())
	caBFile := testpki.WriteFile(t, dir, "ca-b.pem", e.caB.CertPEM())
	e.crlPath = testpki.WriteFile(t, dir, "a.crl", e.caA.CRL(t, e.mallory.Cert))
	e.g = startGateway(t, &config.Config{Apps: []config.App{
		{Hosts: []string{mtlsHostA}, Backends: []config.Backend{{Addr: e.beA.addr()}},
			Filters: config.Filters{ClientAuth: "required", ClientCA: caAFile, ClientCRL: []string{e.crlPath}}},
		{Hosts: []string{mtlsHostB}, Backends: []config.Backend{{Addr: e.beB.addr()}},
			Filters: config.Filters{ClientAuth: "optional", ClientCA: caBFile}},
		{Hosts: []string{mtlsHostC}, Backends: []config.Backend{{Addr: e.beC.addr()}}},
	}})
	return e
}

// mtlsDo sends one HTTP/1.1 request on a new TLS connection (no session
// resumption) made for sni, with Host: host and the client certificate
// leaf (nil: none). A refused certificate fails the handshake or, in TLS
// 1.3, where the client finishes first, the first read.
func mtlsDo(g *gateway, sni, host, path string, leaf *testpki.Leaf, hdr http.Header, opts ...func(*tls.Config)) (*http.Response, error) {
	cfg := &tls.Config{ServerName: sni, RootCAs: g.roots, NextProtos: []string{"http/1.1"}}
	if leaf != nil {
		cfg.Certificates = []tls.Certificate{leaf.TLS}
	}
	for _, o := range opts {
		o(cfg)
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", g.srv.TLSAddr().String(), cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
	req, err := http.NewRequest("GET", "https://"+host+path, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v // as given: X_Client_Cert_Subject stays underscored
	}
	req.Close = true
	if err := req.Write(c); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	return resp, nil
}

// mtlsAnyName checks the server's chain but not its name: the default
// certificate (no SNI, a catch-all app) is named for another host.
func mtlsAnyName(g *gateway) func(*tls.Config) {
	return func(c *tls.Config) {
		c.InsecureSkipVerify = true
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: g.roots})
			return err
		}
	}
}

// lastHeader is a header of the last request a backend received.
func (b *backend) lastHeader(name string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last == nil {
		return ""
	}
	return b.last.Header.Get(name)
}

func (b *backend) lastRequest() *http.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// mtlsWant checks one request's outcome: a status, or refused (want 0).
func mtlsWant(t *testing.T, what string, resp *http.Response, err error, want int) {
	t.Helper()
	switch {
	case want == 0 && err == nil:
		t.Fatalf("%s: got %d, want the connection refused", what, resp.StatusCode)
	case want != 0 && err != nil:
		t.Fatalf("%s: %v, want %d", what, err, want)
	case want != 0 && resp.StatusCode != want:
		t.Fatalf("%s: got %d, want %d", what, resp.StatusCode, want)
	}
}

// mtlsWaitLog waits for a "client certificate refused" line of host whose
// reason contains reason.
func mtlsWaitLog(t *testing.T, g *gateway, host, reason string) {
	t.Helper()
	eventually(t, "a refusal of "+host+" for "+reason+" in the log", func() bool {
		for _, l := range strings.Split(g.logs.String(), "\n") {
			if strings.Contains(l, "client certificate refused") && strings.Contains(l, "host="+host) &&
				strings.Contains(l, "reason=") && strings.Contains(l, reason) {
				return true
			}
		}
		return false
	})
}

func TestClientAuthRequired(t *testing.T) {
	e := startMTLS(t)
	t.Run("valid certificate", func(t *testing.T) {
		resp, err := mtlsDo(e.g, mtlsHostA, mtlsHostA, "/ok", e.alice, nil)
		mtlsWant(t, "alice", resp, err, 200)
		sum := sha256.Sum256(e.alice.Cert.Raw)
		for h, want := range map[string]string{
			"X-Client-Cert-Subject":     "CN=alice,O=tlsedge tests",
			"X-Client-Cert-San":         "alice.clients.example, alice2.clients.example",
			"X-Client-Cert-Serial":      strings.ToUpper(e.alice.Cert.SerialNumber.Text(16)),
			"X-Client-Cert-Fingerprint": hex.EncodeToString(sum[:]),
			"X-Client-Cert-Verified":    "SUCCESS",
		} {
			if got := e.beA.lastHeader(h); got != want {
				t.Errorf("backend saw %s %q, want %q", h, got, want)
			}
		}
	})
	before := e.beA.count()
	t.Run("no certificate", func(t *testing.T) {
		resp, err := mtlsDo(e.g, mtlsHostA, mtlsHostA, "/refused", nil, nil)
		mtlsWant(t, "no certificate", resp, err, 0)
		// crypto/tls refuses it before tlsedge's verification, with the
		// "certificate required" alert; tlsedge logs the reason.
		if !strings.Contains(err.Error(), "certificate required") && !strings.Contains(err.Error(), "handshake failure") {
			t.Errorf("client saw %v, want the certificate required alert", err)
		}
		eventually(t, "the refusal and its reason in the log", func() bool {
			return strings.Contains(e.g.logs.String(), "client certificate refused") &&
				strings.Contains(e.g.logs.String(), "no client certificate presented")
		})
	})
	for _, tc := range []struct {
		name   string
		leaf   *testpki.Leaf
		reason string
	}{
		{"unknown CA", e.eve, "unknown authority"},
		{"another app's CA", e.bob, "unknown authority"},
		{"revoked", e.mallory, "serial 0x" + strings.ToUpper(e.mallory.Cert.SerialNumber.Text(16)) + " revoked by CRL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := mtlsDo(e.g, mtlsHostA, mtlsHostA, "/refused", tc.leaf, nil)
			mtlsWant(t, tc.name, resp, err, 0)
			mtlsWaitLog(t, e.g, mtlsHostA, tc.reason)
		})
	}
	if n := e.beA.count(); n != before {
		t.Errorf("backend A got %d requests from refused clients", n-before)
	}
}

func TestClientAuthOptional(t *testing.T) {
	e := startMTLS(t)
	resp, err := mtlsDo(e.g, mtlsHostB, mtlsHostB, "/", nil, nil)
	mtlsWant(t, "no certificate", resp, err, 200)
	if v, s := e.beB.lastHeader("X-Client-Cert-Verified"), e.beB.lastHeader("X-Client-Cert-Subject"); v != "NONE" || s != "" {
		t.Errorf("without a certificate the backend saw Verified %q, Subject %q", v, s)
	}
	resp, err = mtlsDo(e.g, mtlsHostB, mtlsHostB, "/", e.bob, nil)
	mtlsWant(t, "bob", resp, err, 200)
	if v, s := e.beB.lastHeader("X-Client-Cert-Verified"), e.beB.lastHeader("X-Client-Cert-Subject"); v != "SUCCESS" || s != "CN=bob,O=tlsedge tests" {
		t.Errorf("with bob's certificate the backend saw Verified %q, Subject %q", v, s)
	}
	// Optional, but a certificate that is presented must verify.
	resp, err = mtlsDo(e.g, mtlsHostB, mtlsHostB, "/", e.alice, nil)
	mtlsWant(t, "a certificate of another CA", resp, err, 0)
	mtlsWaitLog(t, e.g, mtlsHostB, "unknown authority")
	// The app without client_auth asks for nothing and passes nothing.
	resp, err = mtlsDo(e.g, mtlsHostC, mtlsHostC, "/", e.alice, nil)
	mtlsWant(t, "app C", resp, err, 200)
	if v := e.beC.lastHeader("X-Client-Cert-Verified"); v != "NONE" {
		t.Errorf("app C's backend saw Verified %q", v)
	}
}

// Headers a client writes under the X-Client-Cert-* names (any case,
// underscores) never reach a backend with the client's values.
func TestClientAuthForgedHeaders(t *testing.T) {
	e := startMTLS(t)
	forged := http.Header{
		"X-Client-Cert-Subject":     {"CN=admin"},
		"x-client-cert-san":         {"admin.forged.example"},
		"X-Client-Cert-Serial":      {"DEADBEEF"},
		"X_Client_Cert_Fingerprint": {"forgedfingerprint"},
		"X-Client-Cert-Verified":    {"FORGED"},
		"X_client_cert_subject":     {"CN=root"},
	}
	for _, tc := range []struct {
		name   string
		host   string
		leaf   *testpki.Leaf
		be     *backend
		verify string
	}{
		{"required with cert", mtlsHostA, e.alice, e.beA, "SUCCESS"},
		{"optional with cert", mtlsHostB, e.bob, e.beB, "SUCCESS"},
		{"optional without cert", mtlsHostB, nil, e.beB, "NONE"},
		{"none with cert", mtlsHostC, e.alice, e.beC, "NONE"},
		{"none without cert", mtlsHostC, nil, e.beC, "NONE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := mtlsDo(e.g, tc.host, tc.host, "/forged", tc.leaf, forged)
			mtlsWant(t, tc.name, resp, err, 200)
			r := tc.be.lastRequest()
			if r == nil || r.URL.Path != "/forged" {
				t.Fatalf("the backend did not get the request")
			}
			for k, vs := range r.Header {
				for _, v := range vs {
					if strings.Contains(v, "admin") || strings.Contains(v, "root") || v == "DEADBEEF" || v == "forgedfingerprint" || v == "FORGED" {
						t.Errorf("forged %s: %q reached the backend", k, v)
					}
				}
			}
			if v := r.Header.Get("X-Client-Cert-Verified"); v != tc.verify {
				t.Errorf("Verified %q, want %q", v, tc.verify)
			}
		})
	}
}

// A connection made for a host of one policy cannot reach an app of
// another by its Host header: 421, and the app's backend never sees it.
func TestClientAuthMisdirected(t *testing.T) {
	e := startMTLS(t)
	for _, tc := range []struct {
		name, sni string
		leaf      *testpki.Leaf
	}{
		{"no client auth to required", mtlsHostC, e.alice},
		{"no client auth to optional", mtlsHostC, e.bob},
		{"optional to required", mtlsHostB, e.bob},
		{"no SNI to required", "", e.alice},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target, be := mtlsHostA, e.beA
			if strings.HasSuffix(tc.name, "optional") {
				target, be = mtlsHostB, e.beB
			}
			before := be.count()
			resp, err := mtlsDo(e.g, tc.sni, target, "/misdirected", tc.leaf, nil, mtlsAnyName(e.g))
			mtlsWant(t, tc.name, resp, err, http.StatusMisdirectedRequest)
			if be.count() != before {
				t.Errorf("the backend of %s saw a request made on a connection for %q", target, tc.sni)
			}
		})
	}
}

// A changed CRL applies to new connections without a restart. The client
// CA watcher polls every certs.DefaultPollInterval (Options.CertPollInterval
// does not reach it), so this waits up to that and more (eventually's
// bound, 10 s).
func TestClientAuthCRLReload(t *testing.T) {
	e := startMTLS(t)
	// Alice keeps a session: her later connections resume it.
	cache := tls.NewLRUClientSessionCache(4)
	resumed := false
	session := func(c *tls.Config) {
		c.ClientSessionCache = cache
		c.VerifyConnection = func(cs tls.ConnectionState) error { resumed = cs.DidResume; return nil }
	}
	for i := 0; i < 2; i++ {
		resp, err := mtlsDo(e.g, mtlsHostA, mtlsHostA, "/", e.alice, nil, session)
		mtlsWant(t, "alice before", resp, err, 200)
	}
	if !resumed {
		t.Fatal("alice's second connection did not resume her session")
	}
	writeFile(t, e.crlPath, e.caA.CRL(t, e.mallory.Cert, e.alice.Cert))
	eventually(t, "alice refused after the CRL revoked her", func() bool {
		_, err := mtlsDo(e.g, mtlsHostA, mtlsHostA, "/", e.alice, nil)
		return err != nil
	})
	// Her session does not outlive the revocation either.
	resp, err := mtlsDo(e.g, mtlsHostA, mtlsHostA, "/", e.alice, nil, session)
	mtlsWant(t, "alice with her session", resp, err, 0)
	mtlsWaitLog(t, e.g, mtlsHostA, "serial 0x"+strings.ToUpper(e.alice.Cert.SerialNumber.Text(16))+" revoked by CRL")
	// And un-revoking works the same way.
	writeFile(t, e.crlPath, e.caA.CRL(t))
	eventually(t, "mallory accepted once the CRL is empty", func() bool {
		resp, err := mtlsDo(e.g, mtlsHostA, mtlsHostA, "/", e.mallory, nil)
		return err == nil && resp.StatusCode == 200
	})
}

// TLS asks for a certificate per host, so apps sharing a host must agree.
func TestClientAuthConflictingApps(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.WriteFile(t, dir, "ca.pem", testpki.NewCA(t, "CA").CertPEM())
	cfg := &config.Config{Listen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", StateDir: dir, Apps: []config.App{
		{Name: "api", Hosts: []string{"s.mtls.example"}, Path: "/api", Backends: []config.Backend{{Addr: "127.0.0.1:1"}},
			Filters: config.Filters{ClientAuth: "required", ClientCA: ca}},
		{Name: "web", Hosts: []string{"s.mtls.example"}, Backends: []config.Backend{{Addr: "127.0.0.1:1"}}},
	}}
	cfg.Normalize(dir)
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if _, err := New(cfg, Options{Log: logrus.New()}); err == nil || !strings.Contains(err.Error(), "client_auth") {
		t.Fatalf("New: %v, want an error naming client_auth", err)
	}
}

// A wildcard or catch-all app's policy does not leak onto a host of its
// own app, and the catch-all app's policy applies to every host it serves.
func TestClientAuthHostPatterns(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "CA W")
	caFile := testpki.WriteFile(t, dir, "ca.pem", ca.CertPEM())
	wild, open, catchAll := startBackend(t, "wild"), startBackend(t, "open"), startBackend(t, "any")
	g := startGateway(t, &config.Config{Apps: []config.App{
		{Hosts: []string{"*.w.mtls.example"}, Backends: []config.Backend{{Addr: wild.addr()}},
			Filters: config.Filters{ClientAuth: "required", ClientCA: caFile}},
		{Hosts: []string{"open.w.mtls.example"}, Backends: []config.Backend{{Addr: open.addr()}}},
		{Hosts: []string{"*"}, Backends: []config.Backend{{Addr: catchAll.addr()}},
			Filters: config.Filters{ClientAuth: "required", ClientCA: caFile}},
	}})
	leaf := ca.Client(t, "carol")
	for _, tc := range []struct {
		name, host string
		leaf       *testpki.Leaf
		want       int // 0: refused
		be         *backend
	}{
		{"wildcard with cert", "x.w.mtls.example", leaf, 200, wild},
		{"wildcard without cert", "x.w.mtls.example", nil, 0, wild},
		{"exact host of an open app", "open.w.mtls.example", nil, 200, open},
		{"catch-all with cert", "other.mtls.example", leaf, 200, catchAll},
		{"catch-all without cert", "other.mtls.example", nil, 0, catchAll},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.be.count()
			resp, err := mtlsDo(g, tc.host, tc.host, "/", tc.leaf, nil, mtlsAnyName(g))
			mtlsWant(t, tc.name, resp, err, tc.want)
			if got := tc.be.count() - before; (tc.want == 200) != (got == 1) {
				t.Errorf("backend %s got %d requests", tc.be.name, got)
			}
		})
	}
}
