package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/internal/acmetest"
)

// Runtime trouble with ACME — a CA that cannot be reached or refuses us, a
// state dir that cannot be written, a Redis that does not answer — gives
// one clear error line, and tlsedge keeps serving every app it can.

// selfSigned writes a certificate and key for host and returns their paths
// and a pool trusting it.
func selfSigned(t *testing.T, host string) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600) //nolint:errcheck // read back below
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600) //nolint:errcheck
	leaf, _ := x509.ParseCertificate(der)
	roots = x509.NewCertPool()
	roots.AddCert(leaf)
	return certFile, keyFile, roots
}

// errorLines returns the log's error-level lines.
func errorLines(log string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "level=error") {
			out = append(out, l)
		}
	}
	return out
}

const filesHost = "files.tlsedge.test"

// degradedRun starts tlsedge with one app served from files and one from
// ACME, plus args; it checks the files app is served while the ACME host
// is not, and returns the instance.
func degradedRun(t *testing.T, args ...string) *instance {
	t.Helper()
	origin := startOrigin(t)
	cert, key, roots := selfSigned(t, filesHost)
	in := startInstance(t, append([]string{
		"--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
		"--cert", cert, "--key", key,
		"--app", filesHost + "=" + origin + ";tls=files",
		"--app", shopHost + "=" + origin + ";tls=auto",
	}, args...)...)
	if _, err := leafAt(in.addr, filesHost, roots); err != nil {
		t.Errorf("the files app is not served: %v", err)
	}
	return in
}

func TestUnreachableCA(t *testing.T) {
	in := degradedRun(t, "--acme-email", "ops@tlsedge.test", "--acme-ca", "https://127.0.0.1:1/directory")
	line := in.waitLine(t, 20*time.Second, "certificate order failed", shopHost, "127.0.0.1:1", "connection refused")
	t.Logf("%s", line)
	if errs := errorLines(in.logs()); len(errs) != 1 {
		t.Errorf("%d error lines, want 1:\n%s", len(errs), strings.Join(errs, "\n"))
	}
}

// Pebble, like Let's Encrypt, refuses some addresses (here: non-ASCII);
// the refusal is the reason in the one error line.
func TestCARefusesEmail(t *testing.T) {
	ca := acmetest.Start(t, acmetest.Options{})
	in := degradedRun(t, "--acme-email", "öps@tlsedge.test", "--acme-ca", ca.DirectoryURL(), "--acme-ca-root", ca.APIRootFile())
	line := in.waitLine(t, 20*time.Second, "certificate order failed", shopHost, "non-ASCII")
	t.Logf("%s", line)
	if errs := errorLines(in.logs()); len(errs) != 1 {
		t.Errorf("%d error lines, want 1:\n%s", len(errs), strings.Join(errs, "\n"))
	}
	if ca.Orders() != 0 {
		t.Errorf("%d orders with a refused account", ca.Orders())
	}
}

func TestUnwritableStateDir(t *testing.T) {
	ca := acmetest.Start(t, acmetest.Options{})
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(file, "state") // below a regular file: not even root can create it
	in := degradedRun(t, "--state-dir", state, "--acme-email", "ops@tlsedge.test", "--acme-ca", ca.DirectoryURL(), "--acme-ca-root", ca.APIRootFile())
	line := in.waitLine(t, 10*time.Second, "ACME storage "+state, "not a directory")
	t.Logf("%s", line)
	if ca.Orders() != 0 {
		t.Errorf("%d orders placed although nothing could be stored", ca.Orders())
	}
}

func TestUnreachableRedis(t *testing.T) {
	in := degradedRun(t, "--acme-email", "ops@tlsedge.test", "--acme-ca", "https://127.0.0.1:1/directory", "--storage", "redis://:hunter2@127.0.0.1:1/0")
	line := in.waitLine(t, 10*time.Second, "ACME storage redis://127.0.0.1:1/0", "connection refused")
	t.Logf("%s", line)
	if strings.Contains(in.logs(), "hunter2") {
		t.Error("the Redis password is in the log")
	}
}
