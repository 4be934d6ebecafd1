package tlsedge

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Behaviours of the HTTP/2 server beyond h2spec's: what the proxy and
// its clients rely on.

// TestH2SrvTrailersAndFlush: a streamed answer reaches the client before
// the handler returns (http.Flusher), and trailers, declared and
// http.TrailerPrefix ones, follow the body.
func TestH2SrvTrailersAndFlush(t *testing.T) {
	cert, roots := testH2Cert(t)
	release := make(chan struct{})
	s := startH2TestServer(t, cert, roots, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n") //nolint:errcheck
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "data: second\n\n") //nolint:errcheck
		w.Header().Set("X-Sum", "42")
		w.Header().Set(http.TrailerPrefix+"X-Late", "yes")
	}))
	resp, err := s.client().Get("https://" + s.addr + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, len("data: first\n\n"))
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "data: first\n\n" {
		t.Fatalf("first event before the handler returned: %q, %v", first, err)
	}
	close(release)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "data: second\n\n" {
		t.Fatalf("rest: %q, %v", rest, err)
	}
	if resp.Trailer.Get("X-Sum") != "42" || resp.Trailer.Get("X-Late") != "yes" || resp.Header.Get("X-Sum") != "" {
		t.Errorf("trailers %v, header %v", resp.Trailer, resp.Header)
	}
}

// A small response that is all buffered when the handler returns: its head
// says its length, unless the handler set trailers without declaring them
// (http.TrailerPrefix keys, found while the head is encoded), which then
// follow the body.
func TestH2SrvLengthOrUnannouncedTrailers(t *testing.T) {
	cert, roots := testH2Cert(t)
	s := startH2TestServer(t, cert, roots, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hi") //nolint:errcheck
		if r.URL.Path == "/trailers" {
			w.Header().Set(http.TrailerPrefix+"X-Late", "yes")
		}
	}))
	for _, tc := range []struct {
		path    string
		length  int64
		trailer string
	}{{"/plain", 2, ""}, {"/trailers", -1, "yes"}} {
		resp, err := s.client().Get("https://" + s.addr + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != "hi" {
			t.Fatalf("%s: body %q, %v", tc.path, body, err)
		}
		if resp.ContentLength != tc.length || resp.Trailer.Get("X-Late") != tc.trailer {
			t.Errorf("%s: Content-Length %d, trailer X-Late %q; want %d, %q", tc.path, resp.ContentLength, resp.Trailer.Get("X-Late"), tc.length, tc.trailer)
		}
	}
}

// TestH2SrvResetCancels: a client's RST_STREAM ends the request's context
// at once (the proxy lets go of the backend), and the connection goes on.
func TestH2SrvResetCancels(t *testing.T) {
	cert, roots := testH2Cert(t)
	cancelled := make(chan error, 1)
	s := startH2TestServer(t, cert, roots, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/wait" {
			io.WriteString(w, "ok") //nolint:errcheck
			return
		}
		select {
		case <-r.Context().Done():
			cancelled <- r.Context().Err()
		case <-time.After(10 * time.Second):
			cancelled <- nil
		}
	}))
	c := dialH2Raw(t, s)
	c.request(1, "GET", "/wait", false)
	c.sync(1)
	c.fr.WriteRSTStream(1, http2.ErrCodeCancel)
	if err := <-cancelled; err != context.Canceled {
		t.Fatalf("request context: %v, want canceled", err)
	}
	c.request(3, "GET", "/", false)
	if evs := c.until(3, func(e h2Event) bool { return e.endStream || h2IsReset(3)(e) }); evs[0].status != "200" {
		t.Fatalf("next request: %v", evs)
	}
}

// TestH2SrvConcurrencyLimit: streams over SETTINGS_MAX_CONCURRENT_STREAMS
// are refused (RFC 9113 5.1.2) and the others served.
func TestH2SrvConcurrencyLimit(t *testing.T) {
	cert, roots := testH2Cert(t)
	release := make(chan struct{})
	var started atomic.Int32
	s := startH2TestServer(t, cert, roots, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Add(1)
		<-release
	}))
	c := dialH2Raw(t, s)
	for i := range h2MaxStreams + 1 {
		c.request(uint32(2*i+1), "GET", "/", false)
	}
	last := uint32(2*h2MaxStreams + 1)
	evs := c.until(last, h2IsReset(last))
	if e := evs[len(evs)-1]; e.typ != http2.FrameRSTStream || e.code != http2.ErrCodeRefusedStream {
		t.Fatalf("stream over the limit: %v", evs)
	}
	eventually(t, "every stream under the limit started", func() bool { return started.Load() == h2MaxStreams })
	close(release)
	n := 0
	c.until(0, func(e h2Event) bool {
		if e.endStream {
			n++
		}
		return n == h2MaxStreams
	})
}

