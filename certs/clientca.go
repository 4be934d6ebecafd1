package certs

// Client certificate verification against a CA bundle and CRLs on disk.
//
// Contract: ClientCA.Verify accepts a client chain exactly when it leads
// to a CA of the current bundle, is valid now for client authentication,
// and holds no certificate revoked by a CRL of its issuer. "Current"
// means what the last successful load read: Reload (and Watch) re-read
// changed files and swap in a new immutable state through one atomic
// pointer, so verification never takes a lock, and a broken file never
// replaces a good state.
//
// Why the verification is ours and not crypto/tls's: tls.Config.ClientCAs
// is a pool fixed when the config is built. A server that verifies in
// tls.Config.VerifyConnection (ClientAuth RequestClientCert or
// RequireAnyClientCert) applies a changed bundle or CRL to the next
// handshake without a new tls.Config.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxCRLSize bounds one CRL file. A private CA's CRL is a few KiB; a big
// public CA's can reach megabytes.
const maxCRLSize = 64 << 20

// ClientCertError is why a client certificate was refused.
type ClientCertError struct {
	// Reason is for people: "from an unknown authority", "expired",
	// "not yet valid", "not valid for client authentication",
	// "unparsable", "invalid", or "serial 0x.. revoked by CRL <file> at
	// <time>".
	Reason string
	// Err is the underlying error (from crypto/x509); nil for a
	// revocation.
	Err error
}

func (e *ClientCertError) Error() string {
	if e.Err == nil {
		return "client certificate " + e.Reason
	}
	return "client certificate " + e.Reason + ": " + e.Err.Error()
}

func (e *ClientCertError) Unwrap() error { return e.Err }

// ClientCA verifies client certificates; safe for concurrent use. Build it
// with LoadClientCA.
type ClientCA struct {
	now   func() time.Time // verification time; tests set it
	state atomic.Pointer[clientCAState]

	// mu serializes loads (Reload, Watch); Verify never takes it. It
	// guards the files: what was last read from disk.
	mu   sync.Mutex
	ca   watchedFile
	crls []watchedFile
}

// clientCAState is what verification reads; never modified once stored.
type clientCAState struct {
	pool    *x509.CertPool
	revoked map[revokedKey]revocation
	// revokedAnchors are the bundle's own CAs revoked by a CRL of another
	// CA of the bundle, by the SHA-256 of their DER: Go verifies up to
	// any certificate of the pool, so a bundled intermediate ends a
	// chain, and without this its revocation would never be looked at.
	revokedAnchors map[[sha256.Size]byte]revocation
}

// revokedKey names a certificate as a CRL does: its issuer (subject and
// key, see issuerID) and its serial.
type revokedKey struct {
	issuer [sha256.Size]byte
	serial string // hex
}

type revocation struct {
	crlFile string
	at      time.Time
}

// watchedFile is one file as last read.
type watchedFile struct {
	path   string
	stamp  fileStamp
	readAt time.Time // zero: never read
	sum    [sha256.Size]byte
	certs  []*x509.Certificate    // the CA bundle
	lists  []*x509.RevocationList // a CRL file (PEM may hold several)
}

// LoadClientCA reads a PEM bundle of CA certificates and CRLs (PEM or
// DER) signed by CAs of the bundle. Errors name the file at fault. A CRL
// past its NextUpdate still applies: a revoked serial stays revoked, and
// fetching fresh CRLs is the operator's job, not a reason to refuse every
// client.
func LoadClientCA(caFile string, crlFiles []string) (*ClientCA, error) {
	if caFile == "" {
		return nil, errors.New("client CA: no CA bundle file")
	}
	c := &ClientCA{now: time.Now, ca: watchedFile{path: caFile}}
	for _, f := range crlFiles {
		c.crls = append(c.crls, watchedFile{path: f})
	}
	if _, err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Pool is a copy of the current bundle, for a tls.Config.ClientCAs (which
// keeps it for that config's life: prefer VerifyConnection). A copy, so
// that adding to it cannot change the state Verify reads.
func (c *ClientCA) Pool() *x509.CertPool { return c.state.Load().pool.Clone() }

// Reload re-reads the files that changed since the last load (stat, and a
// content hash for files written within the last seconds, whose stat may
// not show a rewrite) and reports whether the state changed. On error the
// previous state stays in use and the error names the file.
func (c *ClientCA) Reload() (changed bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	ca, changed, err := refreshFile(c.ca, now, maxPEMSize, parseCABundle)
	if err != nil {
		return false, fmt.Errorf("client CA bundle: %w", err)
	}
	crls := make([]watchedFile, len(c.crls))
	for i, w := range c.crls {
		var ch bool
		if crls[i], ch, err = refreshFile(w, now, maxCRLSize, parseCRLs); err != nil {
			return false, fmt.Errorf("CRL: %w", err)
		}
		changed = changed || ch
	}
	var st *clientCAState
	if changed {
		if st, err = buildClientCAState(ca, crls); err != nil {
			return false, err
		}
	}
	c.ca, c.crls = ca, crls
	if st != nil {
		c.state.Store(st)
	}
	return changed, nil
}

// Watch calls Reload every interval (DefaultPollInterval when zero) until
// ctx is done; run it in a goroutine owned by ctx. onErr (may be nil) is
// told of an error when it first appears or changes, not on every tick.
func (c *ClientCA) Watch(ctx context.Context, every time.Duration, onErr func(error)) {
	if every <= 0 {
		every = DefaultPollInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var last string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := c.reloadRecover()
		switch {
		case err == nil:
			last = ""
		case err.Error() != last:
			last = err.Error()
			if onErr != nil {
				onErr(err)
			}
		}
	}
}

// reloadRecover turns a panic in a reload into an error with its stack:
// the state in use stays good, and the next tick may do better.
func (c *ClientCA) reloadRecover() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("client CA reload panicked: %v\n%s", r, debug.Stack())
		}
	}()
	_, err = c.Reload()
	return err
}

