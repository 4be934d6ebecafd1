package tlsedge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/config"
)

// selfSigned makes a self-signed ECDSA certificate for names and returns
// the PEM of the certificate and the key, and the parsed certificate.
func selfSigned(t *testing.T, cn string, names ...string) (certPEM, keyPEM []byte, leaf *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		DNSNames:              names,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ = x509.ParseCertificate(der)
	kder, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), leaf
}

// handshake connects with SNI name and returns the certificate served.
func handshake(t *testing.T, addr, name string) *x509.Certificate {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: name, InsecureSkipVerify: true}) //nolint:gosec // we inspect the certificate ourselves
	if err != nil {
		t.Fatalf("handshake with SNI %q: %v", name, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

func TestStaticCertificatesBySNI(t *testing.T) {
	dir := t.TempDir()
	write := func(stem, cn string, names ...string) {
		c, k, _ := selfSigned(t, cn, names...)
		writeFile(t, filepath.Join(dir, stem+".crt"), c)
		writeFile(t, filepath.Join(dir, stem+".key"), k)
	}
	write("shop", "shop", "shop.example.com")
	write("wild", "wild", "*.example.com")
	write("other", "other", "other.org")
	b := startBackend(t, "b")
	g := startGateway(t, &config.Config{
		TLS: config.TLS{Certs: []config.CertPair{
			{Cert: filepath.Join(dir, "shop.crt"), Key: filepath.Join(dir, "shop.key")},
			{Cert: filepath.Join(dir, "wild.crt"), Key: filepath.Join(dir, "wild.key")},
			{Cert: filepath.Join(dir, "other.crt"), Key: filepath.Join(dir, "other.key")},
		}},
		Apps: []config.App{
			{Hosts: []string{"shop.example.com", "*.example.com", "other.org"}, Backends: []config.Backend{{Addr: b.addr()}}},
		},
	})
	addr := g.srv.TLSAddr().String()
	for _, tt := range []struct{ sni, want string }{
		{"shop.example.com", "shop"}, // exact beats wildcard
		{"SHOP.example.com", "shop"}, // case-insensitive
		{"www.example.com", "wild"},  // wildcard
		{"a.b.example.com", "shop"},  // wildcard covers one label: unknown -> default (first)
		{"other.org", "other"},       // exact
		{"unknown.net", "shop"},      // unknown -> default
		{"", "shop"},                 // no SNI -> default
	} {
		if got := handshake(t, addr, tt.sni).Subject.CommonName; got != tt.want {
			t.Errorf("SNI %q served %q, want %q", tt.sni, got, tt.want)
		}
	}
	if g.srv.snap.Load().ca != nil {
		t.Error("a local CA was created although files cover every host")
	}
}

func TestCertificateFileReplacedWhileServing(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "shop.crt"), filepath.Join(dir, "shop.key")
	c1, k1, leaf1 := selfSigned(t, "first", "shop.example.com")
	writeFile(t, certFile, c1)
	writeFile(t, keyFile, k1)
	b := startBackend(t, "b")
	g := startGateway(t, &config.Config{
		TLS:  config.TLS{Certs: []config.CertPair{{Cert: certFile, Key: keyFile}}},
		Apps: []config.App{{Hosts: []string{"shop.example.com"}, Backends: []config.Backend{{Addr: b.addr()}}}},
	})
	roots := x509.NewCertPool()
	roots.AddCert(leaf1)
	g.roots = roots
	old := g.client(false) // keeps its connection open across the change
	if resp, _ := get(t, old, "https://shop.example.com/", ""); resp.TLS.PeerCertificates[0].Subject.CommonName != "first" {
		t.Fatal("not serving the first certificate")
	}

	// A broken replacement is logged and the old certificate keeps serving.
	writeFile(t, certFile, []byte("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n"))
	eventually(t, "a log line about the broken file", func() bool {
		return strings.Contains(g.logs.String(), "shop.crt") && strings.Contains(g.logs.String(), "level=warning")
	})
	if got := handshake(t, g.srv.TLSAddr().String(), "shop.example.com").Subject.CommonName; got != "first" {
		t.Fatalf("after a broken file the server serves %q, want the old certificate", got)
	}

	// A good replacement serves new handshakes, without a restart.
	c2, k2, leaf2 := selfSigned(t, "second", "shop.example.com")
	writeFile(t, keyFile, k2)
	writeFile(t, certFile, c2)
	eventually(t, "the new certificate", func() bool {
		return handshake(t, g.srv.TLSAddr().String(), "shop.example.com").Subject.CommonName == "second"
	})
	// The established connection was not dropped.
	resp, body := get(t, old, "https://shop.example.com/still", "")
	if resp.StatusCode != 200 || body != "b /still" || resp.TLS.PeerCertificates[0].Subject.CommonName != "first" {
		t.Errorf("old connection: %d %q (cert %s)", resp.StatusCode, body, resp.TLS.PeerCertificates[0].Subject.CommonName)
	}
	roots.AddCert(leaf2)
	if resp, _ := get(t, g.client(true), "https://shop.example.com/", ""); resp.TLS.PeerCertificates[0].Subject.CommonName != "second" {
		t.Error("a new client does not verify the new certificate")
	}
}

func TestLocalCADefault(t *testing.T) {
	b := startBackend(t, "b")
	state := t.TempDir()
	g := startGateway(t, &config.Config{StateDir: state, Apps: []config.App{{Hosts: []string{"shop.example.com", "localhost", "127.0.0.1"}, Backends: []config.Backend{{Addr: b.addr()}}}}})
	for _, url := range []string{"https://shop.example.com/", "https://localhost/", "https://127.0.0.1/"} {
		resp, body := get(t, g.client(true), url, "")
		if resp.StatusCode != 200 || body != "b /" {
			t.Errorf("%s: %d %q", url, resp.StatusCode, body)
		}
		leaf := resp.TLS.PeerCertificates[0]
		if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok {
			t.Errorf("%s: leaf key is %T, want ECDSA", url, leaf.PublicKey)
		}
	}
	root := g.srv.snap.Load().ca.RootCertificate()
	g.stop()
	// A restart reuses the same root: clients that trust it keep trusting.
	g2 := startGateway(t, &config.Config{StateDir: state, Apps: []config.App{{Hosts: []string{"shop.example.com"}, Backends: []config.Backend{{Addr: b.addr()}}}}})
	if !g2.srv.snap.Load().ca.RootCertificate().Equal(root) {
		t.Error("the local CA root changed across a restart")
	}
}
