package metrics

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
)

// Connection protocols, in the order of protoNames.
var protoNames = [...]string{"h1", "h2", "tcp", "other"}

const numProtos = len(protoNames)

func protoIndex(proto string) int {
	switch proto {
	case "h1":
		return 0
	case "h2":
		return 1
	case "tcp":
		return 2
	}
	return numProtos - 1
}

// TLS versions, in the order of versionNames.
var versionNames = [...]string{"1.0", "1.1", "1.2", "1.3", "other"}

const numVersions = len(versionNames)

func versionIndex(v uint16) int {
	switch v {
	case tls.VersionTLS10:
		return 0
	case tls.VersionTLS11:
		return 1
	case tls.VersionTLS12:
		return 2
	case tls.VersionTLS13:
		return 3
	}
	return numVersions - 1
}

// Handshake failure reasons, in the order of hsReasonNames.
const (
	hsTimeout = iota
	hsEOF
	hsNotTLS
	hsProtocolVersion
	hsNoCipher
	hsUnknownSNI
	hsBadCertificate
	hsClientCert
	hsOther
	numHSReasons
)

var hsReasonNames = [numHSReasons]string{
	"timeout", "eof", "not_tls", "protocol_version", "no_cipher",
	"unknown_sni", "bad_certificate", "client_cert", "other",
}

// ConnOpened counts a client connection whose protocol is known: "h1" or
// "h2" once ALPN has chosen, "tcp" for a TCP service; any other value is
// counted as "other". Pair every call with ConnClosed(proto).
func (m *Metrics) ConnOpened(proto string) {
	if m == nil {
		return
	}
	i := protoIndex(proto)
	m.connOpened[i].Inc()
	m.connsActive[i].Add(1)
}

// ConnClosed ends a connection counted by ConnOpened(proto).
func (m *Metrics) ConnClosed(proto string) {
	if m != nil {
		m.connsActive[protoIndex(proto)].Add(-1)
	}
}

// StreamOpened counts an HTTP/2 stream a client opened. Pair every call
// with StreamClosed.
func (m *Metrics) StreamOpened() {
	if m != nil {
		m.streams.Inc()
		m.streamsActive.Add(1)
	}
}

// StreamClosed ends a stream counted by StreamOpened.
func (m *Metrics) StreamClosed() {
	if m != nil {
		m.streamsActive.Add(-1)
	}
}

// Handshake records the end of a server-side TLS handshake: a success by
// version (tls.ConnectionState.Version) when err is nil, otherwise a
// failure by HandshakeFailureReason(err); version is then ignored.
func (m *Metrics) Handshake(version uint16, err error) {
	if m == nil {
		return
	}
	if err == nil {
		m.hsOK[versionIndex(version)].Inc()
		return
	}
	m.hsFail[hsReason(err)].Inc()
}

// HandshakeFailureReason classifies the error of a failed server-side
// handshake into the bounded reason label of
// tlsedge_tls_handshake_failures_total:
//
//   - timeout: the handshake deadline passed;
//   - eof: the client closed or reset the connection mid-handshake;
//   - not_tls: the first bytes were not a TLS record (plain HTTP on 443);
//   - protocol_version: no TLS version in common, SSLv2, a bad record
//     version or an inappropriate fallback;
//   - no_cipher: no cipher suite, key exchange or point format in common;
//   - unknown_sni: no certificate for the requested name (errors from
//     GetCertificate: crypto/tls's, certs', certmagic's);
//   - bad_certificate: the client rejected our certificate (its alert);
//   - client_cert: the client's certificate was missing or rejected;
//   - other: anything else.
//
// crypto/tls reports most of these only as text (its alert type is not
// exported), hence matching on the message; the patterns are those of
// crypto/tls in Go 1.26 and of this repository's certs package. The
// classification runs on failures only, never on the request path.
func HandshakeFailureReason(err error) string {
	if err == nil {
		return ""
	}
	return hsReasonNames[hsReason(err)]
}

func hsReason(err error) int {
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout()) {
		return hsTimeout
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return hsEOF
	}
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		// A server verifies only client certificates.
		return hsClientCert
	}
	s := err.Error()
	for _, p := range hsPatterns {
		if strings.Contains(s, p.text) {
			return p.reason
		}
	}
	return hsOther
}

// hsPatterns are tried in order; the first substring found decides.
var hsPatterns = []struct {
	text   string
	reason int
}{
	{"does not look like a TLS handshake", hsNotTLS},
	// The client's alerts: it distrusts our certificate.
	{"remote error: tls: bad certificate", hsBadCertificate},
	{"remote error: tls: unknown certificate", hsBadCertificate}, // also "... authority"
	{"remote error: tls: expired certificate", hsBadCertificate},
	{"remote error: tls: revoked certificate", hsBadCertificate},
	{"remote error: tls: unsupported certificate", hsBadCertificate},
	{"remote error: tls: protocol version not supported", hsProtocolVersion},
	// The client's certificate, as crypto/tls and certs.ClientCertError
	// report it.
	{"client didn't provide a certificate", hsClientCert},
	{"failed to verify certificate", hsClientCert},
	{"client certificate", hsClientCert},
	{"client sent certificate", hsClientCert},
	{"invalid signature by the client", hsClientCert},
	// Versions.
	{"unsupported versions", hsProtocolVersion},
	{"TLS version older than", hsProtocolVersion},
	{"unsupported SSLv2 handshake", hsProtocolVersion},
	{"received record with version", hsProtocolVersion},
	{"inappropriate protocol fallback", hsProtocolVersion},
	{"legacy version field", hsProtocolVersion},
	// Algorithms.
	{"no cipher suite supported", hsNoCipher},
	{"no key exchanges supported", hsNoCipher},
	{"incompatible point formats", hsNoCipher},
	{"no FIPS compatible", hsNoCipher},
	// No certificate for the name: crypto/tls ("no certificates
	// configured"), certs ("certs: no certificate", "certs: certificate
	// for ..." wrapping a source's refusal, "no certificate yet for"),
	// certmagic ("no certificate available for").
	{"no certificate", hsUnknownSNI},
	{"certs: certificate for", hsUnknownSNI},
	{"certs: default certificate for", hsUnknownSNI},
}
