package upstream

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// fakeClock is the injectable clock of passive health: tests move it instead
// of sleeping through backoff windows.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// testBackend is a real HTTP backend on 127.0.0.1 that names itself in the
// X-Backend response header and counts requests and TCP connections.
type testBackend struct {
	*httptest.Server
	id       string
	requests atomic.Int64
	conns    atomic.Int64
	closed   atomic.Int64 // connections closed
}

func newTestBackend(t *testing.T, id string, h http.HandlerFunc) *testBackend {
	t.Helper()
	tb := &testBackend{id: id}
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Body-Len", strconv.Itoa(len(body)))
			_, _ = w.Write(body)
		}
	}
	tb.start(t, h, nil)
	return tb
}

// start serves h (counting requests and connections) on l, or on a
// fresh loopback port when l is nil, until the test ends.
func (tb *testBackend) start(t *testing.T, h http.HandlerFunc, l net.Listener) {
	tb.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tb.requests.Add(1)
		w.Header().Set("X-Backend", tb.id)
		h(w, r)
	}))
	if l != nil {
		_ = tb.Listener.Close()
		tb.Listener = l
	}
	tb.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			tb.conns.Add(1)
		case http.StateClosed, http.StateHijacked:
			tb.closed.Add(1)
		}
	}
	tb.Start()
	t.Cleanup(tb.Close)
}

func (tb *testBackend) addr() string { return tb.Listener.Addr().String() }

func (tb *testBackend) config(weight int) BackendConfig {
	return BackendConfig{ID: tb.id, Addr: tb.addr(), Weight: weight}
}

// refusedAddr returns a loopback address nobody listens on: a listener is
// opened for a free port and closed, so connecting is refused at once.
func refusedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// resetBackend accepts connections, reads the request head and resets the
// connection (SO_LINGER 0), counting arrivals: a backend that was reached and
// failed mid-request.
type resetBackend struct {
	l        net.Listener
	arrivals atomic.Int64
	wg       sync.WaitGroup
}

func newResetBackend(t *testing.T) *resetBackend {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rb := &resetBackend{l: l}
	rb.wg.Go(func() {
		// Bounded by the listener: Accept fails once Cleanup closes it.
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			rb.arrivals.Add(1)
			rb.wg.Go(func() { rb.reset(c) })
		}
	})
	t.Cleanup(func() {
		_ = l.Close()
		rb.wg.Wait()
	})
	return rb
}

func (rb *resetBackend) reset(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	var seen []byte
	for len(seen) < 64<<10 { // the head is small; bounded anyway
		n, err := c.Read(buf)
		seen = append(seen, buf[:n]...)
		if err != nil || containsHeadEnd(seen) {
			break
		}
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

func containsHeadEnd(b []byte) bool {
	for i := 0; i+3 < len(b); i++ {
		if b[i] == '\r' && b[i+1] == '\n' && b[i+2] == '\r' && b[i+3] == '\n' {
			return true
		}
	}
	return false
}

func (rb *resetBackend) addr() string { return rb.l.Addr().String() }

// newTestProxy builds a pool over cfgs and a proxy logging into a test hook.
func newTestProxy(t *testing.T, pc PoolConfig, clock *fakeClock) (*Proxy, *logtest.Hook) {
	t.Helper()
	pool, err := NewPool(pc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	cfg := ProxyConfig{
		Pool: pool,
		Log:  logger.WithField("app", "test"),
	}
	if clock != nil {
		cfg.Now = clock.Now
	}
	p, err := NewProxy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p, hook
}

// targetWriter reports the request's Target in the X-Chosen and
// X-Attempts response headers, written when the response head goes out (or
// the connection is hijacked for an upgrade), the way tlsedge's exchange
// adds sticky cookies.
type targetWriter struct {
	http.ResponseWriter
	t    *Target
	done bool
}

func (w *targetWriter) stamp() {
	if w.done || w.t.Chosen == nil {
		return
	}
	w.done = true
	w.Header().Set("X-Chosen", w.t.Chosen.ID())
	w.Header().Set("X-Attempts", strconv.Itoa(w.t.Attempts))
}

func (w *targetWriter) WriteHeader(code int) {
	if code >= 200 {
		w.stamp()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *targetWriter) Write(p []byte) (int, error) {
	w.stamp()
	return w.ResponseWriter.Write(p)
}

func (w *targetWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.stamp()
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *targetWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// newFront serves p on 127.0.0.1, with the sticky preference given by prefer
// (nil: none).
func newFront(t *testing.T, p *Proxy, prefer func() *Backend) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg := &Target{}
		if prefer != nil {
			tg.Prefer = prefer()
		}
		p.Serve(&targetWriter{ResponseWriter: w, t: tg}, r, tg)
	}))
	t.Cleanup(ts.Close)
	return ts
}

// get does a GET through the front and returns status, headers and body.
func get(t *testing.T, c *http.Client, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

// rawBackend is a scripted HTTP/1.1 backend on 127.0.0.1: serve gets each
// connection with a reader over it and writes whatever bytes the test
// needs, valid or not. The connection is closed when serve returns; every
// connection has a 10 s deadline, so a test that goes wrong ends.
type rawBackend struct {
	l     net.Listener
	conns atomic.Int64
	wg    sync.WaitGroup
}

func newRawBackend(t *testing.T, serve func(c net.Conn, br *bufio.Reader)) *rawBackend {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rb := &rawBackend{l: l}
	rb.wg.Go(func() {
		for { // ends when Cleanup closes the listener
			c, err := l.Accept()
			if err != nil {
				return
			}
			rb.conns.Add(1)
			rb.wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				serve(c, bufio.NewReader(c))
			})
		}
	})
	t.Cleanup(func() {
		_ = l.Close()
		rb.wg.Wait()
	})
	return rb
}

func (rb *rawBackend) addr() string { return rb.l.Addr().String() }

// readRequest reads one request with net/http's parser (which also checks
// what the proxy wrote) and its whole body.
func readRequest(br *bufio.Reader) (*http.Request, []byte, error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, nil, err
	}
	body, err := io.ReadAll(req.Body)
	return req, body, err
}

// waitClosed reads from c until the peer closes it, and reports whether
// it did within d: how a backend sees that the proxy discarded the
// connection.
func waitClosed(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return err == nil || !(errors.As(err, &ne) && ne.Timeout())
}

// eventually polls cond every 5 ms for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}
