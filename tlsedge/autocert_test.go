package tlsedge

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/tlsedge/tlsedge/internal/acmetest"
)

// autocertObtain has a real autocert.Manager obtain a certificate for host
// from ca into cacheDir, answering the challenges on ca's ports, as a Go
// service migrating to tlsedge would have done.
func autocertObtain(t *testing.T, ca *acmetest.CA, cacheDir, host string) *x509.Certificate {
	t.Helper()
	m := &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      autocert.DirCache(cacheDir),
		HostPolicy: autocert.HostWhitelist(host),
		Email:      "ops@tlsedge.test",
		Client:     &acme.Client{DirectoryURL: ca.DirectoryURL(), HTTPClient: ca.HTTPClient()},
	}
	hl, err := net.Listen("tcp", ca.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: m.HTTPHandler(nil)}
	go hs.Serve(hl) //nolint:errcheck // closed below
	tl, err := tls.Listen("tcp", ca.TLSAddr(), m.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	ts := &http.Server{}
	go ts.Serve(tl) //nolint:errcheck // closed below
	defer func() {
		hs.Close()
		ts.Close()
	}()
	// An ECDSA-capable hello, so autocert stores its ECDSA certificate.
	cert, err := m.GetCertificate(&tls.ClientHelloInfo{
		ServerName:       host,
		SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
		SupportedCurves:  []tls.CurveID{tls.CurveP256},
		CipherSuites:     []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
	})
	if err != nil {
		t.Fatalf("autocert: %v", err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// TestImportAutocert: a certificate autocert obtained is served by tlsedge
// after --import-autocert, and no new order is placed.
func TestImportAutocert(t *testing.T) {
	ca := acmetest.Start(t, acmetest.Options{})
	dir := t.TempDir()
	leaf := autocertObtain(t, ca, dir, shopHost)
	if ca.Orders() != 1 {
		t.Fatalf("autocert placed %d orders", ca.Orders())
	}

	be := startBackend(t, "b1")
	cfg := acmeConfig(ca, be.addr())
	cfg.TLS.ImportAutocert = dir
	g := startGateway(t, cfg)
	got, body, err := tlsGet(ca.TLSAddr(), shopHost, ca.Roots(t))
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if serial(got) != serial(leaf) || body != "b1 /hello" {
		t.Errorf("served serial %s (body %q), autocert's is %s", serial(got), body, serial(leaf))
	}
	waitLog(t, g, 5*time.Second, "autocert import: imported "+shopHost, "serial "+serial(leaf))
	if n := ca.Orders(); n != 1 {
		t.Errorf("%d orders after the import, want autocert's 1", n)
	}
}
