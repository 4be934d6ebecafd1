package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/singleflight"
)

// DefaultLeafLifetime is the validity of a local CA leaf certificate when
// LocalCAConfig.LeafLifetime is zero. Short lifetimes keep a leaked leaf key
// harmless for little time; renewal is automatic.
const DefaultLeafLifetime = 7 * 24 * time.Hour

// loopbackNames are always covered by the local CA: a developer reaching
// the gateway on this machine should get a trusted certificate.
var loopbackNames = [...]string{"localhost", "127.0.0.1", "::1"}

// LocalCAConfig configures NewLocalCA. The zero value of every field but Dir
// means its default. NewLocalCA copies what it needs.
type LocalCAConfig struct {
	// Dir holds the CA state: root.crt, root.key and leaves/. It is created
	// with mode 0700. Required; typically <state dir>/ca.
	Dir string

	// Hosts are the configured host patterns the CA issues for, exact
	// names, IP addresses or "*.example.com" (covers exactly one label).
	// localhost, 127.0.0.1 and ::1 are always covered. The first host
	// gives the default certificate.
	Hosts []string

	// LeafLifetime is the validity of issued leaves; default
	// DefaultLeafLifetime. A leaf is re-issued when 2/3 of it has passed.
	LeafLifetime time.Duration

	// Now is the clock; default time.Now. Tests inject one.
	Now func() time.Time

	// Log receives issuance and cache problems; default
	// logrus.StandardLogger().
	Log *logrus.Entry
}

func (c *LocalCAConfig) leafLifetime() time.Duration {
	if c.LeafLifetime <= 0 {
		return DefaultLeafLifetime
	}
	return c.LeafLifetime
}

func (c *LocalCAConfig) now() func() time.Time {
	if c.Now == nil {
		return time.Now
	}
	return c.Now
}

func (c *LocalCAConfig) log() *logrus.Entry {
	if c.Log == nil {
		return logrus.NewEntry(logrus.StandardLogger())
	}
	return c.Log
}

// LocalCA issues certificates for the configured hosts from a root it
// generates once and keeps in Dir, like Caddy's `tls internal`. Leaves are
// signed directly by the root and served alone (no chain): clients must
// trust the root anyway, and sending it would only grow every handshake.
type LocalCA struct {
	dir, leafDir string
	now          func() time.Time
	lifetime     time.Duration
	log          *logrus.Entry

	root    *x509.Certificate
	rootKey crypto.Signer

	exact     map[string]bool // normalized hosts and loopback names
	wildcards map[string]bool // "*.example.com" patterns
	firstHost string          // key of the default certificate

	leaves sync.Map // key -> *leaf; read lock-free on every handshake
	flight singleflight.Group
	issued atomic.Int64 // leaves signed since start
}

var (
	_ Source    = (*LocalCA)(nil)
	_ Defaulter = (*LocalCA)(nil)
	_ Describer = (*LocalCA)(nil)
)

// NewLocalCA loads the root from cfg.Dir, generating it on the first start.
// A root that exists but cannot be loaded is an error, never replaced: every
// client that trusts it would silently stop trusting the gateway.
func NewLocalCA(cfg LocalCAConfig) (*LocalCA, error) {
	if cfg.Dir == "" {
		return nil, errors.New("certs: local CA: Dir is required")
	}
	if cfg.LeafLifetime < 0 {
		return nil, fmt.Errorf("certs: local CA: negative LeafLifetime %s", cfg.LeafLifetime)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("certs: local CA dir %q: %w", cfg.Dir, err)
	}
	ca := &LocalCA{
		dir:       dir,
		leafDir:   filepath.Join(dir, "leaves"),
		now:       cfg.now(),
		lifetime:  cfg.leafLifetime(),
		log:       cfg.log(),
		exact:     make(map[string]bool),
		wildcards: make(map[string]bool),
	}
	for _, h := range cfg.Hosts {
		key, err := parseHostPattern(h)
		if err != nil {
			return nil, fmt.Errorf("certs: local CA host %q: %w", h, err)
		}
		if strings.HasPrefix(key, "*.") {
			ca.wildcards[key] = true
		} else {
			ca.exact[key] = true
		}
		if ca.firstHost == "" {
			ca.firstHost = key
		}
	}
	for _, n := range loopbackNames {
		ca.exact[n] = true
	}
	if ca.firstHost == "" {
		ca.firstHost = "localhost"
	}
	if err := ca.loadOrCreateRoot(); err != nil {
		return nil, err
	}
	return ca, nil
}

// RootPath is the absolute path of the root certificate (PEM).
func (ca *LocalCA) RootPath() string { return filepath.Join(ca.dir, "root.crt") }

func (ca *LocalCA) rootKeyPath() string { return filepath.Join(ca.dir, "root.key") }

// RootCertificate returns the root. It is shared: do not modify it.
func (ca *LocalCA) RootCertificate() *x509.Certificate { return ca.root }

// cover returns the key of the certificate that serves a normalized name:
// the name itself for a configured or loopback name, the wildcard pattern
// for a name under a configured wildcard. Issuing the wildcard certificate
// (not one per name) keeps the number of certificates, files and signatures
// bounded by the configuration whatever names clients send.
func (ca *LocalCA) cover(key string) (string, bool) {
	if key == "" {
		return "", false
	}
	if ca.exact[key] {
		return key, true
	}
	if pattern, label := wildcardKey(key); pattern != "" && ca.wildcards[pattern] && validLabel(label) {
		return pattern, true
	}
	return "", false
}

// Lookup implements Source: a certificate for a covered name, issued on
// first use, or nil for a name the CA does not cover.
func (ca *LocalCA) Lookup(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	key, ok := ca.cover(helloName(hello))
	if !ok {
		return nil, nil
	}
	return ca.certificate(key)
}

