package tlsedge

import (
	"bufio"
	"bytes"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"github.com/tlsedge/tlsedge/httpsyntax"
)

// This file reads an HTTP/1.1 request head (RFC 9112) into a reused
// http.Request. It is strict where leniency is what request smuggling
// feeds on: one framing, no whitespace before the colon, no obs-fold, no
// bare CR or NUL, one Host. Every refusal carries the status to answer.

// Limits on a request head. Beyond them the request is refused, never
// forwarded.
const (
	maxRequestLine  = 8 << 10  // 414 URI Too Long
	maxHeaderBytes  = 64 << 10 // 431 for the whole head
	maxHeaderFields = 100      // 431
)

// headError is a refused request head: the status to answer and why.
type headError struct {
	status int
	reason string
}

func (e *headError) Error() string { return "bad request head: " + e.reason }

func badHead(status int, reason string) *headError { return &headError{status: status, reason: reason} }

var (
	errHeadTooLarge = badHead(http.StatusRequestHeaderFieldsTooLarge, "request head too large")
	errLineTooLong  = badHead(http.StatusRequestURITooLong, "request line too long")
)

// requestHead is what the parser fills besides the http.Request: framing
// decisions the connection loop needs.
type requestHead struct {
	chunked   bool  // Transfer-Encoding: chunked
	length    int64 // Content-Length, -1 when chunked, 0 without body
	keepAlive bool  // the client wants the connection kept
	expect100 bool  // Expect: 100-continue
}

// headReader reads one request head from br. scratch is reused between
// requests of a connection.
type headReader struct {
	br    *bufio.Reader
	block []byte   // the head's bytes, copied; request strings are sliced from one string of it
	lines [][2]int // offsets of header lines within block
	vals  []string // backing array for header value slices
}

// readLine returns one line without its line ending. A line may end in
// CRLF or a bare LF (RFC 9112 2.2 allows it); a CR anywhere else is an
// error, as is a line over max.
func (h *headReader) readLine(max int, tooLong *headError) ([]byte, error) {
	start := len(h.block)
	for {
		frag, err := h.br.ReadSlice('\n')
		if len(h.block)-start+len(frag) > max {
			return nil, tooLong
		}
		h.block = append(h.block, frag...)
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			return nil, err
		}
	}
	line := h.block[start : len(h.block)-1] // drop LF
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	h.block = h.block[:start+len(line)] // keep only the content
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, badHead(http.StatusBadRequest, "bare CR in request head")
	}
	return line, nil
}

// read parses the next request head into r, which the caller has reset.
// The first byte of the request is already buffered in br.
func (h *headReader) read(r *http.Request, head *requestHead) error {
	h.block = h.block[:0]
	h.lines = h.lines[:0]
	// RFC 9112 2.2: ignore at least one empty line before a request.
	for i := 0; ; i++ {
		line, err := h.readLine(maxRequestLine, errLineTooLong)
		if err != nil {
			return err
		}
		if len(line) > 0 {
			break
		}
		if i == 1 {
			return badHead(http.StatusBadRequest, "empty request line")
		}
		h.block = h.block[:0]
	}
	reqLineLen := len(h.block)
	for {
		start := len(h.block)
		line, err := h.readLine(maxHeaderBytes, errHeadTooLarge)
		if err != nil {
			return err
		}
		if len(h.block) > maxHeaderBytes {
			return errHeadTooLarge
		}
		if len(line) == 0 {
			break
		}
		if len(h.lines) == maxHeaderFields {
			return badHead(http.StatusRequestHeaderFieldsTooLarge, "too many header fields")
		}
		h.lines = append(h.lines, [2]int{start, len(h.block)})
	}
	// One string for the whole head: every request string is a slice of it.
	s := string(h.block)
	if err := parseRequestLine(r, s[:reqLineLen]); err != nil {
		return err
	}
	return h.parseFields(r, head, s)
}

