package upstream

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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

// cannedBackend answers every GET on a keep-alive connection with the same
// 1 KiB response, without net/http, so that allocations counted by
// BenchmarkProxyCanned are the proxy's own. Requests must have no body.
func cannedBackend(b testing.TB) string {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1024\r\n\r\n" + strings.Repeat("x", 1024))
	var wg sync.WaitGroup
	wg.Go(func() {
		for { // ends when Cleanup closes the listener
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for { // one request per iteration; ends when the proxy closes
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			})
		}
	})
	b.Cleanup(func() {
		_ = l.Close()
		wg.Wait()
	})
	return l.Addr().String()
}

// BenchmarkProxyCanned measures Serve alone against a backend that does not
// allocate: allocs/op are the proxy's (and its transport's) per request.
func BenchmarkProxyCanned(b *testing.B) {
	addr := cannedBackend(b)
	pool, err := NewPool(PoolConfig{Backends: []BackendConfig{{ID: "a", Addr: addr}}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	p, err := NewProxy(ProxyConfig{Pool: pool})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	w := &discardWriter{h: make(http.Header)}
	r := httptest.NewRequest("GET", "http://app.example/", nil)
	r.Header.Set("User-Agent", "bench")
	r.Header.Set("Accept", "*/*")
	var t Target
	for b.Loop() {
		clear(w.h)
		t = Target{}
		p.Serve(w, r, &t)
	}
	// Closed after the loop, before the backend's Cleanup waits for its
	// connection goroutines.
	pool.Close()
}
