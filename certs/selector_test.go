package certs

import (
	"crypto/tls"
	"errors"
	"math/big"
	"path/filepath"
	"testing"
)

// TestSelector composes static files and the local CA as tlsedge does:
// files first, then the CA, then the default.
func TestSelector(t *testing.T) {
	ti := newTestIssuer(t)
	dir := t.TempDir()
	def, defSerial := ti.writePair(t, dir, "default", "default.test")
	site, siteSerial := ti.writePair(t, dir, "site", "site.test", "app.test")
	static, err := NewStatic(StaticConfig{Pairs: []Pair{def, site}})
	if err != nil {
		t.Fatal(err)
	}
	ca := newTestLocalCA(t, LocalCAConfig{Hosts: []string{"app.test", "ca.test"}})
	sel := NewSelector(static, ca)
	addr := serveTLS(t, "127.0.0.1", sel.GetCertificate)

	tests := []struct {
		name, sni  string
		wantSerial *big.Int // a static certificate, or nil for a local CA leaf
	}{
		{"static file", "site.test", siteSerial},
		{"static file wins over the CA", "app.test", siteSerial},
		{"local CA", "ca.test", nil},
		{"local CA for localhost", "localhost", nil},
		{"no SNI: the CA's certificate for the dialed IP", "", nil},
		{"unknown name: first static certificate", "unknown.test", defSerial},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := dial(t, addr, tt.sni, nil)
			if err != nil {
				t.Fatal(err)
			}
			leaf := conn.ConnectionState().PeerCertificates[0]
			if tt.wantSerial != nil {
				if leaf.SerialNumber.Cmp(tt.wantSerial) != 0 {
					t.Errorf("served serial %v, want %v", leaf.SerialNumber, tt.wantSerial)
				}
				return
			}
			if err := leaf.CheckSignatureFrom(ca.RootCertificate()); err != nil {
				t.Errorf("want a local CA leaf, got %v: %v", leaf.Subject, err)
			}
		})
	}

	describe := []struct{ host, want string }{
		{"site.test", "file " + site.CertFile},
		{"app.test", "file " + site.CertFile},
		{"ca.test", "local CA"},
		{"unknown.test", "none: default certificate (file " + def.CertFile + "), clients will see a name mismatch"},
	}
	for _, tt := range describe {
		if got := sel.Describe(tt.host); got != tt.want {
			t.Errorf("Describe(%q) = %q, want %q", tt.host, got, tt.want)
		}
	}
}

// TestSelectorDefaultFromLocalCA: without static files, the default is the
// local CA's certificate for its first configured host.
func TestSelectorDefaultFromLocalCA(t *testing.T) {
	for _, tt := range []struct{ first, wantName string }{
		{"first.test", "first.test"},
		{"*.wild.test", "*.wild.test"},
	} {
		t.Run(tt.first, func(t *testing.T) {
			ca := newTestLocalCA(t, LocalCAConfig{Hosts: []string{tt.first, "second.test"}})
			addr := serveTLS(t, "127.0.0.1", NewSelector(ca).GetCertificate)
			conn, err := dial(t, addr, "unknown.test", nil)
			if err != nil {
				t.Fatal(err)
			}
			leaf := conn.ConnectionState().PeerCertificates[0]
			if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != tt.wantName {
				t.Errorf("default certificate names %q, want %q", leaf.DNSNames, tt.wantName)
			}
			if got, want := NewSelector(ca).Describe("unknown.test"), "none: default certificate (local CA), clients will see a name mismatch"; got != want {
				t.Errorf("Describe = %q, want %q", got, want)
			}
		})
	}
}

func TestSelectorNoCertificate(t *testing.T) {
	sel := NewSelector()
	if _, err := sel.GetCertificate(&tls.ClientHelloInfo{ServerName: "x.test"}); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("GetCertificate error = %v, want ErrNoCertificate", err)
	}
	addr := serveTLS(t, "127.0.0.1", sel.GetCertificate)
	if _, err := dial(t, addr, "x.test", nil); err == nil {
		t.Error("handshake succeeded with no certificate at all")
	}
}

// TestSelectorSourceError: a source that owns a name but fails is an error,
// not a silent fall back to a certificate for another name.
func TestSelectorSourceError(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca := newTestLocalCA(t, LocalCAConfig{Dir: dir, Hosts: []string{"app.test"}})
	ca.rootKey = nil // no key: signing fails
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("GetCertificate panicked: %v", r)
		}
	}()
	_, err := NewSelector(ca).GetCertificate(&tls.ClientHelloInfo{ServerName: "app.test"})
	if err == nil {
		t.Fatal("GetCertificate succeeded without a signing key")
	}
}
