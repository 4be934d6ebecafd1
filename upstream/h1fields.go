package upstream

import (
	"net/http"
	"strings"

	"github.com/tlsedge/tlsedge/httpsyntax"
)

// Field rules shared by the request writer and the response parser.

// fieldKind classifies a field name (any case) for forwarding.
type fieldKind uint8

const (
	fieldPlain fieldKind = iota
	// fieldHop is connection-level (RFC 9110 section 7.6.1) and never
	// forwarded: Connection, Keep-Alive, Proxy-Connection, Trailer,
	// Transfer-Encoding, Upgrade, every Proxy-* field, and "Proxy" itself
	// (httpoxy: CGI backends turn it into HTTP_PROXY).
	fieldHop
	// fieldTrailer announces trailer fields: passed on with a chunked
	// response (net/http's server then keeps chunking so that the trailers
	// can follow), dropped elsewhere.
	fieldTrailer
	fieldTE            // TE: only "trailers" passes, and only in requests
	fieldContentLength // framing: the proxy writes its own
	fieldHost          // written from r.Host
	fieldForwarded     // Forwarded, X-Forwarded-*: the client's claims are dropped, ours written
)

// classifyField returns the kind of the field named name, compared
// case-insensitively (header maps filled by hand may hold any case).
func classifyField[S ~string | ~[]byte](name S) fieldKind {
	switch len(name) {
	case 2:
		if equalFold(name, "Te") {
			return fieldTE
		}
	case 4:
		if equalFold(name, "Host") {
			return fieldHost
		}
	case 5:
		if equalFold(name, "Proxy") {
			return fieldHop
		}
	case 7:
		if equalFold(name, "Upgrade") {
			return fieldHop
		}
		if equalFold(name, "Trailer") {
			return fieldTrailer
		}
	case 9:
		if equalFold(name, "Forwarded") {
			return fieldForwarded
		}
	case 10:
		if equalFold(name, "Connection") || equalFold(name, "Keep-Alive") {
			return fieldHop
		}
	case 14:
		if equalFold(name, "Content-Length") {
			return fieldContentLength
		}
	case 15:
		if equalFold(name, "X-Forwarded-For") {
			return fieldForwarded
		}
	case 16:
		if equalFold(name, "X-Forwarded-Host") {
			return fieldForwarded
		}
	case 17:
		if equalFold(name, "Transfer-Encoding") {
			return fieldHop
		}
		if equalFold(name, "X-Forwarded-Proto") {
			return fieldForwarded
		}
	}
	if len(name) > 6 && equalFold(name[:6], "Proxy-") {
		return fieldHop
	}
	return fieldPlain
}

// isToken reports whether v is an RFC 9110 token (section 5.6.2).
func isToken(v string) bool { return httpsyntax.IsToken(v) }

// validFieldValue reports whether v may be sent as a field value: no
// control characters but HTAB (so no CR, LF or NUL), obs-text allowed.
func validFieldValue(v string) bool { return httpsyntax.ValidFieldValue(v) }

// hasToken reports whether the comma-separated lists in values contain
// token (case-insensitive), as in Connection: keep-alive, Upgrade.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for v != "" {
			var t string
			t, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(httpsyntax.TrimOWS(t), token) {
				return true
			}
		}
	}
	return false
}

// isCanonical reports whether the token k is already in the form
// http.CanonicalHeaderKey gives it: upper case at the start and after each
// hyphen, lower case elsewhere.
func isCanonical(k string) bool {
	upper := true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return false
		}
		upper = c == '-'
	}
	return true
}

// canonicalKey returns k in canonical form, allocating only when k is not
// canonical already. k must be a token.
func canonicalKey(k string) string {
	if isCanonical(k) {
		return k
	}
	return http.CanonicalHeaderKey(k)
}
