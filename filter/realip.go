package filter

// The real client address behind trusted proxies.
//
// Contract: after RealIP, r.RemoteAddr is the client's address: the peer's
// own when the peer is not a trusted proxy, or the one the trusted proxies
// report in X-Forwarded-For (or, without it, RFC 7239 Forwarded). The
// forwarding headers of an untrusted peer are deleted, never believed:
// anyone can write them, and the proxy layer appends the real address
// itself. Filters after RealIP (IPACL, RateLimit, the access log) read
// r.RemoteAddr and nothing else.

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// RealIPConfig names the proxies whose forwarding headers are believed.
type RealIPConfig struct {
	// Trusted are the proxies' CIDR prefixes or single addresses (a load
	// balancer's subnet, a CDN's ranges). Empty: no one is trusted, and
	// every request's forwarding headers are dropped.
	Trusted []string
}

// Forwarding headers, in canonical form.
const (
	xForwardedFor = "X-Forwarded-For"
	xRealIP       = "X-Real-Ip"
	forwarded     = "Forwarded"
)

var forwardingHeaders = []string{xForwardedFor, xRealIP, forwarded}

// TrustedSet is a compiled list of trusted proxies; the zero value trusts
// no one. It is read-only after ParseTrusted, so safe for concurrent use:
// the server uses the same set to decide whether to accept a PROXY
// protocol header on a connection.
type TrustedSet struct {
	prefixes []netip.Prefix
}

// ParseTrusted compiles a list of CIDR prefixes and single addresses (see
// ParsePrefix).
func ParseTrusted(list []string) (TrustedSet, error) {
	p, err := parsePrefixes(list)
	if err != nil {
		return TrustedSet{}, err
	}
	return TrustedSet{prefixes: p}, nil
}

// Contains reports whether a (IPv4-mapped or not) is a trusted proxy. An
// invalid address is not.
func (s TrustedSet) Contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// RealIP returns next behind the real client address. For a trusted peer,
// the address list is walked from the right (the entry the nearest proxy
// wrote) to the left, past trusted proxies; the first untrusted address is
// the client, as with nginx's real_ip_recursive and HAProxy. When every
// entry is trusted the leftmost is the client. An entry that is not an
// address ("unknown", an obfuscated identifier, garbage) stops the walk:
// the client is then the last good entry before it (a trusted proxy),
// or, if there is none, the peer itself, r.RemoteAddr unchanged. Empty
// entries are skipped.
//
// X-Forwarded-For lines are read as one comma-separated list (RFC 9110
// section 5.3); Forwarded is read only when there is no X-Forwarded-For.
// X-Real-Ip is never read: it holds one address, not a chain.
//
// The new r.RemoteAddr is "ip:port" with the port the header gave (a
// Forwarded for="[2001:db8::1]:4711", an X-Forwarded-For "192.0.2.1:5000")
// or port 0 when it gave none: the peer's port is the proxy's, and would
// be a lie about the client.
//
// Headers of a trusted peer are left as they are. Underscore spellings
// (X_Forwarded_For), which some backends read as the dashed header, are
// dropped from every request.
func RealIP(next http.Handler, cfg RealIPConfig) (http.Handler, error) {
	set, err := ParseTrusted(cfg.Trusted)
	if err != nil {
		return nil, fmt.Errorf("trusted proxies: %w", err)
	}
	return &realIP{next: next, trusted: set}, nil
}

type realIP struct {
	next    http.Handler
	trusted TrustedSet
}

// ServeHTTP allocates nothing unless the peer is trusted and sent a
// header (the new RemoteAddr string).
func (f *realIP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := r.Header
	if len(f.trusted.prefixes) == 0 || !f.trusted.Contains(clientAddr(r.RemoteAddr)) {
		deleteNamed(h, forwardingHeaders, false)
		f.next.ServeHTTP(w, r)
		return
	}
	deleteNamed(h, forwardingHeaders, true)
	if c, ok := f.client(h); ok {
		r.RemoteAddr = c.String()
	}
	f.next.ServeHTTP(w, r)
}

// client finds the client in a trusted peer's headers.
func (f *realIP) client(h http.Header) (netip.AddrPort, bool) {
	wk := clientWalker{trusted: &f.trusted}
	if xff := h[xForwardedFor]; len(xff) > 0 {
		for _, line := range xff {
			wk.xffLine(line)
		}
	} else {
		for _, line := range h[forwarded] {
			wk.forwardedLine(line)
		}
	}
	return wk.cand, wk.have
}

// clientWalker finds the client in one left-to-right pass, so that neither
// header needs splitting into a slice (nor quadratic rescanning of
// Forwarded's quoted strings from the right). The right-to-left walk's
// answer is the rightmost entry that is untrusted with only trusted
// entries after it, or trusted and leftmost or just after a malformed
// entry. So: an untrusted entry becomes the candidate; a malformed entry
// clears it; a trusted entry becomes the candidate only when there is
// none.
type clientWalker struct {
	trusted *TrustedSet
	cand    netip.AddrPort
	have    bool
}

func (wk *clientWalker) add(a netip.AddrPort, ok bool) {
	switch {
	case !ok:
		wk.have = false
	case !wk.have || !wk.trusted.Contains(a.Addr()):
		wk.cand, wk.have = a, true
	}
}

