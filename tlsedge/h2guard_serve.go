//lint:file-ignore SA1019 x/net/http2's Server is deprecated in favour of net/http's, which serves HTTP/2 over TLS only on a concrete *tls.Conn (see newH2Server).

package tlsedge

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// h2MaxReadFrameSize is the SETTINGS_MAX_FRAME_SIZE the server advertises:
// the protocol's initial value (RFC 9113 6.5.2), which clients and
// conformance tools assume, rather than Go's 1 MiB.
const h2MaxReadFrameSize = 16384

// newH2Server prepares hs to serve HTTP/2 connections through serveH2Conn
// and returns the HTTP/2 server to pass it. It sets hs.HTTP2's
// MaxReadFrameSize when unset (hs.HTTP2 is copied, not modified), and
// http2.ConfigureServer registers on hs.Shutdown a hook that sends GOAWAY
// to every connection being served. ConfigureServer also touches
// hs.TLSConfig (creating it, or appending "h2" and "http/1.1" to its
// NextProtos): call this before hs.TLSConfig is in use.
//
// x/net/http2's Server is marked deprecated in favour of net/http's, but
// net/http serves HTTP/2 over TLS only on a concrete *tls.Conn, and the
// guard wraps one. Built with Go 1.27, x/net/http2 hands connections to
// net/http's server instead of its own, and ServeConn with a BaseConfig
// uses a one-off server per connection that hs.Shutdown does not reach:
// TestH2GuardShutdown says when that needs revisiting.
func newH2Server(hs *http.Server) (*http2.Server, error) {
	var conf http.HTTP2Config
	if hs.HTTP2 != nil {
		conf = *hs.HTTP2
	}
	if conf.MaxReadFrameSize == 0 {
		conf.MaxReadFrameSize = h2MaxReadFrameSize
	}
	hs.HTTP2 = &conf
	h2 := new(http2.Server)
	if err := http2.ConfigureServer(hs, h2); err != nil {
		return nil, fmt.Errorf("configure HTTP/2: %w", err)
	}
	return h2, nil
}

// serveH2Conn serves HTTP/2 on c until the connection ends: c is normally
// newH2Guard of a *tls.Conn whose handshake chose "h2". hs gives the
// handler, limits, timeouts and error log; h2 comes from newH2Server(hs).
// Request contexts derive from ctx (canceling it cancels them all, a hard
// stop; a graceful one is hs.Shutdown, see h2Conns). c is closed on
// return.
func serveH2Conn(ctx context.Context, hs *http.Server, h2 *http2.Server, c net.Conn) {
	if hs.ConnContext != nil {
		ctx = hs.ConnContext(ctx, c)
	}
	h2.ServeConn(c, &http2.ServeConnOpts{Context: ctx, BaseConfig: hs, Handler: hs.Handler})
}

// h2Conns tracks the connections being served by serveH2Conn, which
// http.Server does not see, so that a shutdown can wait for them. The
// zero value is ready; it is safe for concurrent use.
type h2Conns struct {
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	draining bool
	idle     chan struct{} // closed when the last conn ends while draining
}

// add starts tracking c; false once shutdown has begun, and the caller
// then closes c instead of serving it.
func (t *h2Conns) add(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.draining {
		return false
	}
	if t.conns == nil {
		t.conns = make(map[net.Conn]struct{})
	}
	t.conns[c] = struct{}{}
	return true
}

// done stops tracking c (its serveH2Conn returned).
func (t *h2Conns) done(c net.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.conns, c)
	if len(t.conns) == 0 && t.idle != nil {
		close(t.idle)
		t.idle = nil
	}
}

// h2GoAwayRepeat is how often shutdown asks hs again to send GOAWAY.
const h2GoAwayRepeat = 100 * time.Millisecond

// shutdown refuses new connections, has hs send GOAWAY to those being
// served (http2.ConfigureServer's hook on hs.Shutdown) and waits until
// their streams have finished and they have closed. When ctx ends first,
// it closes the connections left and returns ctx.Err().
//
// A connection added just before shutdown began may register with the
// HTTP/2 server only after the GOAWAY went out, so hs.Shutdown is called
// again every h2GoAwayRepeat while connections remain: a connection sends
// GOAWAY once whatever the number of calls, and hs (which tracks no
// connection of its own) returns at once.
func (t *h2Conns) shutdown(ctx context.Context, hs *http.Server) error {
	t.mu.Lock()
	t.draining = true
	var idle chan struct{}
	if len(t.conns) > 0 {
		if t.idle == nil {
			t.idle = make(chan struct{})
		}
		idle = t.idle
	}
	t.mu.Unlock()
	err := hs.Shutdown(ctx)
	if idle == nil {
		return err
	}
	tick := time.NewTicker(h2GoAwayRepeat)
	defer tick.Stop()
	for {
		select {
		case <-idle:
			return err
		case <-tick.C:
			hs.Shutdown(ctx) //nolint:errcheck // only the hook matters
		case <-ctx.Done():
			t.mu.Lock()
			for c := range t.conns {
				c.Close()
			}
			t.mu.Unlock()
			return ctx.Err()
		}
	}
}
