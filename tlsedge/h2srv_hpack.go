package tlsedge

import (
	"net/http"
	"strconv"

	"github.com/tlsedge/tlsedge/httpsyntax"
)

// The HPACK encoder of response heads (RFC 7541), as nginx's and haproxy's:
// no dynamic table. A field is a static-table index when name and value
// are in the static table (":status: 200"), otherwise a literal without
// indexing (never indexed for cookies) of a static name or a new one, its
// value as is (no Huffman coding). That costs some bytes per response and
// saves x/net's hpack.Encoder's two table searches (map lookups keyed by
// name and value) and its Huffman coding per field: in the S4 profile the
// encoder was 6 % of the CPU, a third of the server's own.
//
// The first header block of a connection starts with a dynamic table size
// update to 0: the table is then empty and stays so, whatever
// SETTINGS_HEADER_TABLE_SIZE the client sends later (RFC 7541 4.2, 6.3).

// h2RespField is what the encoder knows of a response field name.
type h2RespField struct {
	lower  string // the HTTP/2 name
	static uint8  // its static-table index, 0 when none
	never  bool   // literal never indexed (RFC 7541 6.2.3): secrets
	skip   bool   // connection-specific (RFC 9113 8.2.2): not sent
}

// h2RespFields knows common response fields by their canonical name.
var h2RespFields = func() map[string]h2RespField {
	m := map[string]h2RespField{}
	static := []string{
		15: "accept-charset", 17: "accept-language", 18: "accept-ranges", 19: "accept",
		20: "access-control-allow-origin", 21: "age", 22: "allow", 23: "authorization",
		24: "cache-control", 25: "content-disposition", 26: "content-encoding",
		27: "content-language", 28: "content-length", 29: "content-location",
		30: "content-range", 31: "content-type", 32: "cookie", 33: "date", 34: "etag",
		35: "expect", 36: "expires", 37: "from", 38: "host", 39: "if-match",
		40: "if-modified-since", 41: "if-none-match", 42: "if-range",
		43: "if-unmodified-since", 44: "last-modified", 45: "link", 46: "location",
		47: "max-forwards", 48: "proxy-authenticate", 49: "proxy-authorization",
		50: "range", 51: "referer", 52: "refresh", 53: "retry-after", 54: "server",
		55: "set-cookie", 56: "strict-transport-security", 57: "transfer-encoding",
		58: "user-agent", 59: "vary", 60: "via", 61: "www-authenticate",
	}
	for i, name := range static {
		if name != "" {
			m[canonicalOfLower(name)] = h2RespField{lower: name, static: uint8(i)}
		}
	}
	for _, name := range []string{
		"x-content-type-options", "x-frame-options", "x-request-id", "x-served-by",
		"x-xss-protection", "content-security-policy", "referrer-policy",
		"permissions-policy", "alt-svc", "trailer", "grpc-status", "grpc-message",
		"grpc-encoding", "grpc-accept-encoding", "access-control-allow-credentials",
		"access-control-allow-headers", "access-control-allow-methods",
		"access-control-expose-headers", "access-control-max-age", "cross-origin-opener-policy",
		"cross-origin-resource-policy", "cross-origin-embedder-policy", "x-cache",
	} {
		m[canonicalOfLower(name)] = h2RespField{lower: name}
	}
	for _, name := range []string{"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te"} {
		f := m[canonicalOfLower(name)]
		f.lower, f.skip = name, true
		m[canonicalOfLower(name)] = f
	}
	for _, name := range []string{"set-cookie", "authorization", "proxy-authorization", "cookie"} {
		f := m[canonicalOfLower(name)]
		f.never = true
		m[canonicalOfLower(name)] = f
	}
	return m
}()

// canonicalOfLower is the http.Header key of a lower-case token.
func canonicalOfLower(s string) string {
	b := []byte(s)
	up := true
	for i, c := range b {
		if up && 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
		up = c == '-'
	}
	return string(b)
}

// h2StatusIndex is the static-table index of a status with its value.
func h2StatusIndex(code int) uint8 {
	switch code {
	case 200:
		return 8
	case 204:
		return 9
	case 206:
		return 10
	case 304:
		return 11
	case 400:
		return 12
	case 404:
		return 13
	case 500:
		return 14
	}
	return 0
}

// beginBlock starts a header block in c.block (under wmu).
func (c *h2SrvConn) beginBlock() {
	c.block = c.block[:0]
	if !c.sizeUpdated {
		c.block = append(c.block, 0x20) // dynamic table size update: 0
		c.sizeUpdated = true
	}
}

// encodeStatus starts a response head with :status.
func (c *h2SrvConn) encodeStatus(code int) {
	c.beginBlock()
	if i := h2StatusIndex(code); i != 0 {
		c.block = append(c.block, 0x80|i) // indexed
		return
	}
	c.block = appendHpackInt(c.block, 0x00, 4, 8) // literal, name :status
	var digits [3]byte
	c.block = appendHpackString(c.block, strconv.AppendInt(digits[:0], int64(code), 10))
}

