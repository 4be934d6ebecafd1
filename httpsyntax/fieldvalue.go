package httpsyntax

// Field values are checked byte by byte on every hop: a response head as
// it is read from a backend, and again as it is written to the client.
// Most values hold no control character at all, so eight bytes are
// tested at once first (SWAR); a word that may hold one is looked at
// byte by byte. Values run to a few hundred bytes (cookies), which made
// the plain loops ~1 % of a proxied request's CPU.

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// load8 reads the first 8 bytes of p, little-endian (one load once the
// compiler combines them; one bounds check).
func load8[S string | []byte](p S) uint64 {
	_ = p[7]
	return uint64(p[0]) | uint64(p[1])<<8 | uint64(p[2])<<16 | uint64(p[3])<<24 |
		uint64(p[4])<<32 | uint64(p[5])<<40 | uint64(p[6])<<48 | uint64(p[7])<<56
}

// below20 reports whether a byte of x is below 0x20 (a control
// character); exact for the word as a whole.
func below20(x uint64) bool { return (x-0x20*ones)&^x&highs != 0 }

// hasDEL reports whether a byte of x is 0x7f.
func hasDEL(x uint64) bool {
	y := x ^ 0x7f*ones
	return (y-ones)&^y&highs != 0
}

// ValidFieldValue reports whether v holds only what RFC 9110 (section
// 5.5) allows in a field value: no control character but HTAB, no DEL.
func ValidFieldValue[S string | []byte](v S) bool { return FieldValueEnd(v, 0) == len(v) }

// FieldValueEnd returns the index of the first byte at or after i that a
// field value may not hold (a control character but HTAB, or DEL), or
// len(v): a head parser finds where a value ends, its CR, and checks the
// value in one pass.
func FieldValueEnd[S string | []byte](v S, i int) int {
	for ; i+8 <= len(v); i += 8 {
		if x := load8(v[i:]); below20(x) || hasDEL(x) {
			break
		}
	}
	for ; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return i
		}
	}
	return i
}

// NoLineBreak reports whether v holds no CR, LF or NUL: what a writer
// must never copy into a head, as it would end a line or the head.
func NoLineBreak[S string | []byte](v S) bool {
	i := 0
	for ; i+8 <= len(v); i += 8 {
		if below20(load8(v[i:])) {
			break
		}
	}
	for ; i < len(v); i++ {
		if c := v[i]; c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}
