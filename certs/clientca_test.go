package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ccaAuthority is a test CA (a root, or an intermediate with parent set).
type ccaAuthority struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	parent *ccaAuthority
}

var ccaSerial atomic.Int64

func ccaKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func newCCA(t testing.TB, name string, parent *ccaAuthority) *ccaAuthority {
	t.Helper()
	key := ccaKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1000 + ccaSerial.Add(1)),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-24 * time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	signer, signKey := tmpl, key
	if parent != nil {
		signer, signKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &ccaAuthority{cert: cert, key: key, parent: parent}
}

// issue makes a leaf for eku (client auth by default), valid from
// notBefore for a day, with the intermediates up to the root in its chain.
func (a *ccaAuthority) issue(t testing.TB, name string, notBefore time.Time, eku ...x509.ExtKeyUsage) (tls.Certificate, *big.Int) {
	t.Helper()
	if eku == nil {
		eku = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	key := ccaKey(t)
	serial := big.NewInt(ccaSerial.Add(1))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    notBefore,
		NotAfter:     notBefore.Add(24 * time.Hour),
		ExtKeyUsage:  eku,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		t.Fatal(err)
	}
	chain := [][]byte{der}
	for c := a; c.parent != nil; c = c.parent {
		chain = append(chain, c.cert.Raw)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key}, serial
}

// crl is a DER CRL by a, revoking serials.
func (a *ccaAuthority) crl(t testing.TB, serials ...*big.Int) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(ccaSerial.Add(1)),
		ThisUpdate: time.Now().Add(-time.Hour),
		NextUpdate: time.Now().Add(time.Hour),
	}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, a.cert, a.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func certsPEM(certs ...*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

func crlPEM(der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}) }

func ccaWrite(t testing.TB, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// ccaHandshake runs a real handshake over a pipe: a server verifying
// client certificates with ca in VerifyConnection, and a client
// presenting cert (none when nil). It returns what Verify returned on the
// server (the handshake's error is Verify's).
func ccaHandshake(t testing.TB, ca *ClientCA, cert *tls.Certificate) ([][]*x509.Certificate, error) {
	t.Helper()
	srvCA := newCCA(t, "server CA", nil)
	srvCert, _ := srvCA.issue(t, "server.test", time.Now().Add(-time.Hour), x509.ExtKeyUsageServerAuth)
	roots := x509.NewCertPool()
	roots.AddCert(srvCA.cert)

	sc, cc := net.Pipe()
	deadline := time.Now().Add(10 * time.Second)
	sc.SetDeadline(deadline) //nolint:errcheck // pipes support deadlines
	cc.SetDeadline(deadline) //nolint:errcheck
	var chains [][]*x509.Certificate
	srv := tls.Server(sc, &tls.Config{
		Certificates: []tls.Certificate{srvCert},
		ClientAuth:   tls.RequestClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			var err error
			chains, err = ca.Verify(cs)
			return err
		},
	})
	cliCfg := &tls.Config{RootCAs: roots, ServerName: "server.test"}
	if cert != nil {
		cliCfg.Certificates = []tls.Certificate{*cert}
	}
	cli := tls.Client(cc, cliCfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if cli.Handshake() == nil {
			cli.Read(make([]byte, 1)) //nolint:errcheck // reads the server's alert or close
		}
		cli.Close()
	}()
	err := srv.Handshake()
	srv.Close()
	<-done
	return chains, err
}

// ccaFixture is a root and an intermediate, their CRL files, and a
// loaded ClientCA.
type ccaFixture struct {
	root, inter       *ccaAuthority
	caFile            string
	rootCRL, interCRL string
	ca                *ClientCA
}

func newCCAFixture(t testing.TB) *ccaFixture {
	t.Helper()
	dir := t.TempDir()
	f := &ccaFixture{root: newCCA(t, "client root", nil)}
	f.inter = newCCA(t, "client intermediate", f.root)
	f.caFile = ccaWrite(t, filepath.Join(dir, "clients.pem"), certsPEM(f.root.cert))
	f.rootCRL = ccaWrite(t, filepath.Join(dir, "root.crl"), f.root.crl(t))
	f.interCRL = ccaWrite(t, filepath.Join(dir, "inter.crl.pem"), crlPEM(f.inter.crl(t)))
	return f
}

func (f *ccaFixture) load(t testing.TB) *ClientCA {
	t.Helper()
	// The intermediate is in the bundle too: it signs a CRL, and a CRL's
	// signer must be there.
	ccaWrite(t, f.caFile, certsPEM(f.root.cert, f.inter.cert))
	ca, err := LoadClientCA(f.caFile, []string{f.rootCRL, f.interCRL})
	if err != nil {
		t.Fatal(err)
	}
	f.ca = ca
	return ca
}

