package tlsedge

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/filter"
)

// BenchmarkAppChain is the per-request cost of an app's default filter
// chain (limits, path normalisation, request id, client-certificate
// header stripping, hidden headers, HSTS, nosniff, methods) around a
// handler that answers a small response, against chain=off:
//
//	go test -run '^$' -bench AppChain -benchmem ./tlsedge
func BenchmarkAppChain(b *testing.B) {
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Server"] = []string{"nginx"}
		w.Header()["Content-Length"] = []string{"2"}
		w.WriteHeader(200)
		w.Write([]byte("ok")) //nolint:errcheck
	})
	for _, chain := range []string{config.Off, "on"} {
		cfg := &config.Config{Apps: []config.App{{Hosts: []string{"shop.example.com"}, Backends: []config.Backend{{Addr: "127.0.0.1:9"}}}}}
		cfg.Apps[0].Chain = chain
		cfg.Normalize(b.TempDir())
		if err := cfg.Validate(); err != nil {
			b.Fatal(err)
		}
		h, err := filterChain(&cfg.Apps[0], backend, appFilters{table: &clientAuthTable{}})
		if err != nil {
			b.Fatal(err)
		}
		b.Run("chain="+chain, func(b *testing.B) {
			r := httptest.NewRequest("GET", "https://shop.example.com/products/42?x=1", nil)
			r.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, ServerName: "shop.example.com"}
			r.Header.Set("Cookie", "a=b")
			w := &benchWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				delete(r.Header, filter.RequestIDHeader)
				h.ServeHTTP(w, r)
			}
		})
	}
}

type benchWriter struct{ h http.Header }

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *benchWriter) WriteHeader(int)             {}
