package acmetest_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/tlsedge/tlsedge/internal/acmetest"
)

// TestAutocertTLSALPN01 is the harness working with an unmodified client
// library: autocert.Manager gets a certificate through TLS-ALPN-01, which
// it always tries first, served on the CA's TLSPort.
func TestAutocertTLSALPN01(t *testing.T) {
	t.Parallel()
	const name = "a.example.test"
	ca := acmetest.Start(t, acmetest.Options{})

	m := &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		HostPolicy: autocert.HostWhitelist(name),
		Client:     &acme.Client{DirectoryURL: ca.DirectoryURL(), HTTPClient: ca.HTTPClient(), UserAgent: "acmetest-test"},
	}
	// Count the validation handshakes, to prove Pebble really connected.
	var alpnHellos atomic.Int64
	cfg := m.TLSConfig()
	getCert := cfg.GetCertificate
	cfg.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if slices.Contains(h.SupportedProtos, acme.ALPNProto) {
			alpnHellos.Add(1)
		}
		return getCert(h)
	}
	ln, err := net.Listen("tcp", ca.TLSAddr())
	if err != nil {
		t.Fatalf("listen on the TLS-ALPN-01 port: %v", err)
	}
	srv := &http.Server{TLSConfig: cfg, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })

	hello := &tls.ClientHelloInfo{
		ServerName:       name,
		SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
		SupportedCurves:  []tls.CurveID{tls.CurveP256},
		CipherSuites:     []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
	}
	type result struct {
		cert *tls.Certificate
		err  error
	}
	done := make(chan result, 1)
	go func() {
		c, err := m.GetCertificate(hello)
		done <- result{c, err}
	}()
	var res result
	select {
	case res = <-done:
	case <-time.After(issueTimeout):
		t.Fatalf("autocert: no certificate after %s", issueTimeout)
	}
	if res.err != nil {
		t.Fatalf("autocert: %v", res.err)
	}

	chain := make([]*x509.Certificate, len(res.cert.Certificate))
	for i, der := range res.cert.Certificate {
		if chain[i], err = x509.ParseCertificate(der); err != nil {
			t.Fatal(err)
		}
	}
	verify(t, chain, ca.Roots(t), name)
	if n := alpnHellos.Load(); n == 0 {
		t.Errorf("no acme-tls/1 handshake reached %s: validation did not happen", ca.TLSAddr())
	}
	if got := ca.Orders(); got != 1 {
		t.Errorf("Orders() = %d, want 1", got)
	}
	if got := ca.OrderedNames(); !slices.Equal(got, []string{name}) {
		t.Errorf("OrderedNames() = %q, want [%q]", got, name)
	}
	serials := ca.WaitIssued(t, 1, 5*time.Second)
	if !slices.Equal(serials, []string{acmetest.Serial(chain[0])}) {
		t.Errorf("Issued() = %q, want [%q]", serials, acmetest.Serial(chain[0]))
	}
	if got := ca.NewOrders(); len(got) != 1 || got[0].Profile != "default" || got[0].ID == "" {
		t.Errorf("NewOrders() = %+v, want one order with profile default", got)
	}
}

// TestHTTP01ShortLived obtains certificates through HTTP-01 on the CA's
// HTTPPort and checks their lifetime, from the default profile and from one
// the order names. (An order naming no profile on the second CA would get
// either lifetime: Pebble picks among profiles at random.)
func TestHTTP01ShortLived(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		opts     acmetest.Options
		profile  string        // named in the order, "" for none
		lifetime time.Duration // NotAfter-NotBefore, which Pebble makes validity-1s
		applied  string        // the profile Pebble reports
	}{
		{"default.example.test", acmetest.Options{ValidityPeriod: time.Minute}, "", 59 * time.Second, "default"},
		{"tiny.example.test", acmetest.Options{ValidityPeriod: time.Minute, Profiles: map[string]time.Duration{"tiny": 30 * time.Second}},
			"tiny", 29 * time.Second, "tiny"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ca := acmetest.Start(t, tc.opts)
			srv := serveHTTP01(t, ca)
			var opts []acme.OrderOption
			if tc.profile != "" {
				opts = append(opts, acme.WithOrderIssuanceProfile(acme.ProfileName(tc.profile)))
			}
			chain := obtainHTTP01(t, newClient(t, ca, nil), srv, tc.name, opts...)
			verify(t, chain, ca.Roots(t), tc.name)
			if srv.hits.Load() == 0 {
				t.Errorf("no HTTP-01 request reached %s: validation did not happen", ca.HTTPAddr())
			}
			leaf := chain[0]
			if got := leaf.NotAfter.Sub(leaf.NotBefore); got != tc.lifetime {
				t.Errorf("lifetime %s, want %s", got, tc.lifetime)
			}
			serials := ca.WaitIssued(t, 1, 5*time.Second)
			if !slices.Equal(serials, []string{acmetest.Serial(leaf)}) {
				t.Errorf("Issued() = %q, want [%q]", serials, acmetest.Serial(leaf))
			}
			if got := ca.Orders(); got != 1 {
				t.Errorf("Orders() = %d, want 1", got)
			}
			if o := ca.NewOrders(); len(o) != 1 || !slices.Equal(o[0].Names, []string{tc.name}) || o[0].Profile != tc.applied {
				t.Errorf("NewOrders() = %+v, want one for [%s] with profile %s", o, tc.name, tc.applied)
			}
			assertCertStatus(t, ca, acmetest.Serial(leaf), "Valid")
		})
	}
}

// assertCertStatus asks the management API about serial.
func assertCertStatus(t *testing.T, ca *acmetest.CA, serial, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ca.ManagementURL()+"/cert-status-by-serial/"+serial, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ca.HTTPClient().Do(req)
	if err != nil {
		t.Fatalf("cert status: %v", err)
	}
	defer resp.Body.Close()
	var st struct{ Status, Serial string }
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("cert status of %s (%s): %v", serial, resp.Status, err)
	}
	if st.Status != want {
		t.Errorf("cert status of %s = %q, want %q", serial, st.Status, want)
	}
}
