package upstream

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	logtest "github.com/sirupsen/logrus/hooks/test"
)

// testPKI is a private CA issuing server and client certificates.
type testPKI struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestPKI(t *testing.T, name string) *testPKI {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testPKI{cert: cert, key: key, pool: pool}
}

func (p *testPKI) issue(t *testing.T, cn string, client bool, ips ...net.IP) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	usage := x509.ExtKeyUsageServerAuth
	if client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		DNSNames: []string{cn}, IPAddresses: ips,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsBackend is an HTTPS backend with a certificate from pki for name,
// requiring a client certificate from clientCA when it is not nil.
func tlsBackend(t *testing.T, pki *testPKI, name string, clientCA *x509.CertPool) *httptest.Server {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who := "anonymous"
		if len(r.TLS.PeerCertificates) > 0 {
			who = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		w.Write([]byte("tls backend, client " + who))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pki.issue(t, name, false, net.IPv4(127, 0, 0, 1))}}
	if clientCA != nil {
		srv.TLS.ClientCAs = clientCA
		srv.TLS.ClientAuth = tls.RequireAndVerifyClientCert
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func reencryptProxy(t *testing.T, tc *tls.Config, addrs ...string) (*Proxy, *httptest.Server, func() []string) {
	var cfgs []BackendConfig
	for i, a := range addrs {
		cfgs = append(cfgs, BackendConfig{ID: string(rune('a' + i)), Addr: a})
	}
	pool, err := NewPool(PoolConfig{Backends: cfgs, TLS: tc}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	logger, hook := logtest.NewNullLogger()
	p, err := NewProxy(ProxyConfig{Pool: pool, Log: logger.WithField("app", "test")})
	if err != nil {
		t.Fatal(err)
	}
	front := newFront(t, p, nil)
	lines := func() []string {
		var out []string
		for _, e := range hook.AllEntries() {
			s := e.Message
			if err, ok := e.Data["error"].(error); ok {
				s += " " + err.Error()
			}
			if r, ok := e.Data["reason"]; ok {
				s += " " + r.(string)
			}
			out = append(out, s)
		}
		return out
	}
	return p, front, lines
}

func TestReencryptPrivateCA(t *testing.T) {
	pki := newTestPKI(t, "Private CA")
	be := tlsBackend(t, pki, "app.internal", nil)
	_, front, _ := reencryptProxy(t, &tls.Config{RootCAs: pki.pool, ServerName: "app.internal"}, be.Listener.Addr().String())
	status, _, body := get(t, front.Client(), front.URL+"/")
	if status != 200 || body != "tls backend, client anonymous" {
		t.Errorf("got %d %q", status, body)
	}
}

func TestReencryptMutualTLS(t *testing.T) {
	pki := newTestPKI(t, "Private CA")
	clients := newTestPKI(t, "Client CA")
	be := tlsBackend(t, pki, "app.internal", clients.pool)
	cc := clients.issue(t, "tlsedge-gw1", true)
	_, front, _ := reencryptProxy(t, &tls.Config{RootCAs: pki.pool, ServerName: "app.internal", Certificates: []tls.Certificate{cc}}, be.Listener.Addr().String())
	status, _, body := get(t, front.Client(), front.URL+"/")
	if status != 200 || body != "tls backend, client tlsedge-gw1" {
		t.Errorf("got %d %q", status, body)
	}
	// Without the client certificate the backend refuses the handshake.
	_, front2, _ := reencryptProxy(t, &tls.Config{RootCAs: pki.pool, ServerName: "app.internal"}, be.Listener.Addr().String())
	if status, _, _ := get(t, front2.Client(), front2.URL+"/"); status != http.StatusBadGateway {
		t.Errorf("without a client certificate: %d, want 502", status)
	}
}

// A backend with a certificate the gateway does not trust is refused,
// with a log line naming the backend and the reason; another backend
// serves the request (nothing was sent to the first).
func TestReencryptWrongCertificate(t *testing.T) {
	pki := newTestPKI(t, "Private CA")
	other := newTestPKI(t, "Someone else")
	bad := tlsBackend(t, other, "app.internal", nil)
	good := tlsBackend(t, pki, "app.internal", nil)
	_, front, lines := reencryptProxy(t, &tls.Config{RootCAs: pki.pool, ServerName: "app.internal"}, bad.Listener.Addr().String(), good.Listener.Addr().String())
	status, hdr, body := get(t, front.Client(), front.URL+"/")
	if status != 200 || !strings.HasPrefix(body, "tls backend") || hdr.Get("X-Attempts") != "2" {
		t.Errorf("got %d %q after %s attempts, want 200 from the good backend after 2", status, body, hdr.Get("X-Attempts"))
	}
	found := false
	for _, l := range lines() {
		if strings.Contains(l, "backend a up -> down") && strings.Contains(l, "certificate signed by unknown authority") {
			found = true
		}
	}
	if !found {
		t.Errorf("no log line names backend a and the x509 reason: %q", lines())
	}
}
