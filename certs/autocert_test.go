package certs

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/acme/autocert"
)

// unreachableCA is a directory URL nothing listens on: any ACME request
// certmagic makes fails, so a certificate it serves came from storage.
const unreachableCA = "https://127.0.0.1:1/dir"

// autocertEncode is the encoding of autocert's Manager.cachePut, copied
// from golang.org/x/crypto v0.59.0 acme/autocert/autocert.go (cachePut and
// encodeECDSAKey): the key PEM, then one CERTIFICATE block per DER.
func autocertEncode(t testing.TB, key crypto.Signer, chain [][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch key := key.(type) {
	case *ecdsa.PrivateKey:
		b, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		pem.Encode(&buf, &pem.Block{Type: "EC PRIVATE KEY", Bytes: b})
	case *rsa.PrivateKey:
		b := x509.MarshalPKCS1PrivateKey(key)
		pem.Encode(&buf, &pem.Block{Type: "RSA PRIVATE KEY", Bytes: b})
	default:
		t.Fatalf("acme/autocert: unknown private key type %T", key)
	}
	for _, b := range chain {
		pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: b})
	}
	return buf.Bytes()
}

// autocertPut stores data under name with autocert's own DirCache.
func autocertPut(t testing.TB, dir, name string, data []byte) {
	t.Helper()
	if err := autocert.DirCache(dir).Put(context.Background(), name, data); err != nil {
		t.Fatal(err)
	}
}

// acLeaf describes a certificate as a CA would issue it to autocert.
type acLeaf struct {
	cn       string
	dns      []string
	rsa      bool
	notAfter time.Time
}

// issueAutocert returns a key and the chain (leaf, then the test CA).
// Lifetimes are 90 days, like Let's Encrypt's, so that certmagic sees an
// imported certificate with 60 days left as not yet due for renewal.
func (ti *testIssuer) issueAutocert(t testing.TB, l acLeaf) (crypto.Signer, [][]byte, string) {
	t.Helper()
	var key crypto.Signer
	var err error
	if l.rsa {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(0x5000 + testSerial.Add(1)),
		Subject:      pkix.Name{CommonName: l.cn},
		DNSNames:     l.dns,
		NotBefore:    l.notAfter.Add(-90 * 24 * time.Hour),
		NotAfter:     l.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ti.cert, key.Public(), ti.key)
	if err != nil {
		t.Fatal(err)
	}
	return key, [][]byte{der, ti.cert.Raw}, hex.EncodeToString(tmpl.SerialNumber.Bytes())
}

// putAutocert issues a certificate for one name and stores it under name.
func (ti *testIssuer) putAutocert(t testing.TB, dir, name string, l acLeaf) string {
	t.Helper()
	key, chain, serial := ti.issueAutocert(t, l)
	autocertPut(t, dir, name, autocertEncode(t, key, chain))
	return serial
}

// autocertFixture is a cache directory with one entry of every kind.
type autocertFixture struct {
	dir    string
	ti     *testIssuer
	serial map[string]string // by entry name
}

