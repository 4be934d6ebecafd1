package filter

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// leaky is a backend handler that says everything about itself.
func leaky(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Server", "Apache/2.4.41 (Ubuntu)")
	h.Set("X-Powered-By", "PHP/7.4.3")
	h.Set("X-AspNet-Version", "4.0.30319")
	h.Set("X-Frame-Options", "ALLOWALL")
	h.Set("X-Request-Id", "backend-made-this-up")
	h.Set("Content-Type", "text/plain")
	w.Write([]byte("hello"))
}

func TestResponseHeaders(t *testing.T) {
	h := RequestID(ResponseHeaders(http.HandlerFunc(leaky), ResponseHeadersConfig{
		HSTS: 365 * 24 * time.Hour, HSTSSubdomains: true, Set: SecurityHeaders(),
	}))
	r := httptest.NewRequest("GET", "https://shop.example.com/", nil)
	r.TLS = &tls.ConnectionState{}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	got := w.Result().Header
	for _, gone := range []string{"Server", "X-Powered-By", "X-Aspnet-Version"} {
		if v := got.Get(gone); v != "" {
			t.Errorf("%s: %q leaked", gone, v)
		}
	}
	for name, want := range map[string]string{
		"Strict-Transport-Security": "max-age=31536000; includeSubDomains",
		"X-Content-Type-Options":    "nosniff",
		"X-Frame-Options":           "SAMEORIGIN",
		"Referrer-Policy":           "strict-origin-when-cross-origin",
		"Content-Type":              "text/plain",
	} {
		if v := got.Get(name); v != want {
			t.Errorf("%s = %q, want %q", name, v, want)
		}
	}
	id := r.Header.Get(RequestIDHeader)
	if id == "" || got.Values(RequestIDHeader)[0] != id || len(got.Values(RequestIDHeader)) != 1 {
		t.Errorf("request id %q, response %q: want the request's, once", id, got.Values(RequestIDHeader))
	}
}

// Plain HTTP gets no HSTS (browsers ignore it there, and it would be a
// lie); an empty Remove list hides nothing.
func TestResponseHeadersPlainAndEmpty(t *testing.T) {
	h := ResponseHeaders(http.HandlerFunc(leaky), ResponseHeadersConfig{Remove: []string{}, HSTS: time.Hour})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "http://shop.example.com/", nil))
	if w.Result().Header.Get("Strict-Transport-Security") != "" {
		t.Error("HSTS on plain HTTP")
	}
	if w.Result().Header.Get("Server") == "" {
		t.Error("an empty Remove list removed Server")
	}
}

func TestRequestIDKeepsSaneClientID(t *testing.T) {
	var seen []string
	h := RequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = append(seen, r.Header.Get(RequestIDHeader)) }))
	for _, in := range []string{"abc-123", "", "bad id with spaces", strings.Repeat("x", 200), "a\"b"} {
		r := httptest.NewRequest("GET", "/", nil)
		if in != "" {
			r.Header.Set(RequestIDHeader, in)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	if seen[0] != "abc-123" {
		t.Errorf("a sane client id was replaced: %q", seen[0])
	}
	ids := map[string]bool{}
	for _, id := range seen[1:] {
		if !saneID(id) || ids[id] {
			t.Errorf("made id %q is not sane or not unique", id)
		}
		ids[id] = true
	}
}

func FuzzSaneID(f *testing.F) {
	f.Add("abc-123")
	f.Add("a b")
	f.Fuzz(func(t *testing.T, id string) {
		if !saneID(id) {
			return
		}
		if len(id) == 0 || len(id) > 128 {
			t.Errorf("%q accepted: length", id)
		}
		for i := 0; i < len(id); i++ {
			if c := id[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`"\,;`, c) >= 0 {
				t.Errorf("%q accepted: byte %q", id, c)
			}
		}
	})
}
