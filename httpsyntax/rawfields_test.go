package httpsyntax

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func rawFieldsOf(t *testing.T, block string) *RawFields {
	t.Helper()
	var f RawFields
	f.Reset([]byte(block), 5)
	for start := 0; start < len(block); {
		end := start + strings.Index(block[start:], "\r\n")
		if !f.AddLine(start, start+strings.IndexByte(block[start:end], ':'), end) {
			t.Fatalf("line refused at %d", start)
		}
		start = end + 2
	}
	return &f
}

func TestRawFields(t *testing.T) {
	f := rawFieldsOf(t, "server: nginx\r\nContent-Type:  text/plain \r\nConnection: keep-alive\r\nx-a: 1\r\nX-A: 2\r\nContent-Length: 5\r\n")
	if string(f.Name(1)) != "Content-Type" || string(f.Value(1)) != "text/plain" {
		t.Errorf("line 1: %q %q", f.Name(1), f.Value(1))
	}
	f.Drop(0)
	f.Drop(2)
	f.Add("Set-Cookie", []string{"s=1", "bad\r\nX-Evil: 1"})
	f.Add("Bad Name", []string{"x"})
	f.Add("X-Frame-Options", []string{"DENY"})
	f.DropAdded("x-frame-options")
	want := "Content-Type:  text/plain \r\nx-a: 1\r\nX-A: 2\r\nContent-Length: 5\r\nSet-Cookie: s=1\r\n"
	if got := string(f.AppendTo(nil)); got != want {
		t.Errorf("AppendTo\n got %q\nwant %q", got, want)
	}
	h := http.Header{}
	f.CopyTo(h)
	wantH := http.Header{"Content-Type": {"text/plain"}, "X-A": {"1", "2"}, "Content-Length": {"5"},
		"Set-Cookie": {"s=1", "bad\r\nX-Evil: 1"}, "Bad Name": {"x"}}
	if !reflect.DeepEqual(h, wantH) {
		t.Errorf("CopyTo %q, want %q", h, wantH)
	}
	for name, want := range map[string]bool{"server": false, "SERVER": false, "x-a": true, "set-cookie": true, "X-Frame-Options": false, "Date": false} {
		if f.Has(name) != want {
			t.Errorf("Has(%q) = %v", name, !want)
		}
	}
	var long RawFields
	long.Reset(nil, -1)
	for i := range MaxRawLines + 1 {
		if ok := long.AddLine(0, 0, 0); ok != (i < MaxRawLines) {
			t.Fatalf("line %d accepted %v", i, ok)
		}
	}
}

// FuzzEqualFieldName holds EqualFieldName to ASCII case folding: letters
// match either case, every other byte only itself.
func FuzzEqualFieldName(f *testing.F) {
	f.Add("Content-Type", "content-type")
	f.Add("@[`{", "`{@[")
	f.Add("K", "\u212a")
	f.Fuzz(func(t *testing.T, a, b string) {
		lower := func(s string) string {
			b := []byte(s)
			for i, c := range b {
				if 'A' <= c && c <= 'Z' {
					b[i] = c + 32
				}
			}
			return string(b)
		}
		want := len(a) == len(b) && lower(a) == lower(b)
		if EqualFieldName(a, b) != want || EqualFieldName([]byte(a), b) != want {
			t.Fatalf("EqualFieldName(%q, %q) = %v", a, b, !want)
		}
	})
}