func newAutocertFixture(t testing.TB, now time.Time) *autocertFixture {
	t.Helper()
	fx := &autocertFixture{dir: filepath.Join(t.TempDir(), "autocert"), ti: newTestIssuer(t), serial: map[string]string{}}
	valid := now.Add(60 * 24 * time.Hour)
	one := func(name string) acLeaf { return acLeaf{cn: name, dns: []string{name}, notAfter: valid} }
	put := func(entry string, l acLeaf) { fx.serial[entry] = fx.ti.putAutocert(t, fx.dir, entry, l) }

	put("good.example.test", one("good.example.test"))
	rsaTwin := one("good.example.test")
	rsaTwin.rsa = true
	put("good.example.test+rsa", rsaTwin)
	rsaOnly := one("rsaonly.example.test")
	rsaOnly.rsa = true
	put("rsaonly.example.test+rsa", rsaOnly)
	expired := one("expired.example.test")
	expired.notAfter = now.Add(-time.Hour)
	put("expired.example.test", expired)
	put("wrongname.example.test", one("elsewhere.example.test"))
	put("firstname.example.test", acLeaf{cn: "www.firstname.example.test",
		dns: []string{"www.firstname.example.test", "firstname.example.test"}, notAfter: valid})

	// a key beside someone else's certificate
	key, _, _ := fx.ti.issueAutocert(t, one("mismatch.example.test"))
	_, chain, serial := fx.ti.issueAutocert(t, one("mismatch.example.test"))
	autocertPut(t, fx.dir, "mismatch.example.test", autocertEncode(t, key, chain))
	fx.serial["mismatch.example.test"] = serial

	autocertPut(t, fx.dir, "garbage.example.test", []byte("not PEM at all\n"))
	// the entries autocert keeps besides certificates: accountKey's
	// encodeECDSAKey output, a tls-alpn-01 certificate (cachePut format),
	// and an http-01 key authorization
	accountKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalECPrivateKey(accountKey)
	autocertPut(t, fx.dir, "acme_account+key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	fx.ti.putAutocert(t, fx.dir, "good.example.test+token", one("good.example.test"))
	autocertPut(t, fx.dir, "x3hT0ken_-abc+http-01", []byte("x3hT0ken_-abc.thumbprint"))
	return fx
}

// fileStore returns a certmagic FileStorage in a fresh directory.
func fileStore(t testing.TB) *certmagic.FileStorage {
	return &certmagic.FileStorage{Path: filepath.Join(t.TempDir(), "certmagic")}
}

// certmagicConfig is a certmagic Config with its defaults, pointed at an
// unreachable CA, its zap output captured. Nothing had to be disabled to
// keep it off the network: ARI is fetched only for a certificate whose
// stored issuer_data holds a renewal window (an imported one has none),
// and OCSP stapling asks the responder the certificate names (these name
// none; a real one would be asked, which is not the ACME CA either).
func certmagicConfig(t testing.TB, store certmagic.Storage) (*certmagic.Config, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.DebugLevel)
	logger := zap.New(core)
	var cfg *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return cfg, nil },
		Logger:           logger,
	})
	t.Cleanup(cache.Stop)
	cfg = certmagic.New(cache, certmagic.Config{
		Storage: store,
		Logger:  logger,
	})
	cfg.Issuers = []certmagic.Issuer{certmagic.NewACMEIssuer(cfg, certmagic.ACMEIssuer{
		CA: unreachableCA, Email: "ops@example.test", Agreed: true, Logger: logger,
	})}
	return cfg, logs
}

func entryByName(t testing.TB, r ImportReport, name string) ImportEntry {
	t.Helper()
	for _, e := range r.Entries {
		if e.Name == name {
			return e
		}
	}
	t.Fatalf("no report entry %q in\n%s", name, r)
	return ImportEntry{}
}

// TestImportAutocertReport checks the action and reason for every kind of
// entry autocert leaves in its cache, and that each gets one log line.
func TestImportAutocertReport(t *testing.T) {
	now := time.Now()
	fx := newAutocertFixture(t, now)
	store := fileStore(t)
	r, err := ImportAutocert(t.Context(), fx.dir, store, "127.0.0.1:14000-dir", now)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", r)
	for _, tc := range []struct {
		name, reason string
		action       ImportAction
	}{
		{"good.example.test", "", AutocertImported},
		{"rsaonly.example.test+rsa", "", AutocertImported},
		{"good.example.test+rsa", "good.example.test is preferred for this domain", AutocertSkipped},
		{"expired.example.test", "expired ", AutocertSkipped},
		{"wrongname.example.test", "leaf names [elsewhere.example.test] do not include wrongname.example.test", AutocertSkipped},
		{"firstname.example.test", `certmagic would maintain this certificate as "www.firstname.example.test"`, AutocertSkipped},
		{"mismatch.example.test", "private key does not match", AutocertSkipped},
		{"garbage.example.test", "does not start with a PEM private key", AutocertSkipped},
		{"acme_account+key", "ACME account key", AutocertSkipped},
		{"good.example.test+token", "tls-alpn-01 challenge certificate", AutocertSkipped},
		{"x3hT0ken_-abc+http-01", "http-01 challenge token", AutocertSkipped},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := entryByName(t, r, tc.name)
			if e.Action != tc.action || !strings.Contains(e.Reason, tc.reason) || (tc.reason == "") != (e.Reason == "") {
				t.Errorf("got %s %q, want %s %q", e.Action, e.Reason, tc.action, tc.reason)
			}
			if want := fx.serial[tc.name]; e.Serial != want {
				t.Errorf("serial %q, want %q", e.Serial, want)
			}
			if want := fx.serial[tc.name] != ""; want && e.IssuerCN != "test issuer" {
				t.Errorf("issuer CN %q", e.IssuerCN)
			}
		})
	}
	if len(r.Entries) != 11 || r.Count(AutocertImported) != 2 {
		t.Errorf("%d entries, %d imported; want 11, 2", len(r.Entries), r.Count(AutocertImported))
	}
	lines := r.Lines()
	want := "imported good.example.test serial " + fx.serial["good.example.test"] + " expires " +
		now.Add(60*24*time.Hour).UTC().Format(time.DateOnly) + ` issuer "test issuer" from ` + fx.dir
	if !strings.Contains(r.String(), want) || len(lines) != len(r.Entries) {
		t.Errorf("lines lack %q:\n%s", want, r)
	}
}