func wantReason(t testing.TB, err error, reason string) {
	t.Helper()
	var ce *ClientCertError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T), want a *ClientCertError", err, err)
	}
	if !strings.Contains(ce.Reason, reason) {
		t.Fatalf("reason %q, want %q", ce.Reason, reason)
	}
}

func TestClientCAVerify(t *testing.T) {
	f := newCCAFixture(t)
	now := time.Now().Add(-time.Hour)
	good, _ := f.root.issue(t, "good", now)
	viaInter, _ := f.inter.issue(t, "via-intermediate", now)
	revoked, revokedSerial := f.inter.issue(t, "revoked", now)
	stranger, _ := newCCA(t, "someone else's CA", nil).issue(t, "stranger", now)
	serverOnly, _ := f.root.issue(t, "server-only", now, x509.ExtKeyUsageServerAuth)
	notYet, _ := f.root.issue(t, "not-yet", time.Now().Add(time.Hour))
	ccaWrite(t, f.interCRL, crlPEM(f.inter.crl(t, revokedSerial)))
	ca := f.load(t)

	for _, tc := range []struct {
		name   string
		cert   *tls.Certificate
		reason string // "": accepted
	}{
		{"good", &good, ""},
		{"intermediate", &viaInter, ""},
		{"no certificate", nil, ""},
		{"wrong CA", &stranger, "from an unknown authority"},
		{"revoked", &revoked, "serial 0x" + strings.ToUpper(revokedSerial.Text(16)) + " revoked by CRL " + f.interCRL + " at 2025-03-04T05:06:07Z"},
		{"server auth only", &serverOnly, "not valid for client authentication"},
		{"not yet valid", &notYet, "not yet valid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chains, err := ccaHandshake(t, ca, tc.cert)
			if tc.reason != "" {
				wantReason(t, err, tc.reason)
				if chains != nil {
					t.Errorf("refused, yet chains %v", chains)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.cert == nil && chains != nil:
				t.Errorf("no certificate, yet chains %v", chains)
			case tc.cert != nil && (len(chains) == 0 || !chains[0][0].Equal(mustLeaf(t, tc.cert))):
				t.Errorf("chains %v, want chains from the client's leaf", chains)
			}
		})
	}

	t.Run("expired", func(t *testing.T) {
		ca.now = func() time.Time { return now.Add(48 * time.Hour) }
		defer func() { ca.now = time.Now }()
		_, err := ca.VerifyPeer(good.Certificate)
		wantReason(t, err, "expired")
	})
	t.Run("revoked intermediate", func(t *testing.T) {
		ccaWrite(t, f.rootCRL, f.root.crl(t, f.inter.cert.SerialNumber))
		if _, err := ca.Reload(); err != nil {
			t.Fatal(err)
		}
		_, err := ccaHandshake(t, ca, &viaInter)
		wantReason(t, err, `intermediate CA "CN=client intermediate" serial 0x`+strings.ToUpper(f.inter.cert.SerialNumber.Text(16))+" revoked by CRL "+f.rootCRL)
		if _, err := ccaHandshake(t, ca, &good); err != nil {
			t.Errorf("a certificate straight from the root: %v", err)
		}
	})
	t.Run("unparsable", func(t *testing.T) {
		_, err := ca.VerifyPeer([][]byte{[]byte("not DER")})
		wantReason(t, err, "unparsable")
	})
	if ca.Pool() == nil {
		t.Error("no pool")
	}
}