// TestH2SrvHandlerPanic: a panicking handler resets its stream with
// INTERNAL_ERROR; the connection serves the next one.
func TestH2SrvHandlerPanic(t *testing.T) {
	cert, roots := testH2Cert(t)
	s := startH2TestServer(t, cert, roots, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			io.WriteString(w, "partial") //nolint:errcheck
			panic(http.ErrAbortHandler)
		}
		io.WriteString(w, "ok") //nolint:errcheck
	}))
	c := dialH2Raw(t, s)
	c.request(1, "GET", "/panic", false)
	evs := c.until(1, h2IsReset(1))
	if e := evs[len(evs)-1]; e.typ != http2.FrameRSTStream || e.code != http2.ErrCodeInternal {
		t.Fatalf("after the panic: %v", evs)
	}
	c.request(3, "GET", "/", false)
	if evs := c.until(3, func(e h2Event) bool { return e.endStream || h2IsReset(3)(e) }); evs[0].status != "200" {
		t.Fatalf("next request: %v", evs)
	}
}

// TestH2SrvShortBody: an answer shorter than its Content-Length (a backend
// that broke off) ends with RST_STREAM(INTERNAL_ERROR), not END_STREAM.
func TestH2SrvShortBody(t *testing.T) {
	cert, roots := testH2Cert(t)
	s := startH2TestServer(t, cert, roots, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, "only this") //nolint:errcheck
	}))
	c := dialH2Raw(t, s)
	c.request(1, "GET", "/", false)
	evs := c.until(1, h2IsReset(1))
	for _, e := range evs {
		if e.endStream {
			t.Fatalf("the stream ended cleanly: %v", evs)
		}
	}
	if e := evs[len(evs)-1]; e.code != http2.ErrCodeInternal {
		t.Fatalf("want RST_STREAM(INTERNAL_ERROR): %v", evs)
	}
}

// TestH2SrvExpectContinue: 100 Continue goes out when the handler first
// reads the body, not before, and not at all when it answers without.
func TestH2SrvExpectContinue(t *testing.T) {
	cert, roots := testH2Cert(t)
	s := startH2TestServer(t, cert, roots, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/refuse" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%d", len(b))
	}))
	for _, tc := range []struct {
		path, first string
	}{{"/read", "100"}, {"/refuse", "403"}} {
		t.Run(tc.path, func(t *testing.T) {
			c := dialH2Raw(t, s)
			c.request(1, "POST", tc.path, true, "expect", "100-continue", "content-length", "5")
			evs := c.until(1, func(e h2Event) bool { return e.typ == http2.FrameHeaders || h2IsReset(1)(e) })
			if got := evs[len(evs)-1].status; got != tc.first {
				t.Fatalf("first answer %v, want %s", evs, tc.first)
			}
			if tc.first != "100" {
				return
			}
			c.fr.WriteData(1, true, []byte("hello"))
			evs = c.until(1, func(e h2Event) bool { return e.endStream || h2IsReset(1)(e) })
			if evs[0].status != "200" {
				t.Fatalf("after the body: %v", evs)
			}
		})
	}
}

// TestH2SrvBodyTimeout: a request body that stops coming fails the
// handler's read with a timeout after the body timeout.
func TestH2SrvBodyTimeout(t *testing.T) {
	cert, roots := testH2Cert(t)
	readErr := make(chan error, 1)
	s := startH2TestServer(t, cert, roots, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		readErr <- err
		w.WriteHeader(http.StatusRequestTimeout)
	}))
	s.bodyTimeout.Store(int64(300 * time.Millisecond))
	c := dialH2Raw(t, s)
	c.request(1, "POST", "/", true)
	c.fr.WriteData(1, false, []byte("part"))
	start := time.Now()
	err := <-readErr
	if ne, ok := err.(interface{ Timeout() bool }); !ok || !ne.Timeout() {
		t.Fatalf("read: %v, want a timeout", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("timed out after %v", d)
	}
	evs := c.until(1, h2IsReset(1))
	if evs[0].status != "408" {
		t.Fatalf("answer: %v", evs)
	}
}

// TestH2SrvIdleTimeout: a connection without streams for the idle timeout
// gets GOAWAY(NO_ERROR) and is closed.
func TestH2SrvIdleTimeout(t *testing.T) {
	cert, roots := testH2Cert(t)
	s := startH2TestServer(t, cert, roots, h2TestHandler())
	s.idleTimeout.Store(int64(300 * time.Millisecond))
	c := dialH2Raw(t, s)
	c.request(1, "GET", "/", false)
	c.until(1, func(e h2Event) bool { return e.endStream })
	start := time.Now()
	evs := c.until(0, func(e h2Event) bool { return e.typ == http2.FrameGoAway })
	if e := evs[len(evs)-1]; e.code != http2.ErrCodeNo || time.Since(start) > 5*time.Second {
		t.Fatalf("idle: %v after %v", evs, time.Since(start))
	}
	if _, err := c.fr.ReadFrame(); err == nil {
		t.Fatal("the connection stays open after GOAWAY")
	}
}