// TestImportAutocertCertmagicServes is the point of the import: certmagic,
// managing the imported names with an issuer whose CA cannot be reached,
// serves the imported certificates and never begins an ACME flow.
func TestImportAutocertCertmagicServes(t *testing.T) {
	now := time.Now()
	fx := newAutocertFixture(t, now)
	store := fileStore(t)
	cfg, logs := certmagicConfig(t, store)
	issuerKey := cfg.Issuers[0].IssuerKey()
	if issuerKey != "127.0.0.1:1-dir" {
		t.Fatalf("issuer key %q", issuerKey)
	}
	if _, err := ImportAutocert(t.Context(), fx.dir, store, issuerKey, now); err != nil {
		t.Fatal(err)
	}

	// what certmagic reads, in the format it writes itself
	k := certmagic.StorageKeys
	keyPEM, err := store.Load(t.Context(), k.SitePrivateKey(issuerKey, "rsaonly.example.test"))
	if err != nil {
		t.Fatal(err)
	}
	if key, err := certmagic.PEMDecodePrivateKey(keyPEM); err != nil || !bytes.HasPrefix(keyPEM, []byte("-----BEGIN RSA PRIVATE KEY")) {
		t.Fatalf("key %T, %v:\n%s", key, err, keyPEM)
	}
	metaJSON, err := store.Load(t.Context(), k.SiteMeta(issuerKey, "good.example.test"))
	if err != nil {
		t.Fatal(err)
	}
	var meta certmagic.CertificateResource
	if err := json.Unmarshal(metaJSON, &meta); err != nil || len(meta.SANs) != 1 || meta.SANs[0] != "good.example.test" || string(meta.IssuerData) != "{}" {
		t.Fatalf("meta %+v, %v:\n%s", meta, err, metaJSON)
	}

	domains := []string{"good.example.test", "rsaonly.example.test"}
	if _, err := cfg.CacheManagedCertificate(t.Context(), domains[0]); err != nil {
		t.Fatalf("CacheManagedCertificate: %v", err)
	}
	// ManageSync would order from the unreachable CA, and fail, for any
	// name it finds no usable certificate for in storage.
	if err := cfg.ManageSync(t.Context(), domains); err != nil {
		t.Fatalf("ManageSync: %v", err)
	}
	got, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: "good.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if s := hex.EncodeToString(got.Leaf.SerialNumber.Bytes()); s != fx.serial["good.example.test"] {
		t.Errorf("GetCertificate serial %s, want the imported %s", s, fx.serial["good.example.test"])
	}
	addr := serveTLS(t, "127.0.0.1", cfg.GetCertificate)
	for _, entry := range []string{"good.example.test", "rsaonly.example.test+rsa"} {
		name, _, _ := strings.Cut(entry, "+")
		if s := hex.EncodeToString(servedSerial(t, addr, name).Bytes()); s != fx.serial[entry] {
			t.Errorf("handshake for %s served serial %s, want the imported %s", name, s, fx.serial[entry])
		}
	}

	// no account was created: certmagic registers one before any order
	if keys, err := store.List(t.Context(), "acme", true); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("storage has ACME account data %v (%v): certmagic began an order", keys, err)
	}
	for _, e := range logs.All() {
		if e.Level >= zapcore.WarnLevel || strings.Contains(e.Message, "obtain") || strings.Contains(e.Message, "renew") {
			t.Errorf("certmagic logged %s %q %v", e.Level, e.Message, e.ContextMap())
		}
	}
}