// parseRequestLine reads "METHOD SP request-target SP HTTP-version".
func parseRequestLine(r *http.Request, line string) error {
	sp1 := strings.IndexByte(line, ' ')
	if sp1 <= 0 {
		return badHead(http.StatusBadRequest, "malformed request line")
	}
	rest := line[sp1+1:]
	sp2 := strings.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return badHead(http.StatusBadRequest, "malformed request line")
	}
	method, target, version := line[:sp1], rest[:sp2], rest[sp2+1:]
	if !isToken(method) {
		return badHead(http.StatusBadRequest, "malformed method")
	}
	r.Method = internMethod(method)
	switch version {
	case "HTTP/1.1":
		r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	case "HTTP/1.0":
		r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.0", 1, 0
	default:
		if len(version) > 5 && version[:5] == "HTTP/" {
			return badHead(http.StatusHTTPVersionNotSupported, "unsupported HTTP version")
		}
		return badHead(http.StatusBadRequest, "malformed HTTP version")
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c == 0x7f {
			return badHead(http.StatusBadRequest, "control character or space in request target")
		}
	}
	r.RequestURI = target
	return parseTarget(r.URL, target, r.Method)
}

// parseTarget fills u from an origin-form ("/path?query"), absolute-form
// ("https://host/path") or asterisk-form ("*", OPTIONS only) target.
func parseTarget(u *url.URL, target, method string) error {
	switch {
	case target[0] == '/':
		path, query := target, ""
		if i := strings.IndexByte(target, '?'); i >= 0 {
			path, query = target[:i], target[i+1:]
		}
		u.RawQuery = query
		if strings.IndexByte(path, '%') < 0 {
			u.Path = path
			return nil
		}
		p, err := url.PathUnescape(path)
		if err != nil {
			return badHead(http.StatusBadRequest, "malformed percent-encoding in path")
		}
		u.Path, u.RawPath = p, path
		return nil
	case target == "*" && method == http.MethodOptions:
		u.Path = "*"
		return nil
	}
	// Absolute form: rare (proxies talking to proxies); the stdlib parser
	// is fine here.
	pu, err := url.ParseRequestURI(target)
	if err != nil || pu.Host == "" || (pu.Scheme != "http" && pu.Scheme != "https") {
		return badHead(http.StatusBadRequest, "malformed request target")
	}
	*u = *pu
	return nil
}

// parseFields validates the header lines and fills r.Header, r.Host and
// the framing of the body.
func (h *headReader) parseFields(r *http.Request, head *requestHead, s string) error {
	if cap(h.vals) < len(h.lines) {
		h.vals = make([]string, len(h.lines), len(h.lines)+8)
	}
	vals := h.vals[:len(h.lines)]
	var (
		hosts       int
		host        string
		clSeen      bool
		cl          int64
		te          bool
		connClose   bool
		connKeep    bool
		expectValue string
	)
	hdr := r.Header
	for i, ln := range h.lines {
		line := s[ln[0]:ln[1]]
		if line[0] == ' ' || line[0] == '\t' {
			return badHead(http.StatusBadRequest, "obs-fold header line")
		}
		colon := strings.IndexByte(line, ':')
		if colon <= 0 {
			return badHead(http.StatusBadRequest, "header line without a name")
		}
		name := line[:colon]
		if !isToken(name) {
			// Also catches whitespace before the colon (RFC 9112 5.1).
			return badHead(http.StatusBadRequest, "malformed header name")
		}
		value := httpsyntax.TrimOWS(line[colon+1:])
		if !httpsyntax.ValidFieldValue(value) {
			return badHead(http.StatusBadRequest, "control character in header value")
		}
		key := canonicalKey(name)
		switch key {
		case "Host":
			hosts++
			host = value
			continue // net/http moves Host out of the map too
		case "Content-Length":
			n, ok := parseContentLength(value)
			if !ok {
				return badHead(http.StatusBadRequest, "malformed Content-Length")
			}
			if clSeen && n != cl {
				return badHead(http.StatusBadRequest, "differing Content-Length values")
			}
			clSeen, cl = true, n
		case "Transfer-Encoding":
			if te || !asciiEqualFold(value, "chunked") {
				return badHead(http.StatusNotImplemented, "Transfer-Encoding other than one chunked")
			}
			te = true
		case "Connection":
			connClose = connClose || hasToken(value, "close")
			connKeep = connKeep || hasToken(value, "keep-alive")
		case "Expect":
			expectValue = value
		}
		vals[i] = value
		if old, ok := hdr[key]; ok {
			hdr[key] = append(old, value)
		} else {
			hdr[key] = vals[i : i+1 : i+1]
		}
	}
	if te && clSeen {
		return badHead(http.StatusBadRequest, "both Content-Length and Transfer-Encoding")
	}
	if hosts > 1 {
		return badHead(http.StatusBadRequest, "more than one Host header")
	}
	if r.ProtoMinor == 1 && hosts == 0 && r.URL.Host == "" {
		return badHead(http.StatusBadRequest, "missing Host header")
	}
	if te && r.ProtoMinor == 0 {
		return badHead(http.StatusBadRequest, "Transfer-Encoding in an HTTP/1.0 request")
	}
	if r.URL.Host != "" {
		r.Host = r.URL.Host // RFC 9112 3.2.2: the absolute form wins
	} else {
		if !validHostHeader(host) {
			return badHead(http.StatusBadRequest, "malformed Host header")
		}
		r.Host = host
	}
	switch {
	case expectValue == "":
	case asciiEqualFold(expectValue, "100-continue") && r.ProtoMinor == 1:
		head.expect100 = true
	default:
		return badHead(http.StatusExpectationFailed, "unsupported Expect")
	}
	head.chunked = te
	switch {
	case te:
		head.length = -1
		r.TransferEncoding = chunkedTE
	case clSeen:
		head.length = cl
	}
	r.ContentLength = head.length
	if r.ProtoMinor == 1 {
		head.keepAlive = !connClose
	} else {
		head.keepAlive = connKeep && !connClose
	}
	r.Close = !head.keepAlive
	return nil
}

