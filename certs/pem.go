package certs

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
)

// maxPEMSize bounds what we read from one file. A certificate chain is a few
// KiB; a larger file in the certificate folder is a mistake (a log, a
// bundle of every CA on earth), not something to load into memory.
const maxPEMSize = 1 << 20

// errNoNames is returned for a certificate that names no host: it could
// never be selected by SNI, so loading it is a configuration mistake.
var errNoNames = errors.New("certificate has no DNS name, IP address or common name")

// parsePair parses a PEM certificate chain and its private key. keyPEM may be
// the same bytes as certPEM when one file holds both: tls.X509KeyPair skips
// blocks of the other kind. The leaf is parsed so that names can be indexed
// and callers never parse it again per handshake.
func parsePair(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if cert.Leaf == nil { // GODEBUG=x509keypairleaf=0 leaves it nil.
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("parse leaf: %w", err)
		}
		cert.Leaf = leaf
	}
	if len(certNames(cert.Leaf)) == 0 {
		return nil, errNoNames
	}
	return &cert, nil
}

// certNames returns the normalized names a certificate is selected by: every
// DNS SAN and IP SAN, or the common name when it has no SAN at all (old
// self-made certificates; verifiers ignore the CN since Go 1.15 and Chrome
// 58, but selecting by it lets such a certificate at least be served).
func certNames(leaf *x509.Certificate) []string {
	var names []string
	for _, n := range leaf.DNSNames {
		names = append(names, normalizeName(n))
	}
	for _, ip := range leaf.IPAddresses {
		names = append(names, normalizeName(ip.String()))
	}
	if len(names) == 0 && leaf.Subject.CommonName != "" {
		names = append(names, normalizeName(leaf.Subject.CommonName))
	}
	return names
}

// pairContent is what one Pair holds on disk.
type pairContent struct {
	certPEM, keyPEM []byte
}

// sum identifies the content so that an unchanged rewrite (touch, the same
// file copied again) is not reported as a reload.
func (c pairContent) sum() [sha256.Size]byte {
	h := sha256.New()
	h.Write(c.certPEM)
	h.Write([]byte{0}) // keeps "ab"+"c" apart from "a"+"bc"
	h.Write(c.keyPEM)
	var s [sha256.Size]byte
	h.Sum(s[:0])
	return s
}

// readPair reads both files of a pair; an empty KeyFile means the
// certificate file holds the key too.
func readPair(p Pair) (pairContent, error) {
	certPEM, err := readPEMFile(p.CertFile)
	if err != nil {
		return pairContent{}, err
	}
	if p.KeyFile == "" {
		return pairContent{certPEM, certPEM}, nil
	}
	keyPEM, err := readPEMFile(p.KeyFile)
	if err != nil {
		return pairContent{}, err
	}
	return pairContent{certPEM, keyPEM}, nil
}

// loadPair reads and parses a pair; errors name the file at fault.
func loadPair(p Pair) (*tls.Certificate, pairContent, error) {
	c, err := readPair(p)
	if err != nil {
		return nil, c, err
	}
	cert, err := parsePair(c.certPEM, c.keyPEM)
	if err != nil {
		return nil, c, fmt.Errorf("%s: %w", p.describe(), err)
	}
	return cert, c, nil
}

// readPEMFile reads a whole file of at most maxPEMSize bytes.
func readPEMFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // *fs.PathError already names the file
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPEMSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxPEMSize {
		return nil, fmt.Errorf("read %s: larger than %d bytes, not a certificate file", path, maxPEMSize)
	}
	return b, nil
}
