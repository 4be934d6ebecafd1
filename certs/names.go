// Package certs provides the certificates tlsedge serves: static files with
// SNI selection and hot reload, a local CA that issues certificates on first
// use (like Caddy's `tls internal`), and a Selector that composes sources into
// a tls.Config.GetCertificate function.
//
// Every source implements the small Source interface; an ACME source can be
// added later without touching the others.
package certs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// ErrNoCertificate is returned when no source, and no default, has a
// certificate to offer.
var ErrNoCertificate = errors.New("certs: no certificate")

// normalizeName returns the lookup key for a host name or IP literal: lower
// case, without one trailing dot ("example.com." names the same host), and IP
// literals in canonical form so "::0001" finds the certificate for "::1".
func normalizeName(name string) string {
	name = strings.TrimSuffix(name, ".")
	if addr, err := netip.ParseAddr(name); err == nil {
		return addr.Unmap().WithZone("").String()
	}
	return strings.ToLower(name)
}

// isIPKey reports whether a normalized key is an IP literal. IP literals are
// never matched against wildcards: "*.0.0.1" must not cover "127.0.0.1".
func isIPKey(key string) bool {
	_, err := netip.ParseAddr(key)
	return err == nil
}

// wildcardKey returns the pattern that covers a normalized host name with one
// wildcard label ("a.example.com" -> "*.example.com"), and the label it
// replaces. Like browsers (RFC 6125 section 6.4.3), a wildcard covers exactly
// one label: "a.b.example.com" gives "*.b.example.com", never "*.example.com".
func wildcardKey(key string) (pattern, label string) {
	i := strings.IndexByte(key, '.')
	if i <= 0 || i == len(key)-1 || isIPKey(key) {
		return "", ""
	}
	return "*" + key[i:], key[:i]
}

// helloName is the name a handshake asks for: the SNI server name, or, when
// the client sent none (RFC 6066 forbids IP literals in SNI, so a client
// dialing https://127.0.0.1/ sends nothing), the local IP address it dialed.
func helloName(hello *tls.ClientHelloInfo) string {
	if hello == nil {
		return ""
	}
	if hello.ServerName != "" {
		return normalizeName(hello.ServerName)
	}
	if hello.Conn == nil {
		return ""
	}
	if a, ok := hello.Conn.LocalAddr().(*net.TCPAddr); ok {
		if addr := a.AddrPort().Addr(); addr.IsValid() {
			return addr.Unmap().WithZone("").String()
		}
	}
	return ""
}

// validLabel reports whether s is a host name label: 1-63 letters, digits and
// hyphens (RFC 1123 section 2.1), lower case since keys are normalized.
func validLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// parseHostPattern validates a configured host ("app.example.com",
// "*.example.com", "10.0.0.5") and returns its normalized key. Only a whole
// leftmost "*" label is a wildcard; "a*.example.com" and "a.*.com" are errors,
// as browsers would never match them.
func parseHostPattern(host string) (string, error) {
	key := normalizeName(host)
	if key == "" {
		return "", errors.New("empty host")
	}
	if isIPKey(key) {
		return key, nil
	}
	if len(key) > 253 {
		return "", fmt.Errorf("host longer than 253 characters (%d)", len(key))
	}
	rest := strings.TrimPrefix(key, "*.")
	for _, label := range strings.Split(rest, ".") {
		if !validLabel(label) {
			return "", fmt.Errorf("invalid label %q (want letters, digits, '-'; a wildcard only as the whole first label)", label)
		}
	}
	return key, nil
}

// fileStem turns a validated key into a file name: "*" and ":" are not
// portable in file names. Validated keys never contain "_", so the mapping is
// one to one.
func fileStem(key string) string {
	return strings.NewReplacer("*", "_wildcard", ":", "_").Replace(key)
}
