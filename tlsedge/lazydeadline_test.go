package tlsedge

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/config"
)

// The header timeout is deferred to the first read of the socket during a
// request head (lazydeadline.go). It must still bound a head that stops
// half way, counted from then, and never from the idle wait before it: a
// client that waits longer than the header timeout between requests and
// then sends a whole head is served.
func TestHeaderTimeoutDeferred(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok") //nolint:errcheck
	}))
	t.Cleanup(origin.Close)
	const header = 300 * time.Millisecond
	g := startGateway(t, &config.Config{
		Frontend: config.Frontend{IdleTimeout: config.Duration(time.Minute), HeaderTimeout: config.Duration(header)},
		Apps:     []config.App{{Hosts: []string{"raw.example.com"}, Backends: []config.Backend{{Addr: origin.Listener.Addr().String()}}}},
	})
	c, br := rawConn(t, g)
	getOK(t, c, br, "/first")
	time.Sleep(2 * header) // idle, longer than the header timeout
	getOK(t, c, br, "/after-a-pause")

	// Half a head in one record, then silence: the connection ends after
	// the header timeout, long before the idle timeout (a minute) and the
	// client's own deadline (10 s).
	io.WriteString(c, "GET /half HTTP/1.1\r\nHost: raw.example.com\r\n") //nolint:errcheck
	start := time.Now()
	rest, err := io.ReadAll(br)
	waited := time.Since(start)
	if err != nil {
		t.Fatalf("after half a head: %v after %v, want the server to close", err, waited)
	}
	if waited < header {
		t.Errorf("closed after %v, before the header timeout (%v)", waited, header)
	}
	if !strings.HasPrefix(string(rest), "HTTP/1.1 408 ") && len(rest) != 0 {
		t.Errorf("answer to half a head: %.60q, want a 408 or nothing", rest)
	}
}
