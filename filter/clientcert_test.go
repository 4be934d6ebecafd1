package filter

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// ccCA is a throwaway CA for client certificates.
type ccCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCCCA(t *testing.T) *ccCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test client CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &ccCA{cert: cert, key: key}
}

func (ca *ccCA) issue(t *testing.T, tmpl *x509.Certificate) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// clientCertServer starts a TLS server that verifies client certificates
// given, with ClientCert in front of a handler that reports the headers.
func clientCertServer(t *testing.T, ca *ccCA) (*httptest.Server, <-chan http.Header) {
	t.Helper()
	seen := make(chan http.Header, 1)
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen <- r.Header.Clone() })
	s := httptest.NewUnstartedServer(ClientCert(backend, ClientCertConfig{}))
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	s.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s, seen
}

func clientCertGet(t *testing.T, s *httptest.Server, cert *tls.Certificate, h http.Header) {
	t.Helper()
	tr := s.Client().Transport.(*http.Transport).Clone()
	if cert != nil {
		tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
	}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", s.URL, nil)
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func TestClientCert(t *testing.T) {
	ca := newCCCA(t)
	s, seen := clientCertServer(t, ca)
	u, _ := url.Parse("spiffe://example.org/ns/a,b")
	cert := ca.issue(t, &x509.Certificate{
		SerialNumber:   big.NewInt(0xABCDEF0123),
		Subject:        pkix.Name{CommonName: "alice", Organization: []string{"Example, Inc."}, Country: []string{"DE"}},
		DNSNames:       []string{"alice.example.com", "a.example.com"},
		EmailAddresses: []string{"alice@example.com"},
		URIs:           []*url.URL{u},
		IPAddresses:    []net.IP{net.ParseIP("192.0.2.7"), net.ParseIP("2001:db8::7")},
	})
	forged := http.Header{
		"X-Client-Cert-Subject":  {"CN=admin"},
		"X-Client-Cert-Verified": {"SUCCESS"},
		"X_client_cert_san":      {"admin.example.com"}, // CGI backends read this as the dashed name
		"X-Client-Cert-Serial":   {"1"},
	}
	sum := sha256.Sum256(cert.Leaf.Raw)
	for _, tc := range []struct {
		name string
		cert *tls.Certificate
		want map[string]string // "" : absent
	}{
		{"verified", &cert, map[string]string{
			ClientCertSubjectHeader:     `CN=alice,O=Example\, Inc.,C=DE`,
			ClientCertSANHeader:         "alice.example.com, a.example.com, alice@example.com, spiffe://example.org/ns/a%2Cb, 192.0.2.7, 2001:db8::7",
			ClientCertSerialHeader:      "ABCDEF0123",
			ClientCertFingerprintHeader: hex.EncodeToString(sum[:]),
			ClientCertVerifiedHeader:    "SUCCESS",
			"X_client_cert_san":         "",
		}},
		{"none", nil, map[string]string{
			ClientCertSubjectHeader:     "",
			ClientCertSANHeader:         "",
			ClientCertSerialHeader:      "",
			ClientCertFingerprintHeader: "",
			ClientCertVerifiedHeader:    "NONE",
			"X_client_cert_san":         "",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clientCertGet(t, s, tc.cert, forged)
			h := <-seen
			for k, want := range tc.want {
				if got := strings.Join(h[k], "|"); got != want {
					t.Errorf("%s: %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestClientCertLeaf(t *testing.T) {
	leaf := &x509.Certificate{Raw: []byte("leaf"), SerialNumber: big.NewInt(10), DNSNames: []string{"peer.example"}}
	r := httptest.NewRequest("GET", "/", nil)
	if VerifiedLeaf(r) != nil || PeerLeaf(r) != nil {
		t.Error("plain HTTP: want no certificate")
	}
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}
	if VerifiedLeaf(r) != nil || PeerLeaf(r) != leaf {
		t.Error("presented, not verified by crypto/tls: want PeerLeaf only")
	}
	r.TLS.VerifiedChains = [][]*x509.Certificate{{leaf}}
	if VerifiedLeaf(r) != leaf {
		t.Error("verified: want VerifiedLeaf")
	}

	var got http.Header
	h := ClientCert(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header }), ClientCertConfig{Leaf: PeerLeaf})
	r.TLS.VerifiedChains = nil
	h.ServeHTTP(httptest.NewRecorder(), r)
	if got.Get(ClientCertVerifiedHeader) != "SUCCESS" || got.Get(ClientCertSerialHeader) != "A" || got.Get(ClientCertSANHeader) != "peer.example" {
		t.Errorf("Leaf: PeerLeaf: headers %v", got)
	}
}

func TestClientCertSanitized(t *testing.T) {
	var dns []string
	for i := range 400 {
		dns = append(dns, strings.Repeat("x", 8)+"."+string(rune('a'+i%26))+".example")
	}
	c := &x509.Certificate{
		Raw:          []byte("x"),
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "evil\r\nX-Client-Cert-Verified: SUCCESS"},
		DNSNames:     append([]string{"bad\nname.example", strings.Repeat("y", maxClientCertValue+1)}, dns...),
	}
	var got http.Header
	h := ClientCert(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header }),
		ClientCertConfig{Leaf: func(*http.Request) *x509.Certificate { return c }})
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	if _, ok := got[ClientCertSubjectHeader]; ok {
		t.Errorf("subject with CR LF passed: %q", got[ClientCertSubjectHeader])
	}
	san := got.Get(ClientCertSANHeader)
	if len(san) > maxClientCertValue || len(san) < maxClientCertValue-30 {
		t.Errorf("SAN list of %d bytes, want close to %d and not over", len(san), maxClientCertValue)
	}
	names := strings.Split(san, ", ")
	for i, n := range names {
		if n != dns[i] {
			t.Fatalf("name %d: %q, want %q (whole names, in order, bad ones skipped)", i, n, dns[i])
		}
	}
}

func TestClientCertAllocs(t *testing.T) {
	h := ClientCert(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), ClientCertConfig{})
	r := httptest.NewRequest("GET", "/", nil)
	r.Header = http.Header{"Accept": {"*/*"}, "X-Client-Cert-Subject": {"forged"}}
	r.TLS = &tls.ConnectionState{}
	if n := testing.AllocsPerRun(100, func() { h.ServeHTTP(nil, r) }); n != 0 {
		t.Errorf("no certificate: %v allocations, want 0", n)
	}
}

// BenchmarkClientCert is the per-request cost with and without a
// verified certificate:
//
//	go test -run '^$' -bench ClientCert -benchmem ./filter
func BenchmarkClientCert(b *testing.B) {
	leaf := &x509.Certificate{
		Raw:          make([]byte, 600),
		SerialNumber: big.NewInt(0x1234567890),
		Subject:      pkix.Name{CommonName: "alice", Organization: []string{"Example"}},
		DNSNames:     []string{"alice.example.com"},
	}
	for _, tc := range []struct {
		name string
		leaf *x509.Certificate
	}{{"none", nil}, {"verified", leaf}} {
		b.Run(tc.name, func(b *testing.B) {
			h := ClientCert(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}),
				ClientCertConfig{Leaf: func(*http.Request) *x509.Certificate { return tc.leaf }})
			r := httptest.NewRequest("GET", "/", nil)
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(nil, r)
			}
		})
	}
}
