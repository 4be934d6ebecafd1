package filter

import (
	"bytes"
	"net/http"
	"strings"

	"github.com/tlsedge/tlsedge/httpsyntax"
)

// Backends that build absolute URLs from their own address (a redirect to
// http://10.0.0.5:8080/login, a cookie for Domain=10.0.0.5) would send the
// client to an address it cannot reach, and tell it the backend's
// address. The response filter rewrites Location, Content-Location and
// Refresh URLs that name a backend to the public scheme and host of the
// request, and drops a Set-Cookie Domain that names a backend (the cookie
// becomes host-only, for the public host).

// rewriteLocation returns v with a leading scheme://backend prefix replaced
// by the request's public origin, or v unchanged. backends may include
// the public host itself: a backend that does not know the client came
// over TLS links to http://public-host.
func rewriteLocation(v, origin string, backends []string) string {
	rest, ok := strings.CutPrefix(v, "http://")
	if !ok {
		if rest, ok = strings.CutPrefix(v, "https://"); !ok {
			return v
		}
	}
	host, path := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		host, path = rest[:i], rest[i:]
	}
	for _, b := range backends {
		if strings.EqualFold(host, b) {
			return origin + path
		}
	}
	return v
}

// rewriteRefresh handles "5; url=http://backend/x".
func rewriteRefresh(v, origin string, backends []string) string {
	i := indexURLEquals(v)
	if i < 0 {
		return v
	}
	return v[:i+4] + rewriteLocation(v[i+4:], origin, backends)
}

// indexURLEquals finds "url=" in any ASCII case. strings.ToLower would
// change the length of invalid UTF-8, and the index with it.
func indexURLEquals(v string) int {
	for i := 0; i+4 <= len(v); i++ {
		if (v[i]|0x20) == 'u' && (v[i+1]|0x20) == 'r' && (v[i+2]|0x20) == 'l' && v[i+3] == '=' {
			return i
		}
	}
	return -1
}

// rewriteCookieDomain drops a Domain attribute that names a backend host.
func rewriteCookieDomain(v string, hosts []string) string {
	if !hasDomainAttr(v) {
		// Nearly every cookie (the sticky cookie among them): no Split,
		// no allocation.
		return v
	}
	return dropCookieDomain(v, hosts)
}

// dropCookieDomain is rewriteCookieDomain without the quick check.
func dropCookieDomain(v string, hosts []string) string {
	parts := strings.Split(v, ";")
	kept := parts[:1]
	changed := false
	for _, p := range parts[1:] {
		name, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(name, "domain") {
			d := strings.TrimPrefix(strings.TrimSpace(val), ".")
			match := false
			for _, h := range hosts {
				match = match || strings.EqualFold(d, h)
			}
			if match {
				changed = true
				continue
			}
		}
		kept = append(kept, p)
	}
	if !changed {
		return v
	}
	return strings.Join(kept, ";")
}

// hasDomainAttr reports whether v may have a Domain attribute: an
// attribute, after a ';' and optional spaces, whose name starts "domain"
// in any case. It errs towards yes; rewriteCookieDomain decides.
func hasDomainAttr[T ~string | ~[]byte](v T) bool {
	for i := indexSemicolon(v); i >= 0; i = indexSemicolon(v) {
		v = v[i+1:]
		j := 0
		for j < len(v) && (v[j] == ' ' || v[j] == '\t') {
			j++
		}
		if len(v)-j >= 6 && httpsyntax.EqualFieldName(v[j:j+6], "domain") {
			return true
		}
	}
	return false
}

// indexSemicolon is strings.IndexByte or bytes.IndexByte (vectorised:
// the sticky cookie's value is long and has no ';').
func indexSemicolon[T ~string | ~[]byte](v T) int {
	if b, ok := any(v).([]byte); ok {
		return bytes.IndexByte(b, ';')
	}
	return strings.IndexByte(string(v), ';')
}

// rewriteURLs applies the rewrites to the response head h of request r.
func (f *respFilter) rewriteURLs(h http.Header, r *http.Request) {
	origin := ""
	var names []string
	for _, name := range []string{"Location", "Content-Location", "Refresh"} {
		vs := h[name]
		if len(vs) == 0 {
			continue
		}
		if origin == "" {
			origin = "https://" + r.Host
			names = f.backends
			if r.TLS == nil {
				origin = "http://" + r.Host
			} else {
				// http://public-host from a backend unaware of TLS, too.
				names = append(append(make([]string, 0, len(f.backends)+1), f.backends...), r.Host)
			}
		}
		for i, v := range vs {
			if name == "Refresh" {
				vs[i] = rewriteRefresh(v, origin, names)
			} else {
				vs[i] = rewriteLocation(v, origin, names)
			}
		}
	}
	// Copy on write: a Set-Cookie slice may be shared between responses
	// (the sticky cookie of new sessions is encoded once a second and its
	// slice handed to every response of that second).
	cookies, copied := h["Set-Cookie"], false
	for i, v := range cookies {
		if nv := rewriteCookieDomain(v, f.backendHosts); nv != v {
			if !copied {
				cookies, copied = append([]string(nil), cookies...), true
				h["Set-Cookie"] = cookies
			}
			cookies[i] = nv
		}
	}
}
