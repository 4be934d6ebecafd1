package filter

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// bufProbe sits outside the filter under test: it reports the status the
// chain answered with once the filter has returned, so a test knows the
// request is over (and the buffer released) without sleeping.
type bufProbe struct {
	h    http.Handler
	done chan int
}

func newBufProbe(h http.Handler) *bufProbe { return &bufProbe{h: h, done: make(chan int, 1)} }

func (p *bufProbe) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &bufStatusWriter{ResponseWriter: w}
	defer func() { p.done <- sw.code }()
	p.h.ServeHTTP(sw, r)
}

func (p *bufProbe) wait(t *testing.T) int {
	t.Helper()
	select {
	case code := <-p.done:
		return code
	case <-time.After(10 * time.Second):
		t.Fatal("the filter never returned")
		return 0
	}
}

type bufStatusWriter struct {
	http.ResponseWriter
	code int
}

func (w *bufStatusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *bufStatusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *bufStatusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// bufPattern is n bytes that differ with their offset.
func bufPattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

// bufSeen is what the inner handler saw of a request.
type bufSeen struct {
	body, replay     []byte
	contentLength    int64
	header           string
	transferEncoding []string
	spilled          bool
	file             *os.File
}

func bufRecorder(seen chan<- bufSeen) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := bufSeen{contentLength: r.ContentLength, header: r.Header.Get("Content-Length"), transferEncoding: r.TransferEncoding}
		if sr, ok := r.Body.(*spoolReader); ok {
			s.spilled, s.file = sr.s.file != nil, sr.s.file
		}
		s.body, _ = io.ReadAll(r.Body)
		if r.GetBody != nil {
			rc, err := r.GetBody()
			if err == nil {
				s.replay, _ = io.ReadAll(rc)
				rc.Close()
			}
		}
		seen <- s
	})
}

func newRequestBuffer(t *testing.T, inner http.Handler, cfg RequestBufferConfig) (*httptest.Server, *bufProbe) {
	t.Helper()
	h, err := RequestBuffer(inner, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := newBufProbe(h)
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return srv, p
}

// A slow upload reaches the inner handler only once it is complete, with
// its length known, whether the client declared it or sent it chunked.
func TestRequestBufferSlowClient(t *testing.T) {
	const chunks, chunkLen = 10, 1000
	want := bufPattern(chunks * chunkLen)
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprint("chunked=", chunked), func(t *testing.T) {
			var started atomic.Int32 // chunks the client has begun to send
			seen := make(chan bufSeen, 1)
			inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if n := started.Load(); n != chunks {
					t.Errorf("inner handler called with %d of %d chunks sent", n, chunks)
				}
				bufRecorder(seen).ServeHTTP(w, r)
			})
			srv, probe := newRequestBuffer(t, inner, RequestBufferConfig{})

			pr, pw := io.Pipe()
			go func() {
				for i := range chunks {
					started.Store(int32(i + 1))
					pw.Write(want[i*chunkLen : (i+1)*chunkLen])
					time.Sleep(50 * time.Millisecond) // the pace of a slow client
				}
				pw.Close()
			}()
			req, _ := http.NewRequest("POST", srv.URL, pr)
			if !chunked {
				req.ContentLength = int64(len(want))
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			probe.wait(t)
			s := <-seen
			if !bytes.Equal(s.body, want) || !bytes.Equal(s.replay, want) {
				t.Errorf("body %d bytes, replay %d bytes: want %d, identical", len(s.body), len(s.replay), len(want))
			}
			if s.contentLength != int64(len(want)) || s.header != fmt.Sprint(len(want)) || s.transferEncoding != nil {
				t.Errorf("ContentLength %d, header %q, TransferEncoding %q", s.contentLength, s.header, s.transferEncoding)
			}
		})
	}
}

