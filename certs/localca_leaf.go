package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/sirupsen/logrus"
)

// leaf is an issued certificate and the moment it should be replaced.
type leaf struct {
	cert    *tls.Certificate
	renewAt time.Time
}

// renewAt is 2/3 into the validity: a third of the lifetime is left to
// renew in, so a gateway that was down for a while restarts with a
// certificate that is still valid.
func renewAt(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3)
}

// certificate returns the leaf for a key, issuing or renewing it when needed.
// The fast path is one sync.Map load and a clock read. Concurrent callers
// that miss share one issuance (singleflight), so a burst of first
// handshakes for a name signs one certificate.
func (ca *LocalCA) certificate(key string) (*tls.Certificate, error) {
	if v, ok := ca.leaves.Load(key); ok {
		if lf := v.(*leaf); ca.now().Before(lf.renewAt) {
			return lf.cert, nil
		}
	}
	v, err, _ := ca.flight.Do(key, func() (any, error) {
		// A caller that reaches Do just after the previous flight for this
		// key finished finds its result here instead of issuing again.
		old, _ := ca.leaves.Load(key)
		if old != nil && ca.now().Before(old.(*leaf).renewAt) {
			return old, nil
		}
		lf, err := ca.loadOrIssue(key)
		if err != nil {
			// Renewal failed but the old leaf is still valid: keep serving
			// it; the next handshake tries again.
			if old != nil && ca.now().Before(old.(*leaf).cert.Leaf.NotAfter) {
				ca.log.WithField("name", key).WithError(err).Warn("local CA renewal failed; serving the previous certificate")
				return old, nil
			}
			return nil, err
		}
		ca.leaves.Store(key, lf)
		return lf, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*leaf).cert, nil
}

func (ca *LocalCA) leafPaths(key string) (certPath, keyPath string) {
	stem := filepath.Join(ca.leafDir, fileStem(key))
	return stem + ".crt", stem + ".key"
}

// loadOrIssue returns the leaf cached on disk when it is still good, else a
// new one. The disk cache is an optimization: a missing or bad file is
// replaced, never an error.
func (ca *LocalCA) loadOrIssue(key string) (*leaf, error) {
	lf, err := ca.loadLeaf(key)
	if err == nil {
		return lf, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		ca.log.WithField("name", key).WithError(err).Debug("local CA: not reusing cached leaf")
	}
	return ca.issue(key)
}

// loadLeaf reads a cached leaf and checks it is for key, signed by the
// current root, and not due for renewal.
func (ca *LocalCA) loadLeaf(key string) (*leaf, error) {
	certPath, keyPath := ca.leafPaths(key)
	cert, _, err := loadPair(Pair{CertFile: certPath, KeyFile: keyPath})
	if err != nil {
		return nil, err
	}
	c := cert.Leaf
	if err := c.CheckSignatureFrom(ca.root); err != nil {
		return nil, fmt.Errorf("%s: not signed by the current root: %w", certPath, err)
	}
	if !slices.Contains(certNames(c), key) {
		return nil, fmt.Errorf("%s: issued for %v, not %q", certPath, certNames(c), key)
	}
	lf := &leaf{cert: cert, renewAt: renewAt(c)}
	if now := ca.now(); !now.Before(lf.renewAt) || now.Before(c.NotBefore) {
		return nil, fmt.Errorf("%s: valid %s to %s, due for renewal at %s", certPath,
			c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339), lf.renewAt.Format(time.RFC3339))
	}
	return lf, nil
}

// issue signs a new leaf for key and writes it to the disk cache.
func (ca *LocalCA) issue(key string) (*leaf, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: local CA key for %q: %w", key, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := ca.now()
	notAfter := now.Add(ca.lifetime)
	if notAfter.After(ca.root.NotAfter) {
		notAfter = ca.root.NotAfter // a leaf cannot outlive its root
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// No subject: the names are in the SAN, which Go then marks
		// critical as RFC 5280 section 4.2.1.6 requires.
		NotBefore:             now.Add(-time.Hour), // tolerate clients whose clock is behind
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if ip := net.ParseIP(key); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{key}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.root, &priv.PublicKey, ca.rootKey)
	if err != nil {
		return nil, fmt.Errorf("certs: local CA certificate for %q: %w", key, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: local CA certificate for %q: %w", key, err)
	}
	ca.issued.Add(1)
	lf := &leaf{
		cert:    &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: c},
		renewAt: renewAt(c),
	}
	if err := ca.storeLeaf(key, der, priv); err != nil {
		// Serving from memory is better than failing the handshake; the
		// next start issues again.
		ca.log.WithField("name", key).WithError(err).Warn("local CA: cannot cache certificate on disk")
	}
	ca.log.WithFields(logrus.Fields{"name": key, "not_after": c.NotAfter}).Info("local CA issued certificate")
	return lf, nil
}

// storeLeaf writes the key (0600) before the certificate, so a reader never
// finds a new certificate with an old key for long; loadLeaf rejects a
// mismatch anyway.
func (ca *LocalCA) storeLeaf(key string, der []byte, priv *ecdsa.PrivateKey) error {
	if err := os.MkdirAll(ca.leafDir, 0o700); err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("marshal key for %q: %w", key, err)
	}
	certPath, keyPath := ca.leafPaths(key)
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}
