package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// testIssuer is a throwaway CA for the static certificates of a test.
type testIssuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestIssuer(t testing.TB) *testIssuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test issuer"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testIssuer{cert: cert, key: key}
}

var testSerial atomic.Int64

// issue returns PEM for a leaf naming the given DNS names and IPs. A name
// written "cn:NAME" goes into the common name only.
func (ti *testIssuer) issue(t testing.TB, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1000 + testSerial.Add(1)),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		switch ip := net.ParseIP(n); {
		case len(n) > 3 && n[:3] == "cn:":
			tmpl.Subject.CommonName = n[3:]
		case ip != nil:
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		default:
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ti.cert, &key.PublicKey, ti.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// writeFile writes data to dir/name and returns the path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// writePair writes base.crt and base.key for names and returns the Pair and
// the certificate's serial number.
func (ti *testIssuer) writePair(t testing.TB, dir, base string, names ...string) (Pair, *big.Int) {
	t.Helper()
	certPEM, keyPEM := ti.issue(t, names...)
	p := Pair{
		CertFile: writeFile(t, dir, base+".crt", certPEM),
		KeyFile:  writeFile(t, dir, base+".key", keyPEM),
	}
	return p, serialOf(t, certPEM)
}

func serialOf(t testing.TB, certPEM []byte) *big.Int {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber
}

// testLog returns an entry whose output is captured by the hook.
func testLog() (*logrus.Entry, *logtest.Hook) {
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	return logrus.NewEntry(logger), hook
}

func warnings(hook *logtest.Hook) []*logrus.Entry {
	var out []*logrus.Entry
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.WarnLevel {
			out = append(out, e)
		}
	}
	return out
}

// serveTLS runs a TLS echo server on a loopback address ("127.0.0.1" or
// "::1") until the test ends, and returns its address.
func serveTLS(t testing.TB, host string, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) string {
	t.Helper()
	ln, err := tls.Listen("tcp", net.JoinHostPort(host, "0"), &tls.Config{GetCertificate: getCert})
	if err != nil {
		t.Fatalf("listen on loopback %s (this machine kind has IPv4 and IPv6 loopback): %v", host, err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // listener closed by cleanup
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c) // a failed handshake ends the copy too
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// dial completes a handshake with serverName as SNI ("" sends none). With
// roots nil the chain is not verified, which lets tests look at whichever
// certificate the server picked.
func dial(t testing.TB, addr, serverName string, roots *x509.CertPool) (*tls.Conn, error) {
	t.Helper()
	cfg := &tls.Config{ServerName: serverName, RootCAs: roots, InsecureSkipVerify: roots == nil}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { conn.Close() })
	return conn, nil
}

// servedSerial handshakes and returns the serial of the leaf served.
func servedSerial(t testing.TB, addr, serverName string) *big.Int {
	t.Helper()
	conn, err := dial(t, addr, serverName, nil)
	if err != nil {
		t.Fatalf("handshake %q: %v", serverName, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

// echo checks that an established connection still carries data.
func echo(t testing.TB, conn *tls.Conn, msg string) {
	t.Helper()
	if _, err := conn.Write([]byte(msg)); err != nil {
		t.Fatalf("write on established connection: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo on established connection = %q, %v", buf, err)
	}
}

// fakeClock is an injectable clock for renewal tests.
type fakeClock struct{ now atomic.Pointer[time.Time] }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.set(t)
	return c
}

func (c *fakeClock) set(t time.Time) { c.now.Store(&t) }
func (c *fakeClock) Now() time.Time  { return *c.now.Load() }