// Default implements Defaulter: the certificate for the first configured
// host (a wildcard certificate for a wildcard pattern), or for localhost
// when no host is configured.
func (ca *LocalCA) Default() (*tls.Certificate, error) {
	return ca.certificate(ca.firstHost)
}

// Describe implements Describer: "local CA" for a covered host or
// configured pattern, "" otherwise.
func (ca *LocalCA) Describe(host string) string {
	key := normalizeName(host)
	if _, ok := ca.cover(key); ok || ca.wildcards[key] {
		return "local CA"
	}
	return ""
}

// loadOrCreateRoot reloads root.crt and root.key, or creates both when
// neither exists.
func (ca *LocalCA) loadOrCreateRoot() error {
	if err := os.MkdirAll(ca.dir, 0o700); err != nil {
		return fmt.Errorf("certs: local CA dir: %w", err)
	}
	_, certErr := os.Stat(ca.RootPath())
	_, keyErr := os.Stat(ca.rootKeyPath())
	switch {
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		return ca.createRoot()
	case certErr != nil:
		return fmt.Errorf("certs: local CA root certificate (key %s exists; restore the certificate or remove both): %w", ca.rootKeyPath(), certErr)
	case keyErr != nil:
		return fmt.Errorf("certs: local CA root key (certificate %s exists; restore the key or remove both): %w", ca.RootPath(), keyErr)
	}
	content, err := readPair(Pair{CertFile: ca.RootPath(), KeyFile: ca.rootKeyPath()})
	if err != nil {
		return fmt.Errorf("certs: local CA root: %w", err)
	}
	pair, err := tls.X509KeyPair(content.certPEM, content.keyPEM)
	if err != nil {
		return fmt.Errorf("certs: local CA root %s: %w", ca.RootPath(), err)
	}
	root, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return fmt.Errorf("certs: local CA root %s: %w", ca.RootPath(), err)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok || !root.IsCA || !root.BasicConstraintsValid {
		return fmt.Errorf("certs: local CA root %s: not a CA certificate with a signing key", ca.RootPath())
	}
	if now := ca.now(); now.After(root.NotAfter) {
		return fmt.Errorf("certs: local CA root %s expired on %s; remove %s to create a new one (clients must trust it again)",
			ca.RootPath(), root.NotAfter.Format(time.DateOnly), ca.dir)
	}
	ca.root, ca.rootKey = root, signer
	return nil
}

// createRoot generates the root: ECDSA P-256, valid for 10 years, with a
// random id in its name so that roots of different installs can be told
// apart in a trust store.
func (ca *LocalCA) createRoot() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("certs: local CA root key: %w", err)
	}
	id := make([]byte, 4)
	if _, err := rand.Read(id); err != nil {
		return fmt.Errorf("certs: local CA root id: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	now := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   "tlsedge Local CA - " + hex.EncodeToString(id),
			Organization: []string{"tlsedge"},
		},
		NotBefore:             now.Add(-time.Hour), // tolerate clients whose clock is behind
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // leaves are signed directly by the root
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("certs: local CA root certificate: %w", err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("certs: local CA root certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("certs: local CA root key: %w", err)
	}
	// Key first: a crash between the two leaves a key without certificate,
	// which the next start reports instead of overwriting.
	if err := writeFileAtomic(ca.rootKeyPath(), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return fmt.Errorf("certs: local CA root key: %w", err)
	}
	if err := writeFileAtomic(ca.RootPath(), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("certs: local CA root certificate: %w", err)
	}
	ca.root, ca.rootKey = root, key
	ca.log.WithFields(logrus.Fields{"root": ca.RootPath(), "name": root.Subject.CommonName}).
		Info("created local CA root; clients must be told to trust it")
	return nil
}

// TrustInstructions tells a person how to make common clients trust the
// root: curl, Firefox and Chrome (NSS), Debian/Ubuntu and macOS.
func (ca *LocalCA) TrustInstructions() string {
	path := shellQuote(ca.RootPath())
	name := shellQuote(ca.root.Subject.CommonName)
	var b strings.Builder
	fmt.Fprintf(&b, "The local CA root %q is %s\n", ca.root.Subject.CommonName, ca.RootPath())
	fmt.Fprintf(&b, "Trust it only on machines you control; its key can sign for any name.\n\n")
	fmt.Fprintf(&b, "curl (one command):\n  curl --cacert %s https://localhost/\n\n", path)
	fmt.Fprintf(&b, "Chrome/Chromium on Linux (NSS, needs certutil from libnss3-tools):\n")
	fmt.Fprintf(&b, "  certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n %s -i %s\n\n", name, path)
	fmt.Fprintf(&b, "Firefox (NSS, every profile):\n")
	fmt.Fprintf(&b, "  for d in $HOME/.mozilla/firefox/*/; do [ -f \"$d/cert9.db\" ] && certutil -d \"sql:$d\" -A -t C,, -n %s -i %s; done\n\n", name, path)
	fmt.Fprintf(&b, "Debian/Ubuntu system store:\n")
	fmt.Fprintf(&b, "  sudo cp %s /usr/local/share/ca-certificates/tlsedge.crt && sudo update-ca-certificates\n\n", path)
	fmt.Fprintf(&b, "macOS system keychain:\n")
	fmt.Fprintf(&b, "  sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain %s\n", path)
	return b.String()
}

// shellQuote quotes s for a POSIX shell when it holds anything but
// obviously safe characters.
func shellQuote(s string) string {
	safe := s != ""
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("/._-+:,=@", c)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("certs: certificate serial: %w", err)
	}
	return serial, nil
}

// writeFileAtomic writes through a temporary file and a rename, so that a
// crash never leaves a half-written key or certificate behind.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op once renamed
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return nil
}
