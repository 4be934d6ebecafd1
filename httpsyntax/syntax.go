// Package httpsyntax holds the byte-level rules of HTTP/1.1 messages that
// both sides of tlsedge enforce: the frontend server reading requests
// (tlsedge/) and the backend client reading responses (upstream/). One
// definition, so the two parsers cannot drift apart on what a token or a
// chunk size is. It imports nothing of ours.
package httpsyntax

// tokenByte marks the characters of an RFC 9110 token (section 5.6.2).
// Built once; never written after.
var tokenByte = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// IsTokenByte reports whether c may appear in a token (a method, a field
// name, a transfer coding).
func IsTokenByte(c byte) bool { return tokenByte[c] }

// TokenEnd returns the index of the first byte at or after i that is not
// a token character, or len(b).
func TokenEnd(b []byte, i int) int {
	for i < len(b) && tokenByte[b[i]] {
		i++
	}
	return i
}

// IsToken reports whether s is a non-empty RFC 9110 token.
func IsToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenByte[s[i]] {
			return false
		}
	}
	return true
}

// MaxChunkSizeDigits bounds a chunk size: 15 hex digits fit an int64.
const MaxChunkSizeDigits = 15

// ParseChunkSize reads the chunk-size line of a chunked body (RFC 9112
// 7.1), without its line ending: hex digits, then optional whitespace, then
// nothing or a chunk extension starting with ';' (ignored, but it may not
// hold control characters other than HTAB).
func ParseChunkSize(line []byte) (int64, bool) {
	var n int64
	i := 0
	for ; i < len(line); i++ {
		d, ok := unhex(line[i])
		if !ok {
			break
		}
		if i == MaxChunkSizeDigits {
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	if i == 0 {
		return 0, false
	}
	rest := line[i:]
	for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
		rest = rest[1:] // BWS before an extension; net/http also allows it at the end
	}
	if len(rest) > 0 && rest[0] != ';' {
		return 0, false
	}
	for _, c := range rest {
		if c < ' ' && c != '\t' || c == 0x7f {
			return 0, false
		}
	}
	return n, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// TrimOWS trims optional whitespace (spaces and tabs, RFC 9110 section
// 5.6.3) from both ends of s. strings.Trim with a cutset builds a set on
// every call, which showed in the per-field cost of response heads.
func TrimOWS[S string | []byte](s S) S {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
