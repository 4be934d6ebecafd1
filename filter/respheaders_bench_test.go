package filter

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkResponseHeaders is the per-response cost of the response
// header filter around a handler that writes a small head, next to the
// handler alone: the default (hidden headers, HSTS), with the security
// headers and a CSP added, and with a backend's Location and cookie
// Domain rewritten to the public host:
//
//	go test -run '^$' -bench ResponseHeaders -benchmem ./filter
func BenchmarkResponseHeaders(b *testing.B) {
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Server"] = []string{"nginx"}
		h["X-Powered-By"] = []string{"PHP/8.3"}
		h["Location"] = []string{"http://10.0.0.5:8080/login?next=/cart"}
		h["Set-Cookie"] = []string{"sid=abc; Domain=10.0.0.5; Path=/; HttpOnly"}
		w.WriteHeader(302)
	})
	year := 365 * 24 * time.Hour
	security := SecurityHeaders()
	security["Content-Security-Policy"] = "default-src 'self'"
	for _, tc := range []struct {
		name string
		h    http.Handler
	}{
		{"none", backend},
		{"default", ResponseHeaders(backend, ResponseHeadersConfig{HSTS: year})},
		{"security", ResponseHeaders(backend, ResponseHeadersConfig{HSTS: year, HSTSSubdomains: true, Set: security})},
		{"locations", ResponseHeaders(backend, ResponseHeadersConfig{HSTS: year, Backends: []string{"10.0.0.5:8080", "10.0.0.6:8080"}})},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := httptest.NewRequest("GET", "https://shop.example.com/cart", nil)
			r.TLS = &tls.ConnectionState{Version: tls.VersionTLS13}
			r.Header[RequestIDHeader] = []string{"0f3c9a2be41d7a55"}
			w := &nullWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				tc.h.ServeHTTP(w, r)
			}
		})
	}
}