// TestImportAutocertIdempotent: a second run changes nothing and says so.
func TestImportAutocertIdempotent(t *testing.T) {
	now := time.Now()
	fx := newAutocertFixture(t, now)
	store := fileStore(t)
	const issuerKey = "127.0.0.1:14000-dir"
	first, err := ImportAutocert(t.Context(), fx.dir, store, issuerKey, now)
	if err != nil {
		t.Fatal(err)
	}
	crtKey := certmagic.StorageKeys.SiteCert(issuerKey, "good.example.test")
	before, _ := store.Load(t.Context(), crtKey)
	second, err := ImportAutocert(t.Context(), fx.dir, store, issuerKey, now)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range second.Entries {
		want := first.Entries[i].Action
		if want == AutocertImported {
			want = AutocertKeptExisting
		}
		if e.Action != want {
			t.Errorf("second run: %s %s, want %s", e.Action, e.Name, want)
		}
	}
	e := entryByName(t, second, "good.example.test")
	if want := "storage already holds serial " + fx.serial["good.example.test"]; !strings.HasPrefix(e.Reason, want) {
		t.Errorf("reason %q, want %q...", e.Reason, want)
	}
	if after, _ := store.Load(t.Context(), crtKey); !bytes.Equal(before, after) {
		t.Error("second run rewrote the certificate")
	}
}

// TestImportAutocertExisting: a newer certificate in storage (say, one
// certmagic renewed) is kept; an older or incomplete one is replaced.
func TestImportAutocertExisting(t *testing.T) {
	now := time.Now()
	ti := newTestIssuer(t)
	const issuerKey, name = "127.0.0.1:14000-dir", "shop.example.test"
	cacheWith := func(days int) (string, string) {
		dir := t.TempDir()
		l := acLeaf{cn: name, dns: []string{name}, notAfter: now.Add(time.Duration(days) * 24 * time.Hour)}
		return dir, ti.putAutocert(t, dir, name, l)
	}
	older, olderSerial := cacheWith(30)
	newer, newerSerial := cacheWith(80)
	store := fileStore(t)
	run := func(dir string) ImportEntry {
		r, err := ImportAutocert(t.Context(), dir, store, issuerKey, now)
		if err != nil {
			t.Fatal(err)
		}
		return entryByName(t, r, name)
	}
	if e := run(newer); e.Action != AutocertImported || e.Reason != "" {
		t.Fatalf("into empty storage: %s %q", e.Action, e.Reason)
	}
	if e := run(older); e.Action != AutocertKeptExisting || !strings.Contains(e.Reason, newerSerial) {
		t.Errorf("older over newer: %s %q", e.Action, e.Reason)
	}
	if err := store.Delete(t.Context(), certmagic.StorageKeys.SiteMeta(issuerKey, name)); err != nil {
		t.Fatal(err)
	}
	if e := run(older); e.Action != AutocertImported || !strings.Contains(e.Reason, "incomplete") {
		t.Errorf("over incomplete: %s %q", e.Action, e.Reason)
	}
	if e := run(newer); e.Action != AutocertImported || !strings.Contains(e.Reason, "replaced serial "+olderSerial) {
		t.Errorf("newer over older: %s %q", e.Action, e.Reason)
	}
}

// failingStore is a real FileStorage whose writes to one key fail.
type failingStore struct {
	*certmagic.FileStorage
	failKey string
}

func (s failingStore) Store(ctx context.Context, key string, value []byte) error {
	if key == s.failKey {
		return errors.New("disk full")
	}
	return s.FileStorage.Store(ctx, key, value)
}

