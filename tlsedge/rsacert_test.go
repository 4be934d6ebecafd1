package tlsedge

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/certs"
	"github.com/tlsedge/tlsedge/config"
)

// An RSA certificate from a file serves TLS 1.3 (RSA-PSS) and TLS 1.2
// handshakes, HTTPS and TCP mode, whichever signer the build has (make
// test runs this test in both builds).
func TestRSACertificateHandshakes(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "rsa.example.com"},
		DNSNames: []string{"rsa.example.com"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "rsa.crt"), filepath.Join(dir, "rsa.key")
	writeFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	be := startBackend(t, "b1")
	g := startGateway(t, &config.Config{
		TLS:  config.TLS{Certs: []config.CertPair{{Cert: certFile, Key: keyFile}}},
		Apps: []config.App{{Hosts: []string{"rsa.example.com"}, Backends: []config.Backend{{Addr: be.addr()}}}},
		TCP:  []config.TCPService{{Listen: freeAddr(t), Backends: []config.Backend{{Addr: be.addr()}}}},
	})
	leaf, _ := x509.ParseCertificate(der)
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	addrs := map[string]string{"HTTPS": g.srv.TLSAddr().String(), "TCP": g.srv.TCPAddrs()[0].String()}
	for name, addr := range addrs {
		for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
				&tls.Config{ServerName: "rsa.example.com", RootCAs: roots, MinVersion: v, MaxVersion: v})
			if err != nil {
				t.Fatalf("%s TLS %#x: %v", name, v, err)
			}
			if got := c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); got != 7 {
				t.Errorf("%s: served certificate %d", name, got)
			}
			c.Close()
		}
	}
	t.Logf("RSA handshakes over HTTPS and TCP mode, TLS 1.3 and 1.2; libcrypto signer: %v", certs.OpenSSLSigning)
}
