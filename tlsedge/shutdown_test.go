package tlsedge

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/config"
)

// At a stop, a request in flight finishes when shutdown_timeout leaves it
// the time, and is cut when it does not.
func TestShutdownTimeout(t *testing.T) {
	for _, tc := range []struct {
		name     string
		timeout  time.Duration
		finishes bool
	}{{"long enough", 5 * time.Second, true}, {"too short", 300 * time.Millisecond, false}} {
		t.Run(tc.name, func(t *testing.T) {
			started := make(chan struct{})
			slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				close(started)
				time.Sleep(1500 * time.Millisecond)
				io.WriteString(w, "done") //nolint:errcheck
			}))
			defer slow.Close()
			g := startGateway(t, &config.Config{ShutdownTimeout: config.Duration(tc.timeout),
				Apps: []config.App{app("shop.example.com", slow.Listener.Addr().String())}})
			type result struct {
				body string
				err  error
			}
			res := make(chan result, 1)
			go func() {
				resp, err := g.client(true).Get("https://shop.example.com/slow")
				if err != nil {
					res <- result{err: err}
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				res <- result{string(b), err}
			}()
			<-started
			g.stop()
			r := <-res
			if got := r.err == nil && r.body == "done"; got != tc.finishes {
				t.Errorf("request finished: %v (%q, %v), want %v", got, r.body, r.err, tc.finishes)
			}
		})
	}
}