// TestImportAutocertStorageFailure: a storage error for one domain is
// returned, the others are still imported, and the failed domain keeps
// the certificate it had rather than a key beside the wrong chain.
func TestImportAutocertStorageFailure(t *testing.T) {
	now := time.Now()
	fx := newAutocertFixture(t, now)
	const issuerKey = "127.0.0.1:14000-dir"
	k := certmagic.StorageKeys
	disk := fileStore(t)
	oldDir := t.TempDir()
	fx.ti.putAutocert(t, oldDir, "good.example.test", acLeaf{cn: "good.example.test",
		dns: []string{"good.example.test"}, notAfter: now.Add(24 * time.Hour)})
	if _, err := ImportAutocert(t.Context(), oldDir, disk, issuerKey, now); err != nil {
		t.Fatal(err)
	}
	oldKey, _ := disk.Load(t.Context(), k.SitePrivateKey(issuerKey, "good.example.test"))

	store := failingStore{disk, k.SiteMeta(issuerKey, "good.example.test")}
	r, err := ImportAutocert(t.Context(), fx.dir, store, issuerKey, now)
	if err == nil || !strings.Contains(err.Error(), "good.example.test") || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("error %v, want one naming good.example.test", err)
	}
	if e := entryByName(t, r, "rsaonly.example.test+rsa"); e.Action != AutocertImported {
		t.Errorf("other domain: %s %q", e.Action, e.Reason)
	}
	if e := entryByName(t, r, "good.example.test"); e.Action != AutocertSkipped || !strings.Contains(e.Reason, "disk full") {
		t.Errorf("failed domain: %s %q", e.Action, e.Reason)
	}
	if key, _ := disk.Load(t.Context(), k.SitePrivateKey(issuerKey, "good.example.test")); !bytes.Equal(key, oldKey) {
		t.Error("failed import left a new key beside the old certificate")
	}
}

// TestImportAutocertDirErrors: an unusable directory is one error naming it.
func TestImportAutocertDirErrors(t *testing.T) {
	file := writeFile(t, t.TempDir(), "not-a-dir", []byte("x"))
	for _, dir := range []string{filepath.Join(t.TempDir(), "missing"), file} {
		_, err := ImportAutocert(t.Context(), dir, fileStore(t), "k", time.Now())
		if err == nil || !strings.Contains(err.Error(), dir) {
			t.Errorf("%s: error %v, want one naming the directory", dir, err)
		}
	}
	if _, err := ImportAutocert(t.Context(), filepath.Join(t.TempDir(), "missing"), fileStore(t), "k", time.Now()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing directory: %v, want fs.ErrNotExist", err)
	}
}

// FuzzParseAutocertEntry feeds arbitrary bytes to the cache entry parser:
// it never panics, and what it accepts survives autocert's own encoding.
func FuzzParseAutocertEntry(f *testing.F) {
	ti := newTestIssuer(f)
	for _, l := range []acLeaf{{cn: "a.test", dns: []string{"a.test"}}, {dns: []string{"b.test"}, rsa: true}} {
		l.notAfter = time.Now().Add(time.Hour)
		key, chain, _ := ti.issueAutocert(f, l)
		good := autocertEncode(f, key, chain)
		f.Add(good)
		f.Add(append(append([]byte{}, good...), " \n"...))
		f.Add(append(append([]byte{}, good...), "junk"...))
		f.Add(good[:len(good)/2])
		f.Add(bytes.Replace(good, []byte("CERTIFICATE"), []byte("PUBLIC KEY"), 1))
	}
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		key, chain, err := parseAutocertEntry(data)
		if err != nil {
			if key != nil || chain != nil {
				t.Fatal("values returned with an error")
			}
			return
		}
		if key == nil || len(chain) == 0 {
			t.Fatal("accepted an entry without a key or a certificate")
		}
		ders := make([][]byte, len(chain))
		for i, c := range chain {
			ders[i] = c.Raw
		}
		_, again, err := parseAutocertEntry(autocertEncode(t, key, ders))
		if err != nil || !bytes.Equal(again[0].Raw, chain[0].Raw) {
			t.Fatalf("accepted entry does not survive re-encoding: %v", err)
		}
	})
}
