//go:build !race

// The race detector allocates on its own; make test runs this file in its
// pass without -race.

package upstream

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

// The forwarding path allocates a handful of objects per request, none of
// them per header or per byte: the head's string and its value slots, and
// with a cancellable context the context.AfterFunc registration.
func TestServeAllocations(t *testing.T) {
	addr := cannedBackend(t)
	pool, err := NewPool(PoolConfig{Backends: []BackendConfig{{ID: "a", Addr: addr}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	p, err := NewProxy(ProxyConfig{Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	// A context that lives longer than the request, as a frontend's
	// connection context does.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		max  float64
	}{
		{"never cancelled", context.Background(), 2},
		{"cancellable", ctx, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &discardWriter{h: make(http.Header)}
			r := httptest.NewRequest("GET", "http://app.example/", nil).WithContext(tc.ctx)
			r.Header.Set("User-Agent", "test")
			var tg Target
			serve := func() {
				clear(w.h)
				tg = Target{}
				p.Serve(w, r, &tg)
			}
			serve() // dial, fill the pools
			n := testing.AllocsPerRun(200, serve)
			t.Logf("%v allocations per request", n)
			if n > tc.max {
				t.Errorf("%v allocations per request, want at most %v", n, tc.max)
			}
			if tg.Chosen == nil || w.h.Get("Content-Length") != "1024" {
				t.Errorf("not forwarded: chosen %v, header %v", tg.Chosen, w.h)
			}
		})
	}
}