// Verify verifies the chain a client presented in a handshake against the
// current state and returns the verified chains; (nil, nil) when the
// client presented no certificate. Errors are *ClientCertError.
func (c *ClientCA) Verify(cs tls.ConnectionState) ([][]*x509.Certificate, error) {
	return c.verify(cs.PeerCertificates)
}

// VerifyConnection is Verify for tls.Config.VerifyConnection, which runs
// on full and resumed handshakes alike.
func (c *ClientCA) VerifyConnection(cs tls.ConnectionState) error {
	_, err := c.Verify(cs)
	return err
}

// VerifyPeer is Verify for raw certificates (leaf first), as
// tls.Config.VerifyPeerCertificate receives them.
func (c *ClientCA) VerifyPeer(rawCerts [][]byte) ([][]*x509.Certificate, error) {
	certs := make([]*x509.Certificate, 0, len(rawCerts))
	for _, der := range rawCerts {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, &ClientCertError{Reason: "unparsable", Err: err}
		}
		certs = append(certs, cert)
	}
	return c.verify(certs)
}

func (c *ClientCA) verify(certs []*x509.Certificate) ([][]*x509.Certificate, error) {
	if len(certs) == 0 {
		return nil, nil
	}
	st := c.state.Load()
	now := c.now()
	opts := x509.VerifyOptions{
		Roots:       st.pool,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if len(certs) > 1 {
		opts.Intermediates = x509.NewCertPool()
		for _, ic := range certs[1:] {
			opts.Intermediates.AddCert(ic)
		}
	}
	chains, err := certs[0].Verify(opts)
	if err != nil {
		return nil, verifyError(err, now)
	}
	if len(st.revoked) == 0 {
		return chains, nil
	}
	// A chain through a revoked certificate is dropped; another path
	// (a cross-signed intermediate) may still stand.
	var good [][]*x509.Certificate
	var first error
	for _, chain := range chains {
		if err := st.checkRevoked(chain); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		good = append(good, chain)
	}
	if len(good) == 0 {
		return nil, first
	}
	return good, nil
}

func verifyError(err error, now time.Time) *ClientCertError {
	var ua x509.UnknownAuthorityError
	var ci x509.CertificateInvalidError
	reason := "invalid"
	switch {
	case errors.As(err, &ua):
		reason = "from an unknown authority"
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		reason = "expired"
		if ci.Cert != nil && now.Before(ci.Cert.NotBefore) {
			reason = "not yet valid"
		}
	case errors.As(err, &ci) && ci.Reason == x509.IncompatibleUsage:
		reason = "not valid for client authentication"
	}
	return &ClientCertError{Reason: reason, Err: err}
}

// checkRevoked looks up every certificate of a verified chain in the
// CRLs of the certificate after it; the last one, a CA of the bundle, in
// revokedAnchors (a self-signed root is never there: no CRL of ours can
// revoke it, the bundle can).
func (st *clientCAState) checkRevoked(chain []*x509.Certificate) error {
	for i, cert := range chain {
		var rev revocation
		var ok bool
		if i+1 < len(chain) {
			rev, ok = st.revoked[revokedKey{issuerID(chain[i+1]), cert.SerialNumber.Text(16)}]
		} else if len(st.revokedAnchors) > 0 {
			rev, ok = st.revokedAnchors[sha256.Sum256(cert.Raw)]
		}
		if !ok {
			continue
		}
		what := "serial"
		if i > 0 {
			what = fmt.Sprintf("chain: intermediate CA %q serial", cert.Subject.String())
		}
		return &ClientCertError{Reason: fmt.Sprintf("%s 0x%s revoked by CRL %s at %s",
			what, strings.ToUpper(cert.SerialNumber.Text(16)), rev.crlFile, rev.at.UTC().Format(time.RFC3339))}
	}
	return nil
}

// issuerID identifies a CA by its name and key: a CRL signed by that key
// under that name speaks for every certificate issued under them, whichever
// certificate (a cross-signed copy, a re-issued root) carries them.
func issuerID(ca *x509.Certificate) [sha256.Size]byte {
	h := sha256.New()
	h.Write(ca.RawSubject)
	h.Write(ca.RawSubjectPublicKeyInfo)
	var id [sha256.Size]byte
	h.Sum(id[:0])
	return id
}

// buildClientCAState compiles files into a state; every CRL must be signed
// by a CA of the bundle.
func buildClientCAState(ca watchedFile, crls []watchedFile) (*clientCAState, error) {
	st := &clientCAState{pool: x509.NewCertPool(), revoked: map[revokedKey]revocation{}}
	for _, cert := range ca.certs {
		st.pool.AddCert(cert)
	}
	for _, f := range crls {
		for _, list := range f.lists {
			issuer := crlIssuer(list, ca.certs)
			if issuer == nil {
				return nil, fmt.Errorf("CRL %s: issued by %q, not signed by any CA in %s", f.path, list.Issuer.String(), ca.path)
			}
			id := issuerID(issuer)
			for _, e := range list.RevokedCertificateEntries {
				st.revoked[revokedKey{id, e.SerialNumber.Text(16)}] = revocation{f.path, e.RevocationTime}
			}
		}
	}
	if len(st.revoked) == 0 {
		return st, nil
	}
	for _, c := range ca.certs {
		for _, p := range ca.certs {
			if p == c || !bytes.Equal(p.RawSubject, c.RawIssuer) || c.CheckSignatureFrom(p) != nil {
				continue
			}
			if rev, ok := st.revoked[revokedKey{issuerID(p), c.SerialNumber.Text(16)}]; ok {
				if st.revokedAnchors == nil {
					st.revokedAnchors = map[[sha256.Size]byte]revocation{}
				}
				st.revokedAnchors[sha256.Sum256(c.Raw)] = rev
			}
		}
	}
	return st, nil
}

func crlIssuer(list *x509.RevocationList, cas []*x509.Certificate) *x509.Certificate {
	for _, ca := range cas {
		if bytes.Equal(ca.RawSubject, list.RawIssuer) && list.CheckSignatureFrom(ca) == nil {
			return ca
		}
	}
	return nil
}

// refreshFile re-reads w when its stat changed or is too recent to
// trust, and parses it when its content changed. Errors begin with the
// file's name.
func refreshFile(w watchedFile, now time.Time, limit int64, parse func([]byte, *watchedFile) error) (watchedFile, bool, error) {
	stamp, err := stampOf(w.path)
	if err != nil {
		return w, false, err // *fs.PathError names the file
	}
	if !w.readAt.IsZero() && stamp.same(w.stamp) && !stamp.racy(w.readAt) {
		return w, false, nil
	}
	data, err := readCapped(w.path, limit)
	if err != nil {
		return w, false, err
	}
	sum := sha256.Sum256(data)
	if !w.readAt.IsZero() && sum == w.sum {
		w.stamp, w.readAt = stamp, now
		return w, false, nil
	}
	next := watchedFile{path: w.path, stamp: stamp, readAt: now, sum: sum}
	if err := parse(data, &next); err != nil {
		return w, false, fmt.Errorf("%s: %w", w.path, err)
	}
	return next, true, nil
}

func parseCABundle(data []byte, w *watchedFile) error {
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return fmt.Errorf("certificate %d: %w", len(w.certs)+1, err)
		}
		w.certs = append(w.certs, cert)
	}
	if len(w.certs) == 0 {
		return errors.New("no PEM certificate found")
	}
	return nil
}

// parseCRLs reads DER, or PEM holding one or more "X509 CRL" blocks.
func parseCRLs(data []byte, w *watchedFile) error {
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		list, err := x509.ParseRevocationList(data)
		if err != nil {
			return err
		}
		w.lists = append(w.lists, list)
		return nil
	}
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "X509 CRL" {
			continue
		}
		list, err := x509.ParseRevocationList(block.Bytes)
		if err != nil {
			return fmt.Errorf("CRL %d: %w", len(w.lists)+1, err)
		}
		w.lists = append(w.lists, list)
	}
	if len(w.lists) == 0 {
		return errors.New("no PEM X509 CRL block found")
	}
	return nil
}

// readCapped reads a whole file of at most limit bytes.
func readCapped(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return b, nil
}