// TestH2SrvHeadLimit: a head over 64 KiB as HTTP/1.1 lines gets 431 and
// the connection goes on; cookie crumbs are joined for the handler.
func TestH2SrvHeadLimit(t *testing.T) {
	cert, roots := testH2Cert(t)
	s := startH2TestServer(t, cert, roots, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("Cookie")) //nolint:errcheck
	}))
	c := dialH2Raw(t, s)
	c.requestSplit(1, "GET", "/", "x-big", strings.Repeat("a", maxHeaderBytes))
	if evs := c.until(1, func(e h2Event) bool { return e.endStream || h2IsReset(1)(e) }); evs[0].status != "431" {
		t.Fatalf("big head: %v", evs)
	}
	if n := s.calls.Load(); n != 0 {
		t.Fatalf("the handler was called %d times", n)
	}
	resp, err := s.client().Do(func() *http.Request {
		req, _ := http.NewRequest("GET", "https://"+s.addr+"/", nil)
		req.Header.Add("Cookie", "a=1")
		req.Header.Add("Cookie", "b=2")
		return req
	}())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(b, []byte("a=1; b=2")) {
		t.Errorf("cookies: %q", b)
	}
}

// requestSplit is request for a header block larger than a frame: HEADERS
// and CONTINUATION frames of the default frame size, END_STREAM set.
func (r *h2Raw) requestSplit(id uint32, method, path string, extra ...string) {
	r.t.Helper()
	r.hbuf.Reset()
	for _, f := range [][2]string{{":method", method}, {":scheme", "https"}, {":authority", "localhost"}, {":path", path}} {
		r.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for i := 0; i < len(extra); i += 2 {
		r.enc.WriteField(hpack.HeaderField{Name: extra[i], Value: extra[i+1]})
	}
	b := r.hbuf.Bytes()
	first := b[:min(len(b), h2MaxFrameSize)]
	b = b[len(first):]
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndHeaders: len(b) == 0, EndStream: true}); err != nil {
		r.t.Fatal(err)
	}
	for len(b) > 0 {
		frag := b[:min(len(b), h2MaxFrameSize)]
		b = b[len(frag):]
		if err := r.fr.WriteContinuation(id, len(b) == 0, frag); err != nil {
			r.t.Fatal(err)
		}
	}
}

// TestH2SrvTableReferences: a header block that references one large
// table entry over and over (a few bytes on the wire, megabytes decoded)
// is refused with 431 once the head passes the limit, without checking
// the rest, and the connection goes on.
func TestH2SrvTableReferences(t *testing.T) {
	cert, roots := testH2Cert(t)
	s := startH2TestServer(t, cert, roots, h2TestHandler())
	c := dialH2Raw(t, s)
	c.hbuf.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/"}, {"x-big", strings.Repeat("v", 4000)}} {
		c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	block := append([]byte(nil), c.hbuf.Bytes()...)
	// 0xbe is index 62: the newest entry of the dynamic table, x-big.
	block = append(block, bytes.Repeat([]byte{0xbe}, 3*h2MaxFrameSize)...)
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:h2MaxFrameSize], EndStream: true})
	for p := block[h2MaxFrameSize:]; len(p) > 0; {
		n := min(len(p), h2MaxFrameSize)
		c.fr.WriteContinuation(1, n == len(p), p[:n])
		p = p[n:]
	}
	if evs := c.until(1, func(e h2Event) bool { return e.endStream || h2IsReset(1)(e) }); evs[0].status != "431" {
		t.Fatalf("want 431: %v", evs)
	}
	c.request(3, "GET", "/", false)
	if evs := c.until(3, func(e h2Event) bool { return e.endStream || h2IsReset(3)(e) }); evs[0].status != "200" {
		t.Fatalf("next request: %v", evs)
	}
}

// A stream reset cancels its request's context; a context derived from it
// (context.WithCancel, as filters and the proxy make) is cancelled by a
// goroutine that reads the parent's Err when it runs. Reusing the parent
// for the stream's next request before that goroutine ran made Err nil
// and the context package panicked ("missing cancel error"), ending the
// process (seen in TestH2SpecGateway, 1 run in 7).
func TestH2CtxCancelledIsNotReused(t *testing.T) {
	for range 200 {
		x := new(h2Ctx)
		if !x.reuse(context.Background()) {
			t.Fatal("a fresh context was not reusable")
		}
		child, stop := context.WithCancel(x)
		x.cancel(context.Canceled)
		if x.reuse(context.Background()) {
			t.Fatal("a cancelled context was made reusable")
		}
		<-child.Done()
		if err := child.Err(); err != context.Canceled {
			t.Fatalf("derived context: %v, want context.Canceled", err)
		}
		if err := x.Err(); err != context.Canceled {
			t.Fatalf("cancelled context: %v later, want context.Canceled", err)
		}
		stop()
	}
}
