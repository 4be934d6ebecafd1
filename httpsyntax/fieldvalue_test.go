package httpsyntax

import (
	"strings"
	"testing"
)

func validSlow(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func noBreakSlow(v string) bool { return !strings.ContainsAny(v, "\r\n\x00") }

// badValueByte is the byte-by-byte definition of what a field value may
// not hold.
func badValueByte(c byte) bool { return c < ' ' && c != '\t' || c == 0x7f }

// checkValueEnd compares FieldValueEnd with the byte-by-byte definition,
// from the first and the last 16 starts (every alignment of the eight-byte
// steps; all starts would make a long fuzz input cost its square).
func checkValueEnd(t *testing.T, b []byte) {
	t.Helper()
	next := make([]int, len(b)+1) // next[i]: the first bad byte at or after i, or len(b)
	next[len(b)] = len(b)
	for i := len(b) - 1; i >= 0; i-- {
		next[i] = next[i+1]
		if badValueByte(b[i]) {
			next[i] = i
		}
	}
	for i := 0; i <= len(b); i++ {
		if i == 16 && len(b)-16 > i {
			i = len(b) - 16
		}
		if got := FieldValueEnd(b, i); got != next[i] {
			t.Fatalf("FieldValueEnd(%q, %d) = %d, want %d", b, i, got, next[i])
		}
	}
}

// Every control byte, DEL and a few ordinary ones, at every offset of
// values around the word size, against the byte-by-byte definitions.
func TestFieldValueChecks(t *testing.T) {
	for n := 0; n <= 20; n++ {
		for at := 0; at < max(n, 1); at++ {
			for c := 0; c < 256; c++ {
				b := []byte(strings.Repeat("a", n))
				if n > 0 {
					b[at] = byte(c)
				}
				v := string(b)
				if got, want := ValidFieldValue(v), validSlow(v); got != want {
					t.Fatalf("ValidFieldValue(%q) = %v, want %v", v, got, want)
				}
				if got, want := ValidFieldValue(b), validSlow(v); got != want {
					t.Fatalf("ValidFieldValue([]byte(%q)) = %v, want %v", v, got, want)
				}
				if got, want := NoLineBreak(v), noBreakSlow(v); got != want {
					t.Fatalf("NoLineBreak(%q) = %v, want %v", v, got, want)
				}
				checkValueEnd(t, b)
			}
		}
	}
}

func FuzzFieldValueChecks(f *testing.F) {
	f.Add("text/html; charset=utf-8")
	f.Add("a\tb\x7fc\r\n")
	f.Fuzz(func(t *testing.T, v string) {
		if ValidFieldValue(v) != validSlow(v) || ValidFieldValue([]byte(v)) != validSlow(v) {
			t.Fatalf("ValidFieldValue(%q) differs", v)
		}
		if NoLineBreak(v) != noBreakSlow(v) {
			t.Fatalf("NoLineBreak(%q) differs", v)
		}
		checkValueEnd(t, []byte(v))
	})
}

func BenchmarkFieldValue(b *testing.B) {
	v := "sticky=MTczMjk4NDAwMHxhYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODk; Path=/; Max-Age=3600; HttpOnly; Secure; SameSite=Lax"
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			if !ValidFieldValue(v) || !NoLineBreak(v) {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("bytewise", func(b *testing.B) {
		for b.Loop() {
			if !validSlow(v) || !noBreakSlow(v) {
				b.Fatal("invalid")
			}
		}
	})
}
