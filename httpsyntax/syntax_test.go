package httpsyntax

import (
	"strconv"
	"strings"
	"testing"
)

func TestIsToken(t *testing.T) {
	for _, s := range []string{"GET", "Content-Type", "x!#$%&'*+-.^_`|~9"} {
		if !IsToken(s) {
			t.Errorf("%q is a token", s)
		}
	}
	for _, s := range []string{"", "a b", "a:b", "a\tb", "é", "a\x00", "(x)", `"q"`, "a/b", "a;b"} {
		if IsToken(s) {
			t.Errorf("%q is not a token", s)
		}
	}
}

func TestTokenEnd(t *testing.T) {
	for _, tt := range []struct {
		b    string
		from int
		want int
	}{
		{"Content-Type: x", 0, 12},
		{"Content-Type: x", 8, 12},
		{"Server", 0, 6},
		{"Server", 6, 6},
		{" Server:", 0, 0},
		{"a b", 0, 1},
		{"x\xe9y", 0, 1},
		{"ab\r\n", 1, 2},
	} {
		if got := TokenEnd([]byte(tt.b), tt.from); got != tt.want {
			t.Errorf("TokenEnd(%q, %d) = %d, want %d", tt.b, tt.from, got, tt.want)
		}
	}
}

func TestParseChunkSize(t *testing.T) {
	tests := []struct {
		line string
		n    int64
		ok   bool
	}{
		{"0", 0, true},
		{"1a", 26, true},
		{"FF", 255, true},
		{"5;name=value", 5, true},
		{"5 ;ext", 5, true},
		{"5\t", 5, true},
		{"7fffffffffffffff", 0, false}, // 16 digits
		{"fffffffffffffff", 1<<60 - 1, true},
		{"", 0, false},
		{"x", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{"0x10", 0, false},
		{"5 6", 0, false},
		{"5;ext\x01", 0, false},
		{" 5", 0, false},
	}
	for _, tt := range tests {
		n, ok := ParseChunkSize([]byte(tt.line))
		if n != tt.n || ok != tt.ok {
			t.Errorf("ParseChunkSize(%q) = %d, %v; want %d, %v", tt.line, n, ok, tt.n, tt.ok)
		}
	}
}

// FuzzParseChunkSize: an accepted size is what its hex digits say, and
// never negative.
func FuzzParseChunkSize(f *testing.F) {
	for _, s := range []string{"0", "1a;x=y", "fffffffffffffff", "5 ;a", "zz"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		n, ok := ParseChunkSize(line)
		if !ok {
			return
		}
		if n < 0 {
			t.Fatalf("negative size %d from %q", n, line)
		}
		i := 0
		for i < len(line) {
			if _, ok := unhex(line[i]); !ok {
				break
			}
			i++
		}
		want, err := strconv.ParseInt(string(line[:i]), 16, 64)
		if err != nil || want != n {
			t.Fatalf("%q: got %d, digits say %d (%v)", line, n, want, err)
		}
	})
}

func TestTrimOWS(t *testing.T) {
	for _, s := range []string{"", " ", "\t \t", "a", " a ", "\ta b\t ", "a\r", " \x00 ", "\u00a0a"} {
		want := strings.Trim(s, " \t")
		if got := TrimOWS(s); got != want {
			t.Errorf("TrimOWS(%q) = %q, want %q", s, got, want)
		}
		if got := string(TrimOWS([]byte(s))); got != want {
			t.Errorf("TrimOWS([]byte(%q)) = %q, want %q", s, got, want)
		}
	}
}
