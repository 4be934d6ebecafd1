package filter

// Path normalisation gives every later rule, route and the backend one
// spelling of the request path, so that a rule on /admin cannot be walked
// around with /%61dmin, /x/../admin or //admin. Where two servers could
// read a path two ways (an encoded slash, a backslash, a NUL), tlsedge
// refuses the request rather than guess: 400, like HAProxy's and nginx's
// strict modes. Paths are case-sensitive (RFC 3986 6.2.2.1): /ADMIN is
// another path than /admin and is not folded.
//
//	input                       normal form    why
//	/admin, /a/b/               unchanged      already normal: no allocation
//	/%61dmin, /%7e, /%41        /admin, /~, /A unreserved escapes decoded (RFC 3986 2.3)
//	/a%3f, /a%c3%a9             /a%3F, /a%C3%A9 other escapes kept, hex uppercased (6.2.2.1)
//	/a b, /é, /a"               /a%20b, /%C3%A9, /a%22  characters a path cannot hold, escaped
//	//admin, /a//b//            /admin, /a/b/  repeated slashes merged (first: /a//../b is /b)
//	/x/../admin, /a/%2e%2e/x    /admin, /x     dot segments resolved (5.2.4), encoded ones too
//	/admin/., /admin/./         /admin/        a dot segment at the end leaves a slash
//	/admin/                     /admin/        trailing slash kept
//	/.., /%2e%2e/admin          error          climbs above the root
//	/admin%2f.., /a%2Fb         error          encoded slash (kept with AllowEncodedSlash)
//	/a%5cb, /a\b                error          backslash: some servers take it for /
//	/a%00, /a<NUL>              error          NUL
//	/a<LF>, /a<DEL>             error          a raw control character
//	/%zz, /a%4                  error          bad percent-escape
//	a/b                         error          not absolute
//	*                           *              asterisk-form (OPTIONS *), left to the caller
//
// With AllowEncodedSlash, %2F stays as is and is part of its segment, but
// a "." or ".." next to it (/a%2F..%2Fadmin) is refused: a backend that
// decodes before resolving would see /a/../admin.

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// The reasons a path is refused; the 400 body names them.
var (
	ErrPathNotAbsolute  = errors.New("path does not start with /")
	ErrPathAboveRoot    = errors.New("path climbs above the root")
	ErrPathBadEscape    = errors.New("bad percent-escape in path")
	ErrPathEncodedSlash = errors.New("encoded slash (%2F) in path")
	ErrPathEncodedDots  = errors.New("dot segment next to an encoded slash in path")
	ErrPathBackslash    = errors.New("backslash in path")
	ErrPathNUL          = errors.New("NUL in path")
	ErrPathControl      = errors.New("control character in path")
)

// PathNormConfig tunes PathNorm; the zero value is the strict default.
type PathNormConfig struct {
	// AllowEncodedSlash keeps %2F in paths instead of refusing them, for
	// apps whose path segments hold slashes (object names, Git refs).
	// Rules then see "a%2Fb" as one segment, as the backend should.
	AllowEncodedSlash bool
}

// NormalizePath returns p's normal form (see the table above) or why p is
// refused; %2F is refused. An already normal p is returned as is, without
// allocating. p is an escaped path, as url.URL.EscapedPath returns it.
func NormalizePath(p string) (string, error) { return normalizePath(p, false) }

// PathNorm returns next behind path normalisation: r.URL.Path and
// r.URL.RawPath are replaced by the normal form (r.RequestURI keeps what
// the client sent, for the access log); a refused path is answered 400
// with the reason and never reaches next. An empty path (absolute-form
// "http://host" without one) is taken for "/", except for CONNECT, whose
// target is an authority. Normal paths, most of them, cost no allocation.
func PathNorm(next http.Handler, cfg PathNormConfig) (http.Handler, error) {
	return &pathNorm{next: next, allowSlash: cfg.AllowEncodedSlash}, nil
}

type pathNorm struct {
	next       http.Handler
	allowSlash bool
}

func (f *pathNorm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ep := r.URL.EscapedPath()
	if ep == "" {
		if r.Method == http.MethodConnect {
			f.next.ServeHTTP(w, r)
			return
		}
		ep = "/"
		r.URL.Path = "/"
	}
	n, err := normalizePath(ep, f.allowSlash)
	if err != nil {
		h := w.Header()
		h["Content-Type"] = []string{"text/plain; charset=utf-8"}
		MarkGenerated(w)
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, "400 bad request: "+err.Error()+"\n") //nolint:errcheck // the client may be gone
		return
	}
	if n != ep {
		p, _ := url.PathUnescape(n) // cannot fail: n's escapes are valid
		r.URL.Path, r.URL.RawPath = p, n
	}
	f.next.ServeHTTP(w, r)
}

func normalizePath(p string, allowSlash bool) (string, error) {
	if p == "*" {
		return p, nil
	}
	if isNormalPath(p, allowSlash) {
		return p, nil
	}
	return rebuildPath(p, allowSlash)
}

