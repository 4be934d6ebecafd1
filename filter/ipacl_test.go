package filter

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestIPACL(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	h, err := IPACL(ok, IPACLConfig{Allow: []string{"10.0.0.0/8", "2001:db8::/32", "192.0.2.7"}, Deny: []string{"10.6.6.0/24"}})
	if err != nil {
		t.Fatal(err)
	}
	for remote, want := range map[string]int{
		"10.1.2.3:5000":          200,
		"10.6.6.6:5000":          403, // denied inside an allowed network
		"192.0.2.7:443":          200,
		"192.0.2.8:443":          403,
		"[2001:db8::1]:443":      200,
		"[::ffff:10.1.2.3]:5000": 200, // IPv4-mapped counts as IPv4
		"[2001:db9::1]:443":      403,
		"garbage":                403,
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("%s: %d, want %d", remote, w.Code, want)
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "10.0.0", "example.com"} {
		if _, err := IPACL(ok, IPACLConfig{Deny: []string{bad}}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if h, _ := IPACL(ok, IPACLConfig{}); h == nil {
		t.Error("no lists: want next itself")
	}
}

func FuzzParsePrefix(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "::1", "2001:db8::/32", "1.2.3.4/0", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if p, err := ParsePrefix(s); err == nil && !p.IsValid() {
			t.Errorf("%q parsed to an invalid prefix", s)
		}
	})
}
