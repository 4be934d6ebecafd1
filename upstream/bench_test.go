package upstream

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// discardWriter is the cheapest ResponseWriter, so that BenchmarkProxy/serve
// measures the proxy and the transport, not a recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

func benchProxy(b *testing.B) (*Proxy, *httptest.Server) {
	b.Helper()
	body := strings.Repeat("x", 1024)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, body)
	}))
	b.Cleanup(be.Close)
	pool, err := NewPool(PoolConfig{Backends: []BackendConfig{
		{ID: "a", Addr: be.Listener.Addr().String()},
	}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	p, err := NewProxy(ProxyConfig{Pool: pool})
	if err != nil {
		b.Fatal(err)
	}
	front := httptest.NewServer(p)
	b.Cleanup(front.Close)
	return p, front
}

// BenchmarkProxy forwards 1 KiB GETs over keep-alive connections. Allocations
// count every goroutine of the process: in e2e that is the client, the
// front server, the proxy and the backend server; in serve, the proxy,
// its transport and the backend server.
func BenchmarkProxy(b *testing.B) {
	p, front := benchProxy(b)
	b.Run("serve", func(b *testing.B) {
		b.ReportAllocs()
		w := &discardWriter{h: make(http.Header)}
		for b.Loop() {
			r := httptest.NewRequest("GET", "http://app.example/", nil)
			clear(w.h)
			p.Serve(w, r, &Target{})
		}
	})
	b.Run("e2e", func(b *testing.B) {
		b.ReportAllocs()
		c := front.Client()
		for b.Loop() {
			resp, err := c.Get(front.URL)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	b.Run("e2e-parallel", func(b *testing.B) {
		b.ReportAllocs()
		c := front.Client()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				resp, err := c.Get(front.URL)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	})
	b.Run("e2e-post", func(b *testing.B) {
		b.ReportAllocs()
		c := front.Client()
		payload := strings.Repeat("y", 4096)
		for b.Loop() {
			resp, err := c.Post(front.URL, "text/plain", strings.NewReader(payload))
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