// A body larger than Memory goes to a temp file, which is unlinked at
// once and closed when the request is over.
func TestRequestBufferSpill(t *testing.T) {
	const memory = 40 << 10 // more than one pool chunk, not a multiple
	for _, tc := range []struct {
		size  int
		spill bool
	}{
		{1, false}, {memory, false}, {memory + 1, true}, {1 << 20, true},
	} {
		t.Run(fmt.Sprint(tc.size), func(t *testing.T) {
			dir := t.TempDir()
			seen := make(chan bufSeen, 1)
			srv, probe := newRequestBuffer(t, bufRecorder(seen), RequestBufferConfig{Memory: memory, TempDir: dir})
			want := bufPattern(tc.size)
			resp, err := srv.Client().Post(srv.URL, "application/octet-stream", io.MultiReader(bytes.NewReader(want))) // chunked
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			probe.wait(t)
			s := <-seen
			if !bytes.Equal(s.body, want) || !bytes.Equal(s.replay, want) {
				t.Errorf("body %d bytes, replay %d bytes: want %d, identical", len(s.body), len(s.replay), len(want))
			}
			if s.spilled != tc.spill {
				t.Errorf("spilled to a file: %v, want %v", s.spilled, tc.spill)
			}
			if s.file != nil {
				if _, err := s.file.Stat(); !errors.Is(err, os.ErrClosed) {
					t.Errorf("temp file still open after the request: %v", err)
				}
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("%d files left in TempDir", len(ents))
			}
		})
	}
}

// A reader from GetBody outlives the handler until it is closed (the
// transport may still be sending it); the spool goes only then.
func TestRequestBufferGetBodyOwnership(t *testing.T) {
	keep := make(chan io.ReadCloser, 1)
	srv, probe := newRequestBuffer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc, _ := r.GetBody()
		keep <- rc
	}), RequestBufferConfig{Memory: 1000})
	want := bufPattern(5000)
	resp, err := srv.Client().Post(srv.URL, "", bytes.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	probe.wait(t)
	rc := <-keep
	file := rc.(*spoolReader).s.file
	if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, want) {
		t.Errorf("late read: %d bytes, %v", len(got), err)
	}
	rc.Close()
	if _, err := file.Stat(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("temp file open after the last reader closed: %v", err)
	}
	if _, err := rc.Read(make([]byte, 1)); !errors.Is(err, http.ErrBodyReadAfterClose) {
		t.Errorf("read after close: %v", err)
	}
}

// bufRawRequest sends raw bytes on a new connection and returns it.
func bufRawRequest(t *testing.T, srv *httptest.Server, raw string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	return conn
}

// Bodies that cannot be buffered whole are answered by the filter; the
// inner handler never runs.
func TestRequestBufferRefused(t *testing.T) {
	const head = "POST / HTTP/1.1\r\nHost: x\r\n"
	for _, tc := range []struct {
		name string
		raw  string
		hang bool // keep the connection open: a client that stalls
		want int
	}{
		{"declared over max", head + "Content-Length: 1001\r\n\r\n", true, 413},
		{"chunked over max", head + "Transfer-Encoding: chunked\r\n\r\n3e8\r\n" + strings.Repeat("x", 1000) + "\r\n1\r\nx\r\n0\r\n\r\n", true, 413},
		{"abort declared", head + "Content-Length: 1000\r\n\r\n" + strings.Repeat("x", 100), false, 400},
		{"abort chunked", head + "Transfer-Encoding: chunked\r\n\r\n64\r\n" + strings.Repeat("x", 50), false, 400},
		{"bad chunk", head + "Transfer-Encoding: chunked\r\n\r\nzz\r\n", true, 400},
		{"stall", head + "Content-Length: 1000\r\n\r\n" + strings.Repeat("x", 100), true, 408},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := RequestBuffer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				t.Error("inner handler called")
			}), RequestBufferConfig{Memory: 100, Max: 1000})
			if err != nil {
				t.Fatal(err)
			}
			probe := newBufProbe(h)
			srv := httptest.NewUnstartedServer(probe)
			srv.Config.ReadTimeout = 300 * time.Millisecond // only the stall waits for it
			srv.Start()
			defer srv.Close()
			conn := bufRawRequest(t, srv, tc.raw)
			if !tc.hang {
				conn.(*net.TCPConn).CloseWrite()
			}
			if got := probe.wait(t); got != tc.want {
				t.Errorf("filter answered %d, want %d", got, tc.want)
			}
			if tc.hang { // the client is still there to read the answer
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.want || !resp.Close {
					t.Errorf("client got %d (close %v), want %d and close", resp.StatusCode, resp.Close, tc.want)
				}
			}
			conn.Close() // before srv.Close, which waits for the server's side
		})
	}
}