func (wk *clientWalker) xffLine(line string) {
	for line != "" {
		entry := line
		if i := strings.IndexByte(line, ','); i >= 0 {
			entry, line = line[:i], line[i+1:]
		} else {
			line = ""
		}
		if entry = strings.Trim(entry, " \t"); entry != "" {
			wk.add(parseForwardedNode(entry))
		}
	}
}

// forwardedLine reads one Forwarded line (RFC 7239 section 4):
// elements separated by commas, each of name=value pairs separated by
// semicolons, a value a token or a quoted string. The "for" value is the
// address. An element without one (or with two) counts as malformed;
// a line that stops making sense counts as one malformed entry and the
// rest of it is ignored. Unquoted values are read leniently (up to a
// separator), since proxies write for=192.0.2.1:80 unquoted too.
func (wk *clientWalker) forwardedLine(line string) {
	var forVal string
	pairs, fors := 0, 0
	endElement := func() {
		if pairs > 0 {
			if fors == 1 {
				wk.add(parseForwardedNode(forVal))
			} else {
				wk.add(netip.AddrPort{}, false)
			}
		}
		pairs, fors = 0, 0
	}
	i := 0
	for {
		i = skipForwardedOWS(line, i)
		if i == len(line) {
			break
		}
		switch line[i] {
		case ',':
			endElement()
			i++
			continue
		case ';':
			i++
			continue
		}
		j := i
		for j < len(line) && isForwardedTchar(line[j]) {
			j++
		}
		if j == i || j == len(line) || line[j] != '=' {
			wk.add(netip.AddrPort{}, false)
			return
		}
		name := line[i:j]
		j++
		var val string
		if j < len(line) && line[j] == '"' {
			end := strings.IndexByte(line[j+1:], '"')
			if end < 0 {
				wk.add(netip.AddrPort{}, false)
				return
			}
			val, j = line[j+1:j+1+end], j+2+end
			if strings.IndexByte(val, '\\') >= 0 { // a quoted-pair: no address needs one
				wk.add(netip.AddrPort{}, false)
				return
			}
		} else {
			k := j
			for k < len(line) && !strings.ContainsRune(",; \t\"", rune(line[k])) {
				k++
			}
			val, j = line[j:k], k
		}
		pairs++
		if strings.EqualFold(name, "for") {
			forVal = val
			fors++
		}
		i = skipForwardedOWS(line, j)
		if i < len(line) && line[i] != ';' && line[i] != ',' {
			wk.add(netip.AddrPort{}, false)
			return
		}
	}
	endElement()
}

func skipForwardedOWS(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// isForwardedTchar reports an RFC 9110 tchar.
func isForwardedTchar(c byte) bool {
	return c < 0x7f && c > ' ' && !strings.ContainsRune("\"(),/:;<=>?@[\\]{}", rune(c))
}

// parseForwardedNode reads one address entry: 192.0.2.1, 192.0.2.1:80, 2001:db8::1,
// [2001:db8::1] or [2001:db8::1]:80; a Forwarded port may also be an
// obfuscated _identifier (RFC 7239 section 6.3), which reads as port 0.
// Zones are refused (no one else's interface names mean anything here).
func parseForwardedNode(s string) (netip.AddrPort, bool) {
	host, port, bracketed := s, "", false
	if s != "" && s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.AddrPort{}, false
		}
		host, port, bracketed = s[1:end], s[end+1:], true
		if port != "" {
			if port[0] != ':' {
				return netip.AddrPort{}, false
			}
			port = port[1:]
			if port == "" {
				return netip.AddrPort{}, false
			}
		}
	} else if i := strings.IndexByte(s, ':'); i >= 0 && strings.IndexByte(s[i+1:], ':') < 0 {
		// One colon: IPv4 and a port. An IPv6 address has at least two.
		host, port = s[:i], s[i+1:]
		if port == "" {
			return netip.AddrPort{}, false
		}
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" || bracketed && !a.Is6() {
		return netip.AddrPort{}, false
	}
	var p uint16
	if port != "" && port[0] == '_' {
		for i := 1; i < len(port); i++ {
			if c := port[i]; !(c == '.' || c == '_' || c == '-' || '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'z') {
				return netip.AddrPort{}, false
			}
		}
	} else if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return netip.AddrPort{}, false
		}
		p = uint16(n)
	}
	return netip.AddrPortFrom(a.Unmap(), p), true
}

// deleteNamed deletes the keys that read as one of names (canonical,
// dashed) in any case and with underscores read as dashes; with
// underscoredOnly, only those spelled with an underscore (X_Forwarded_For,
// x_client_cert_subject). CGI-style backends (PHP, WSGI, Rack) see both
// spellings as one variable, so a client could otherwise smuggle a value
// past a filter that deletes only the dashed name. It is one pass over h:
// a header map has a handful of keys, and comparing each with names (by
// length first) costs less than a hashed delete per name on top of the
// pass that underscores need anyway.
func deleteNamed(h http.Header, names []string, underscoredOnly bool) {
	for k := range h {
		for _, n := range names {
			if len(k) == len(n) && sameUnderscored(k, n) {
				if !underscoredOnly || strings.IndexByte(k, '_') >= 0 {
					delete(h, k)
				}
				break
			}
		}
	}
}

func sameUnderscored(k, name string) bool {
	if len(k) != len(name) {
		return false
	}
	for i := 0; i < len(k); i++ {
		c, n := asciiLowerByte(k[i]), asciiLowerByte(name[i])
		if c == '_' {
			c = '-'
		}
		if c != n {
			return false
		}
	}
	return true
}

func asciiLowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