var chunkedTE = []string{"chunked"}

// commonKeys interns the canonical names of common request headers, so
// the map keys of most requests cost no allocation.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control",
		"Connection", "Content-Length", "Content-Type", "Cookie", "Expect", "Host",
		"If-Modified-Since", "If-None-Match", "Origin", "Pragma", "Range", "Referer",
		"Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site", "Sec-Websocket-Key",
		"Sec-Websocket-Version", "Sec-Websocket-Extensions", "Te", "Transfer-Encoding",
		"Upgrade", "Upgrade-Insecure-Requests", "User-Agent", "X-Forwarded-For",
		"X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip", "X-Requested-With", "Forwarded",
	} {
		m[k] = k
	}
	return m
}()

// canonicalKey returns the canonical form of a header name, interned for
// common names. Lookups use the name as written when it is already
// canonical, which is the usual case.
func canonicalKey(name string) string {
	if k, ok := commonKeys[name]; ok {
		return k
	}
	k := textproto.CanonicalMIMEHeaderKey(name)
	if ik, ok := commonKeys[k]; ok {
		return ik
	}
	return k
}

// internMethod returns a constant string for the standard methods.
func internMethod(m string) string {
	switch m {
	case "GET":
		return http.MethodGet
	case "HEAD":
		return http.MethodHead
	case "POST":
		return http.MethodPost
	case "PUT":
		return http.MethodPut
	case "DELETE":
		return http.MethodDelete
	case "OPTIONS":
		return http.MethodOptions
	case "PATCH":
		return http.MethodPatch
	}
	return m
}

// parseContentLength accepts only digits (no sign, no spaces, no list).
func parseContentLength(v string) (int64, bool) {
	if v == "" || len(v) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// validHostHeader accepts a reg-name, IPv4 or [IPv6] host with an optional
// port, and the empty value (HTTP/1.0 without Host).
func validHostHeader(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == ':' || c == '[' || c == ']' || c == '~' || c == '%'
		if !ok {
			return false
		}
	}
	return true
}

// isToken reports whether s is an RFC 9110 token.
func isToken(s string) bool { return httpsyntax.IsToken(s) }

// hasToken reports whether a comma-separated header value lists tok
// (case-insensitively).
func hasToken(v, tok string) bool {
	for len(v) > 0 {
		part := v
		if i := strings.IndexByte(v, ','); i >= 0 {
			part, v = v[:i], v[i+1:]
		} else {
			v = ""
		}
		if asciiEqualFold(httpsyntax.TrimOWS(part), tok) {
			return true
		}
	}
	return false
}

// asciiEqualFold compares ASCII case-insensitively. Not strings.EqualFold:
// that one folds Unicode too (the Kelvin sign matches 'k'), and a framing
// header must match byte for byte what a backend would see.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