// Requests without a body pass straight through; an empty chunked body
// becomes NoBody, which http.Transport sends as no body at all.
func TestRequestBufferNoBody(t *testing.T) {
	var body io.ReadCloser
	var length int64
	h, _ := RequestBuffer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, length = r.Body, r.ContentLength
	}), RequestBufferConfig{})
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	if body != http.NoBody || length != 0 {
		t.Errorf("GET: body %T, length %d", body, length)
	}
	r := httptest.NewRequest("POST", "/", io.NopCloser(strings.NewReader("")))
	r.ContentLength, r.TransferEncoding = -1, []string{"chunked"}
	h.ServeHTTP(httptest.NewRecorder(), r)
	if body != http.NoBody || length != 0 || r.TransferEncoding != nil {
		t.Errorf("empty chunked: body %T, length %d, TE %q", body, length, r.TransferEncoding)
	}
}

// Through httputil.ReverseProxy: a chunked upload reaches the backend
// with a Content-Length, and Expect: 100-continue is not passed on.
func TestRequestBufferProxy(t *testing.T) {
	type got struct {
		length int64
		te     []string
		expect string
		body   []byte
	}
	gotc := make(chan got, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		gotc <- got{r.ContentLength, r.TransferEncoding, r.Header.Get("Expect"), b}
	}))
	defer backend.Close()
	u, _ := url.Parse(backend.URL)
	srv, probe := newRequestBuffer(t, httputil.NewSingleHostReverseProxy(u), RequestBufferConfig{Memory: 1000})
	want := bufPattern(100_000)
	req, _ := http.NewRequest("POST", srv.URL, io.MultiReader(bytes.NewReader(want)))
	req.Header.Set("Expect", "100-continue")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	probe.wait(t)
	g := <-gotc
	if g.length != int64(len(want)) || g.te != nil || g.expect != "" || !bytes.Equal(g.body, want) {
		t.Errorf("backend saw length %d, TE %q, Expect %q, %d bytes", g.length, g.te, g.expect, len(g.body))
	}
}

func TestRequestBufferConfig(t *testing.T) {
	next := http.NotFoundHandler()
	file := t.TempDir() + "/file"
	os.WriteFile(file, nil, 0o600)
	for _, cfg := range []RequestBufferConfig{
		{Memory: -1}, {Max: -1}, {TempDir: t.TempDir() + "/missing"}, {TempDir: file},
	} {
		if _, err := RequestBuffer(next, cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	for _, tc := range []struct {
		cfg         RequestBufferConfig
		memory, max int64
	}{
		{RequestBufferConfig{}, 64 << 10, 8 << 20},
		{RequestBufferConfig{Max: 1000}, 1000, 1000}, // memory never over max
		{RequestBufferConfig{Memory: 10, Max: 1000}, 10, 1000},
	} {
		h, err := RequestBuffer(next, tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if f := h.(*requestBuffer); f.memory != tc.memory || f.max != tc.max {
			t.Errorf("%+v: memory %d, max %d; want %d, %d", tc.cfg, f.memory, f.max, tc.memory, tc.max)
		}
	}
}
