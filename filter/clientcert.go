package filter

// Forwarding the verified client certificate to backends.
//
// Contract: a backend behind ClientCert can believe the X-Client-Cert-*
// headers. Every request loses whatever the client sent under these names
// (in any case, with dashes or underscores), and gets them back only from
// a certificate the gateway verified. X-Client-Cert-Verified is always
// set: SUCCESS with a verified certificate, NONE without one.

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"net/http"
	"strings"
)

// The headers ClientCert sets, in canonical form.
const (
	// ClientCertSubjectHeader is the subject's distinguished name, as
	// pkix.Name.String writes it (RFC 2253 order and escaping).
	ClientCertSubjectHeader = "X-Client-Cert-Subject"
	// ClientCertSANHeader lists the subject alternative names, ", "
	// separated: DNS names, then emails, URIs and IP addresses. A comma
	// inside a name (legal only in a URI) is written %2C.
	ClientCertSANHeader = "X-Client-Cert-San"
	// ClientCertSerialHeader is the serial number in upper-case hex.
	ClientCertSerialHeader = "X-Client-Cert-Serial"
	// ClientCertFingerprintHeader is the SHA-256 of the certificate's DER,
	// in lower-case hex.
	ClientCertFingerprintHeader = "X-Client-Cert-Fingerprint"
	// ClientCertVerifiedHeader is "SUCCESS" or "NONE".
	ClientCertVerifiedHeader = "X-Client-Cert-Verified"
)

var clientCertHeaders = []string{
	ClientCertSubjectHeader, ClientCertSANHeader, ClientCertSerialHeader,
	ClientCertFingerprintHeader, ClientCertVerifiedHeader,
}

// maxClientCertValue bounds one header value. A longer subject is left
// out, and a longer SAN list stops at the last name that fits: a value is
// never cut, because a cut name or DN can read as another one
// ("CN=admin,O=Evil" cut to "CN=admin").
const maxClientCertValue = 4096

// Shared values of the Verified header; never modified.
var (
	clientCertNone    = []string{"NONE"}
	clientCertSuccess = []string{"SUCCESS"}
)

// ClientCertConfig says where ClientCert finds the verified certificate.
type ClientCertConfig struct {
	// Leaf returns the request's verified client certificate, or nil.
	// Default VerifiedLeaf: the chain crypto/tls verified (ClientAuth
	// VerifyClientCertIfGiven or RequireAndVerifyClientCert). A server
	// that verifies client certificates itself, in
	// tls.Config.VerifyConnection, uses PeerLeaf.
	Leaf func(r *http.Request) *x509.Certificate
}

// VerifiedLeaf returns the leaf of the first chain crypto/tls verified,
// or nil.
func VerifiedLeaf(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil
	}
	return r.TLS.VerifiedChains[0][0]
}

// PeerLeaf returns the certificate the client presented, or nil. Use it
// only on a server whose tls.Config.VerifyConnection fails the handshake
// for every certificate it cannot verify (certs.ClientCA.VerifyConnection
// with ClientAuth RequestClientCert): there, and only there, a presented
// certificate is a verified one. VerifyConnection also runs on resumed
// sessions, so a resumed connection is verified against the current CA
// bundle and CRLs too.
func PeerLeaf(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil
	}
	return r.TLS.PeerCertificates[0]
}

// ClientCert returns next with the client certificate headers set from
// the verified certificate and from nothing else. Without a certificate
// it allocates nothing. With one, the values are computed per request
// (a few microseconds: a SHA-256 of the DER and some strings).
func ClientCert(next http.Handler, cfg ClientCertConfig) http.Handler {
	leaf := cfg.Leaf
	if leaf == nil {
		leaf = VerifiedLeaf
	}
	return &clientCert{next: next, leaf: leaf}
}

type clientCert struct {
	next http.Handler
	leaf func(*http.Request) *x509.Certificate
}

func (f *clientCert) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := r.Header
	deleteNamed(h, clientCertHeaders, false)
	c := f.leaf(r)
	if c == nil {
		h[ClientCertVerifiedHeader] = clientCertNone
		f.next.ServeHTTP(w, r)
		return
	}
	h[ClientCertVerifiedHeader] = clientCertSuccess
	if s := c.Subject.String(); headerSafe(s) {
		h[ClientCertSubjectHeader] = []string{s}
	}
	if s := certSANs(c); s != "" {
		h[ClientCertSANHeader] = []string{s}
	}
	if c.SerialNumber != nil {
		h[ClientCertSerialHeader] = []string{strings.ToUpper(c.SerialNumber.Text(16))}
	}
	sum := sha256.Sum256(c.Raw)
	h[ClientCertFingerprintHeader] = []string{hex.EncodeToString(sum[:])}
	f.next.ServeHTTP(w, r)
}

// certSANs lists c's alternative names that are safe in a header and fit
// in maxClientCertValue.
func certSANs(c *x509.Certificate) string {
	var b strings.Builder
	add := func(name string) bool {
		name = strings.ReplaceAll(name, ",", "%2C")
		if !headerSafe(name) {
			return true // skipped, not cut
		}
		if b.Len() > 0 {
			if b.Len()+2+len(name) > maxClientCertValue {
				return false
			}
			b.WriteString(", ")
		}
		b.WriteString(name)
		return true
	}
	for _, n := range c.DNSNames {
		if !add(n) {
			return b.String()
		}
	}
	for _, n := range c.EmailAddresses {
		if !add(n) {
			return b.String()
		}
	}
	for _, u := range c.URIs {
		if !add(u.String()) {
			return b.String()
		}
	}
	for _, ip := range c.IPAddresses {
		if !add(ip.String()) {
			return b.String()
		}
	}
	return b.String()
}

// headerSafe reports whether s can go into a header value whole: not
// empty, not too long, no control characters (CR and LF would end the
// header; net/http refuses to send the others).
func headerSafe(s string) bool {
	if s == "" || len(s) > maxClientCertValue {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f {
			return false
		}
	}
	return true
}
