package tlsedge

import (
	"net/http"
	"net/textproto"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Request header blocks (RFC 9113 8.2, 8.3): decoded field by field as
// their frames arrive, validated, and stored straight into the stream's
// reused header map. A request the server cannot accept is never handed
// to the handler chain:
//
//   - malformed (RFC 9113 8.1.1: bad or missing pseudo-header fields,
//     upper-case or invalid names, invalid values, a wrong Content-Length):
//     RST_STREAM(PROTOCOL_ERROR);
//   - a connection-specific field or a TE other than "trailers" (8.2.2):
//     400 saying which, then RST_STREAM(PROTOCOL_ERROR), as an
//     intermediary must treat it as malformed;
//   - a head over maxHeaderBytes counted as HTTP/1.1 lines: 431, as
//     HTTP/1.1 answers (the fields past the limit are decoded, to keep the
//     HPACK state, and dropped).

// h2HeadBuilder is the state of the header block being decoded. It
// belongs to the reader goroutine.
type h2HeadBuilder struct {
	st       *h2Stream // the request being built; nil: trailers or a block to drop
	trailers bool      // a trailer section: checked, then dropped
	canon    map[string]string

	method, scheme, authority, path string
	pseudo                          uint8
	regular                         bool
	malformed                       bool
	bad                             string // connection-specific field (400, then reset)
	tooLarge                        bool
	size                            int
	hosts                           int
	host                            string
	cookies                         int
	cl                              int64 // -1: none
	te                              int
	expect                          string
}

// reset prepares b for a header block; st is nil when the fields are only
// checked (trailers) or only decoded (a block to drop).
func (b *h2HeadBuilder) reset(st *h2Stream, trailers bool) {
	canon := b.canon
	*b = h2HeadBuilder{st: st, trailers: trailers, canon: canon, cl: -1}
}

const (
	pseudoMethod = 1 << iota
	pseudoScheme
	pseudoAuthority
	pseudoPath
)

// emit is the HPACK decoder's callback, for every field of the block.
func (b *h2HeadBuilder) emit(f hpack.HeaderField) {
	if b.malformed || b.tooLarge {
		// Refused either way: the rest is only decoded (for the HPACK
		// state), not checked, so that a block of references to one
		// large table entry costs no more than its bytes.
		return
	}
	name, value := f.Name, f.Value
	// The head is counted as HTTP/1.1 lines, Host for :authority; the
	// target is left to max_url (414), as the HTTP/1.1 parser answers a
	// long request line 414 first.
	switch name {
	case ":path", ":method", ":scheme":
	case ":authority":
		b.size += len("Host: \r\n") + len(value)
	default:
		b.size += len(name) + len(value) + len(": \r\n")
	}
	if b.size > maxHeaderBytes {
		b.tooLarge = true
		return
	}
	if !httpguts.ValidHeaderFieldValue(value) {
		b.malformed = true
		return
	}
	if len(name) > 0 && name[0] == ':' {
		if b.regular || b.trailers {
			b.malformed = true // RFC 9113 8.3: pseudo-fields first, none in trailers
			return
		}
		var bit uint8
		switch name {
		case ":method":
			bit, b.method = pseudoMethod, value
		case ":scheme":
			bit, b.scheme = pseudoScheme, value
		case ":authority":
			bit, b.authority = pseudoAuthority, value
		case ":path":
			bit, b.path = pseudoPath, value
		default:
			// :status, and :protocol: extended CONNECT (RFC 8441) is
			// not offered.
			b.malformed = true
			return
		}
		if b.pseudo&bit != 0 {
			b.malformed = true
			return
		}
		b.pseudo |= bit
		return
	}
	b.regular = true
	if !validH2FieldName(name) {
		b.malformed = true
		return
	}
	if b.trailers {
		return
	}
	switch name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		if b.bad == "" {
			b.bad = name
		}
		return
	case "te":
		b.te++
		if b.te > 1 || value != "trailers" {
			b.bad = name
		}
	case "host":
		b.hosts++
		b.host = value
		return // becomes the request's Host, as HTTP/1.1's does
	case "content-length":
		n, ok := parseContentLength(value)
		if !ok || b.cl >= 0 && n != b.cl {
			b.malformed = true
			return
		}
		b.cl = n
	case "cookie":
		b.cookies++
	case "expect":
		b.expect = value
	}
	if b.st != nil {
		b.st.addField(b.canonicalKey(name), value)
	}
}

