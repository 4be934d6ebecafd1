package filter

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkDefaultChain is the per-request cost of the default filters
// (request id, hidden headers, HSTS) around a handler that writes a small
// response, next to the same handler alone:
//
//	go test -run '^$' -bench Chain -benchmem ./filter
func BenchmarkDefaultChain(b *testing.B) {
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Server"] = []string{"nginx"}
		w.WriteHeader(200)
	})
	for _, tc := range []struct {
		name string
		h    http.Handler
	}{
		{"off", backend},
		{"default", RequestID(ResponseHeaders(backend, ResponseHeadersConfig{HSTS: 365 * 24 * time.Hour}))},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := httptest.NewRequest("GET", "https://shop.example.com/", nil)
			r.TLS = &tls.ConnectionState{}
			w := &nullWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				delete(r.Header, RequestIDHeader)
				tc.h.ServeHTTP(w, r)
			}
		})
	}
}

type nullWriter struct{ h http.Header }

func (w *nullWriter) Header() http.Header         { return w.h }
func (w *nullWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nullWriter) WriteHeader(int)             {}