// encodeField adds one response field; canonical is the handler's key.
// Names that are not tokens, connection-specific fields (RFC 9113 8.2.2)
// and values that could split a field are left out, as appendField does
// for HTTP/1.1.
func (c *h2SrvConn) encodeField(canonical string, vs []string) {
	f, ok := h2RespFieldByName(canonical)
	if !ok {
		if !isToken(canonical) {
			return
		}
		f.lower = c.lowerName(canonical)
	}
	if f.skip {
		return
	}
	for _, v := range vs {
		if !safeHeaderValue(v) {
			continue
		}
		c.appendLiteral(f, v)
	}
}

// appendLiteral adds a literal field without indexing (never indexed
// for secrets).
func (c *h2SrvConn) appendLiteral(f h2RespField, v string) {
	prefix := byte(0x00)
	if f.never {
		prefix = 0x10
	}
	if f.static != 0 {
		c.block = appendHpackInt(c.block, prefix, 4, uint64(f.static))
	} else {
		c.block = append(c.block, prefix)
		c.block = appendHpackString(c.block, f.lower)
	}
	c.block = appendHpackString(c.block, v)
}

// encodeRawField adds one field line of a backend's head, its name in any
// letter case: as encodeField would, with the static table's name index
// when it has one.
func (c *h2SrvConn) encodeRawField(name, value []byte) {
	var low [64]byte
	if len(name) > len(low) {
		c.encodeField(http.CanonicalHeaderKey(string(name)), []string{string(value)})
		return
	}
	lower := low[:len(name)]
	for i, b := range name {
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		lower[i] = b
	}
	f, ok := h2RespFieldByLower(lower)
	if f.skip {
		return
	}
	prefix := byte(0x00)
	if f.never {
		prefix = 0x10
	}
	switch {
	case ok && f.static != 0:
		c.block = appendHpackInt(c.block, prefix, 4, uint64(f.static))
	default:
		c.block = append(c.block, prefix)
		c.block = appendHpackString(c.block, lower)
	}
	c.block = appendHpackString(c.block, value)
}

// h2RespFieldByLower is h2RespFields' entry for a lower-case name. The
// names are bucketed by length and a bucket holds a few: scanning one
// costs less than hashing the name (a map lookup was 3 % of S4's CPU).
func h2RespFieldByLower(lower []byte) (h2RespField, bool) {
	if len(lower) == 0 || len(lower) >= len(h2RespFieldsByLen) {
		return h2RespField{}, false
	}
	for _, f := range h2RespFieldsByLen[len(lower)] {
		if f.lower[0] == lower[0] && f.lower == string(lower) {
			return f, true
		}
	}
	return h2RespField{}, false
}

// h2RespFieldByName is h2RespFields' entry for a name in any letter case,
// found as h2RespFieldByLower finds one.
func h2RespFieldByName(name string) (h2RespField, bool) {
	if len(name) == 0 || len(name) >= len(h2RespFieldsByLen) {
		return h2RespField{}, false
	}
	c := name[0] | 0x20
	for _, f := range h2RespFieldsByLen[len(name)] {
		if f.lower[0] == c && httpsyntax.EqualFieldName(name, f.lower) {
			return f, true
		}
	}
	return h2RespField{}, false
}

var h2RespFieldsByLen = func() (b [40][]h2RespField) {
	for _, f := range h2RespFields {
		if len(f.lower) >= len(b) {
			panic("h2RespFieldsByLen: a field name of " + strconv.Itoa(len(f.lower)) + " bytes")
		}
		b[len(f.lower)] = append(b[len(f.lower)], f)
	}
	return b
}()

// encodeLength adds a Content-Length field.
func (c *h2SrvConn) encodeLength(n int) {
	var digits [20]byte
	c.block = appendHpackInt(c.block, 0x00, 4, 28) // literal without indexing, static name 28
	c.block = appendHpackString(c.block, strconv.AppendInt(digits[:0], int64(n), 10))
}

// encodeDate adds the Date field.
func (c *h2SrvConn) encodeDate() {
	c.appendLiteral(h2RespField{lower: "date", static: 33}, c.srv.dates.now())
}

// lowerName is the HTTP/2 spelling of a field name not in h2RespFields,
// remembered per connection.
func (c *h2SrvConn) lowerName(canonical string) string {
	if name, ok := c.lower[canonical]; ok {
		return name
	}
	name := asciiLower(canonical)
	if len(c.lower) < 64 {
		if c.lower == nil {
			c.lower = make(map[string]string)
		}
		c.lower[canonical] = name
	}
	return name
}

// appendHpackInt appends an integer with an n-bit prefix (RFC 7541 5.1)
// in the byte that starts with first.
func appendHpackInt(b []byte, first byte, n uint, v uint64) []byte {
	max := uint64(1)<<n - 1
	if v < max {
		return append(b, first|byte(v))
	}
	b = append(b, first|byte(max))
	v -= max
	for v >= 128 {
		b = append(b, byte(v&0x7f|0x80))
		v >>= 7
	}
	return append(b, byte(v))
}

// appendHpackString appends a string literal, not Huffman-coded.
func appendHpackString[S string | []byte](b []byte, s S) []byte {
	b = appendHpackInt(b, 0x00, 7, uint64(len(s)))
	return append(b, s...)
}

// asciiLower lower-cases s (an ASCII token).
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