// Byte classes of a path (RFC 3986 3.3).
const (
	pnEscape     = iota // must be percent-encoded
	pnUnreserved        // ALPHA DIGIT - . _ ~
	pnLiteral           // sub-delims, ':' and '@': kept as they are
	pnRefused           // backslash and control characters
)

var pnClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', strings.IndexByte("-._~", byte(c)) >= 0:
			t[c] = pnUnreserved
		case strings.IndexByte("!$&'()*+,;=:@", byte(c)) >= 0:
			t[c] = pnLiteral
		case c < ' ' || c == 0x7f || c == '\\':
			t[c] = pnRefused
		}
	}
	return t
}()

// isNormalPath is the fast path: it says whether rebuildPath would return
// p unchanged, without building anything.
func isNormalPath(p string, allowSlash bool) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	seg := 1 // start of the current segment
	for i := 1; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			switch p[seg:i] {
			case "":
				if i < len(p) {
					return false // "//"
				}
			case ".", "..":
				return false
			}
			seg = i + 1
			continue
		}
		switch c := p[i]; {
		case c == '%':
			if i+2 >= len(p) || !pnUpperHex(p[i+1]) || !pnUpperHex(p[i+2]) {
				return false
			}
			switch v := pnUnhex(p[i+1])<<4 | pnUnhex(p[i+2]); {
			case pnClass[v] == pnUnreserved, v == 0, v == '\\':
				return false
			case v == '/':
				if !allowSlash || pnDotsAroundSlash(p[seg:]) {
					return false
				}
			}
			i += 2
		case pnClass[c] != pnUnreserved && pnClass[c] != pnLiteral:
			return false
		}
	}
	return true
}

// rebuildPath writes p's normal form segment by segment, resolving dot
// segments as they come: out never ends in '/' while it is built.
func rebuildPath(p string, allowSlash bool) (string, error) {
	if p == "" || p[0] != '/' {
		return "", ErrPathNotAbsolute
	}
	out := make([]byte, 0, len(p)+8)
	trailing := false
	for i := 1; i <= len(p); {
		end := strings.IndexByte(p[i:], '/')
		if end < 0 {
			end = len(p)
		} else {
			end += i
		}
		seg, last := p[i:end], end == len(p)
		i = end + 1
		if seg == "" { // a repeated slash, or the trailing one
			trailing = trailing || last
			continue
		}
		mark := len(out)
		out = append(out, '/')
		var err error
		if out, err = appendSegment(out, seg, allowSlash); err != nil {
			return "", err
		}
		switch string(out[mark+1:]) {
		case ".":
			out, trailing = out[:mark], true
		case "..":
			if mark == 0 {
				return "", ErrPathAboveRoot
			}
			out = out[:bytes.LastIndexByte(out[:mark], '/')]
			trailing = true
		default:
			trailing = false
		}
	}
	if len(out) == 0 {
		return "/", nil
	}
	if trailing {
		out = append(out, '/')
	}
	return string(out), nil
}

// appendSegment appends seg's normal form to out.
func appendSegment(out []byte, seg string, allowSlash bool) ([]byte, error) {
	const hex = "0123456789ABCDEF"
	start := len(out)
	slash := false
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if c == '%' {
			if i+2 >= len(seg) || !pnIsHex(seg[i+1]) || !pnIsHex(seg[i+2]) {
				return nil, ErrPathBadEscape
			}
			v := pnUnhex(seg[i+1])<<4 | pnUnhex(seg[i+2])
			i += 2
			switch {
			case pnClass[v] == pnUnreserved:
				out = append(out, v)
				continue
			case v == 0:
				return nil, ErrPathNUL
			case v == '\\':
				return nil, ErrPathBackslash
			case v == '/':
				if !allowSlash {
					return nil, ErrPathEncodedSlash
				}
				slash = true
			}
			out = append(out, '%', hex[v>>4], hex[v&15])
			continue
		}
		switch pnClass[c] {
		case pnUnreserved, pnLiteral:
			out = append(out, c)
		case pnRefused:
			switch c {
			case 0:
				return nil, ErrPathNUL
			case '\\':
				return nil, ErrPathBackslash
			}
			return nil, ErrPathControl
		default:
			out = append(out, '%', hex[c>>4], hex[c&15])
		}
	}
	if slash && pnDotsAroundSlash(string(out[start:])) {
		return nil, ErrPathEncodedDots
	}
	return out, nil
}

// pnDotsAroundSlash reports whether a normalised segment (or the rest of
// a path from a segment's start) has "." or ".." between encoded slashes
// or the segment's ends.
func pnDotsAroundSlash(seg string) bool {
	if i := strings.IndexByte(seg, '/'); i >= 0 {
		seg = seg[:i]
	}
	for {
		piece, rest, more := strings.Cut(seg, "%2F")
		if piece == "." || piece == ".." {
			return true
		}
		if !more {
			return false
		}
		seg = rest
	}
}

func pnIsHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func pnUpperHex(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' }

func pnUnhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// NormalizePathWith is NormalizePath with cfg's settings (the router
// normalises with AllowEncodedSlash, so that only the app decides whether
// %2F is refused).
func NormalizePathWith(p string, cfg PathNormConfig) (string, error) {
	return normalizePath(p, cfg.AllowEncodedSlash)
}