// canonicalKey is the http.Header key of a lower-case field name:
// interned for common names and, per connection, for the rest.
func (b *h2HeadBuilder) canonicalKey(name string) string {
	if k, ok := h2RequestKeys[name]; ok {
		return k
	}
	if k, ok := b.canon[name]; ok {
		return k
	}
	k := textproto.CanonicalMIMEHeaderKey(name)
	if len(b.canon) < 64 {
		if b.canon == nil {
			b.canon = make(map[string]string)
		}
		b.canon[name] = k
	}
	return k
}

// validH2FieldName reports whether name is a token without upper-case
// letters (RFC 9113 8.2.1).
func validH2FieldName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' || !httpguts.IsTokenRune(rune(c)) {
			return false
		}
	}
	return true
}

// h2RequestKeys maps the HTTP/2 names of common request fields to their
// canonical form.
var h2RequestKeys = func() map[string]string {
	m := map[string]string{}
	for k := range commonKeys {
		m[strings.ToLower(k)] = k
	}
	for _, k := range []string{
		"Accept-Charset", "Dnt", "If-Match", "If-Range", "If-Unmodified-Since", "Priority",
		"Sec-Ch-Ua", "Sec-Ch-Ua-Mobile", "Sec-Ch-Ua-Platform", "Sec-Fetch-User",
		"Content-Encoding", "Grpc-Timeout", "Grpc-Encoding", "Grpc-Accept-Encoding", "X-Request-Id",
	} {
		m[strings.ToLower(k)] = k
	}
	return m
}()

// h2Refusal is how a request the server answers by itself is refused.
type h2Refusal struct {
	status int           // answered with this status (0: only reset)
	reason string        // the answer's body
	reset  http2.ErrCode // RST_STREAM after the answer (or instead of it)
}

// check validates a finished request block (RFC 9113 8.3.1) and fills the
// request. A non-nil refusal means the handler chain must not see it.
func (b *h2HeadBuilder) check(st *h2Stream, endStream bool) *h2Refusal {
	if b.malformed {
		return &h2Refusal{reset: http2.ErrCodeProtocol}
	}
	r := &st.req
	if b.method == "CONNECT" {
		// RFC 9113 8.5: only :method and :authority.
		if b.pseudo != pseudoMethod|pseudoAuthority || b.authority == "" {
			return &h2Refusal{reset: http2.ErrCodeProtocol}
		}
		b.path = ""
	} else if b.pseudo&(pseudoMethod|pseudoScheme|pseudoPath) != pseudoMethod|pseudoScheme|pseudoPath ||
		b.path == "" || b.scheme != "https" && b.scheme != "http" || !isToken(b.method) {
		return &h2Refusal{reset: http2.ErrCodeProtocol}
	}
	if b.cl > 0 && endStream {
		return &h2Refusal{reset: http2.ErrCodeProtocol} // a body announced, none sent
	}
	if b.hosts > 1 || b.hosts == 1 && b.authority != "" && b.host != b.authority {
		return &h2Refusal{reset: http2.ErrCodeProtocol}
	}
	if b.authority == "" {
		b.authority = b.host
	}
	if strings.IndexByte(b.authority, '@') >= 0 || !validHostHeader(b.authority) {
		return &h2Refusal{reset: http2.ErrCodeProtocol}
	}
	r.Method = internMethod(b.method)
	r.Host = b.authority
	r.RequestURI = b.path
	if b.method == "CONNECT" {
		st.url.Host = b.authority
		r.RequestURI = b.authority
	} else {
		for i := 0; i < len(b.path); i++ {
			if c := b.path[i]; c <= ' ' || c == 0x7f {
				return &h2Refusal{reset: http2.ErrCodeProtocol}
			}
		}
		if b.path[0] != '/' && (b.path != "*" || r.Method != http.MethodOptions) {
			return &h2Refusal{reset: http2.ErrCodeProtocol}
		}
		if parseTarget(&st.url, b.path, r.Method) != nil {
			return &h2Refusal{reset: http2.ErrCodeProtocol}
		}
	}
	if b.tooLarge {
		return &h2Refusal{status: http.StatusRequestHeaderFieldsTooLarge, reason: "431 request head over 65536 bytes\n"}
	}
	if b.bad != "" {
		return &h2Refusal{
			status: http.StatusBadRequest,
			reason: "request header \"" + textproto.CanonicalMIMEHeaderKey(b.bad) + "\" is not valid in HTTP/2\n",
			reset:  http2.ErrCodeProtocol,
		}
	}
	if b.expect != "" && !asciiEqualFold(b.expect, "100-continue") {
		return &h2Refusal{status: http.StatusExpectationFailed, reason: "417 unsupported Expect\n"}
	}
	if b.cookies > 1 {
		// RFC 9113 8.2.3: cookie crumbs are joined for HTTP/1.1.
		h := st.hdr
		h["Cookie"] = []string{strings.Join(h["Cookie"], "; ")}
	}
	return nil
}
