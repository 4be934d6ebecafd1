package session

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestAffinityKeys(t *testing.T) {
	r := httptest.NewRequest("GET", "/cart?user=42&x=1&tenant%20id=a%2Fb", nil)
	r.RemoteAddr = "[2001:db8::7]:51234"
	r.Header.Set("X-User", "alice")
	r.AddCookie(&http.Cookie{Name: "uid", Value: "u-9"})
	for _, tc := range []struct{ kind, name, want string }{
		{"ip", "", "2001:db8::7"},
		{"header", "x-user", "alice"},
		{"cookie", "uid", "u-9"},
		{"param", "user", "42"},
		{"param", "tenant id", "a/b"},
	} {
		f, err := NewAffinityKey(tc.kind, tc.name)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := f(r); !ok || got != tc.want {
			t.Errorf("%s:%s = %q %v, want %q", tc.kind, tc.name, got, ok, tc.want)
		}
	}
	for _, tc := range []struct{ kind, name string }{{"header", "X-Missing"}, {"cookie", "nope"}, {"param", "nope"}} {
		f, _ := NewAffinityKey(tc.kind, tc.name)
		if got, ok := f(r); ok {
			t.Errorf("%s:%s = %q, want no key", tc.kind, tc.name, got)
		}
	}
	r.RemoteAddr = "192.0.2.5:443"
	if got, _ := clientIPKey(r); got != "192.0.2.5" {
		t.Errorf("IPv4 key %q", got)
	}
	if _, err := NewAffinityKey("body", ""); err == nil {
		t.Error("unknown kind accepted")
	}
}

func FuzzQueryParam(f *testing.F) {
	for _, s := range []string{"a=1&b=2", "a", "=x", "%zz=1", "a=%zz", "&&a=&a=2"} {
		f.Add(s, "a")
	}
	f.Fuzz(func(t *testing.T, raw, name string) {
		v, ok := queryParam(raw, name)
		if ok && v == "" {
			t.Errorf("ok with an empty value for %q", raw)
		}
	})
}
