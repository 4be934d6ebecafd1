package filter

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRewriteBackendURLs(t *testing.T) {
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Location", "http://10.0.0.5:8080/login?next=%2Fcart")
		h.Set("Content-Location", "http://10.0.0.9:9000/x") // not a backend: kept
		h.Set("Link", "http://shop.example.com/a")          // not a URL header we touch
		h.Set("Refresh", "5; url=http://10.0.0.6:8080/done")
		h.Add("Set-Cookie", "sid=1; Domain=10.0.0.5; Path=/; HttpOnly")
		h.Add("Set-Cookie", "lang=en; Domain=example.com")
		w.WriteHeader(http.StatusFound)
	})
	f := ResponseHeaders(backend, ResponseHeadersConfig{Backends: []string{"10.0.0.5:8080", "10.0.0.6:8080"}})
	r := httptest.NewRequest("GET", "https://shop.example.com/cart", nil)
	r.TLS = &tls.ConnectionState{}
	w := httptest.NewRecorder()
	f.ServeHTTP(w, r)
	h := w.Result().Header
	for name, want := range map[string]string{
		"Location":         "https://shop.example.com/login?next=%2Fcart",
		"Content-Location": "http://10.0.0.9:9000/x",
		"Refresh":          "5; url=https://shop.example.com/done",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	cookies := h.Values("Set-Cookie")
	if len(cookies) != 2 || cookies[0] != "sid=1; Path=/; HttpOnly" || cookies[1] != "lang=en; Domain=example.com" {
		t.Errorf("Set-Cookie %q", cookies)
	}
}

func FuzzRewriteLocation(f *testing.F) {
	for _, s := range []string{"http://10.0.0.5:8080/x", "https://10.0.0.5:8080", "/relative", "http://", "5; url=http://10.0.0.5:8080/",
		"sid=1; Path=/; Domain=10.0.0.5", "a=b;domain=.10.0.0.5;HttpOnly", "a=b; \tDOMAIN = 10.0.0.5"} {
		f.Add(s)
	}
	backends := []string{"10.0.0.5:8080"}
	f.Fuzz(func(t *testing.T, v string) {
		got := rewriteLocation(v, "https://shop.example.com", backends)
		if got != v && len(got) == 0 {
			t.Errorf("%q rewritten to nothing", v)
		}
		rewriteRefresh(v, "https://shop.example.com", backends)
		hosts := []string{"10.0.0.5"}
		// The quick check must never skip a Domain the full rewrite drops.
		if got, want := rewriteCookieDomain(v, hosts), dropCookieDomain(v, hosts); got != want {
			t.Errorf("Set-Cookie %q: rewritten to %q, want %q", v, got, want)
		}
	})
}