func TestClientCAReload(t *testing.T) {
	f := newCCAFixture(t)
	cert, serial := f.inter.issue(t, "later-revoked", time.Now().Add(-time.Hour))
	ca := f.load(t)
	if _, err := ccaHandshake(t, ca, &cert); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	if changed, err := ca.Reload(); changed || err != nil {
		t.Errorf("nothing rewritten: Reload = %v, %v; want false, nil", changed, err)
	}

	ccaWrite(t, f.interCRL, f.inter.crl(t, serial)) // now DER, revoking it
	if _, err := ccaHandshake(t, ca, &cert); err != nil {
		t.Errorf("before Reload: %v (the old state is in use)", err)
	}
	if changed, err := ca.Reload(); !changed || err != nil {
		t.Fatalf("CRL rewritten: Reload = %v, %v; want true, nil", changed, err)
	}
	_, err := ccaHandshake(t, ca, &cert)
	wantReason(t, err, "revoked by CRL "+f.interCRL)
	if changed, err := ca.Reload(); changed || err != nil {
		t.Errorf("second Reload = %v, %v; want false, nil", changed, err)
	}

	// A broken rewrite keeps the state and names the file.
	good, _ := f.root.issue(t, "good", time.Now().Add(-time.Hour))
	for _, tc := range []struct {
		file string
		data []byte
		want string
	}{
		{f.interCRL, []byte("truncated"), f.interCRL},
		{f.interCRL, crlPEM(newCCA(t, "mallory", nil).crl(t, serial)), f.interCRL + `: issued by "CN=mallory", not signed by any CA in ` + f.caFile},
		{f.caFile, []byte("-----BEGIN NOTHING-----\n"), f.caFile + ": no PEM certificate found"},
		{f.caFile, certsPEM(f.root.cert), f.interCRL + `: issued by "CN=client intermediate"`}, // its CRL's signer left
	} {
		old := readFileT(t, tc.file)
		ccaWrite(t, tc.file, tc.data)
		changed, err := ca.Reload()
		if err == nil || !strings.Contains(err.Error(), tc.want) || changed {
			t.Errorf("%s rewritten badly: Reload = %v, %v; want an error naming %q", tc.file, changed, err, tc.want)
		}
		if _, err := ccaHandshake(t, ca, &good); err != nil {
			t.Errorf("after a broken reload, a good certificate: %v", err)
		}
		if _, err := ccaHandshake(t, ca, &cert); err == nil {
			t.Error("after a broken reload, the revoked certificate was accepted")
		}
		ccaWrite(t, tc.file, old)
	}
	if _, err := ca.Reload(); err != nil {
		t.Errorf("files restored: %v", err)
	}
}

func mustLeaf(t testing.TB, c *tls.Certificate) *x509.Certificate {
	t.Helper()
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

func readFileT(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLoadClientCAErrors(t *testing.T) {
	f := newCCAFixture(t)
	dir := t.TempDir()
	empty := ccaWrite(t, filepath.Join(dir, "empty.pem"), []byte("# no certificates\n"))
	badCert := ccaWrite(t, filepath.Join(dir, "bad.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2}}))
	garbage := ccaWrite(t, filepath.Join(dir, "garbage.crl"), []byte{0x30, 0x03, 1, 2, 3})
	noCRL := ccaWrite(t, filepath.Join(dir, "nocrl.pem"), certsPEM(f.root.cert))
	foreign := ccaWrite(t, filepath.Join(dir, "foreign.crl"), newCCA(t, "foreign", nil).crl(t))
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name, caFile string
		crls         []string
		want         string
	}{
		{"no file", "", nil, "no CA bundle file"},
		{"missing bundle", missing, nil, missing},
		{"empty bundle", empty, nil, empty + ": no PEM certificate found"},
		{"bad certificate", badCert, nil, badCert + ": certificate 1"},
		{"missing CRL", f.caFile, []string{missing}, missing},
		{"garbage CRL", f.caFile, []string{garbage}, garbage},
		{"PEM without a CRL", f.caFile, []string{noCRL}, noCRL + ": no PEM X509 CRL block"},
		{"foreign CRL", f.caFile, []string{foreign}, foreign + `: issued by "CN=foreign", not signed by any CA in ` + f.caFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadClientCA(tc.caFile, tc.crls)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := LoadClientCA(f.caFile, []string{f.rootCRL}); err != nil {
		t.Errorf("a DER CRL: %v", err)
	}
}

func TestClientCAWatch(t *testing.T) {
	f := newCCAFixture(t)
	cert, serial := f.inter.issue(t, "watched", time.Now().Add(-time.Hour))
	ca := f.load(t)
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var errs []error
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		ca.Watch(ctx, 5*time.Millisecond, func(err error) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		})
	}()
	ccaWrite(t, f.interCRL, f.inter.crl(t, serial))
	waitFor(t, func() bool { _, err := ca.VerifyPeer(cert.Certificate); return err != nil })

	ccaWrite(t, f.interCRL, []byte("broken"))
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(errs) > 0 })
	time.Sleep(50 * time.Millisecond) // some ten more ticks on the same error
	cancel()
	<-stopped
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), f.interCRL) {
		t.Errorf("errors reported: %v; want one, naming %s", errs, f.interCRL)
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestClientCAConcurrent is for -race: verification while the CRL flips
// between revoking and not.
func TestClientCAConcurrent(t *testing.T) {
	f := newCCAFixture(t)
	cert, serial := f.inter.issue(t, "flipping", time.Now().Add(-time.Hour))
	ca := f.load(t)
	revoking, clean := f.inter.crl(t, serial), f.inter.crl(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := ca.VerifyPeer(cert.Certificate); err != nil {
					wantReason(t, err, "revoked")
				}
			}
		})
	}
	for i := range 20 {
		ccaWrite(t, f.interCRL, [][]byte{revoking, clean}[i%2])
		if _, err := ca.Reload(); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
}
