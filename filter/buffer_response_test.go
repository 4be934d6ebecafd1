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
	"strings"
	"testing"
	"time"
)

// bufSmallSendListener gives accepted connections a small send buffer,
// so a server write cannot disappear into the kernel's buffers: with
// these and the client's small receive buffer, 512 KiB cannot be written
// to a client that does not read.
type bufSmallSendListener struct{ net.Listener }

func (l bufSmallSendListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(4 << 10)
	}
	return c, err
}

func newResponseBuffer(t *testing.T, inner http.Handler, cfg ResponseBufferConfig) *httptest.Server {
	t.Helper()
	h, err := ResponseBuffer(inner, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = bufSmallSendListener{srv.Listener}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// bufAwait waits for c, failing the test (not hanging it) if it never comes.
func bufAwait(t *testing.T, c <-chan struct{}, what string) bool {
	select {
	case <-c:
		return true
	case <-time.After(10 * time.Second):
		t.Errorf("timed out waiting for %s", what)
		return false
	}
}

// The handler writes a large response and returns while the client has
// not read a byte; the client then gets all of it, with its length.
func TestResponseBufferSlowClient(t *testing.T) {
	want := bufPattern(512 << 10)
	returned := make(chan struct{})
	srv := newResponseBuffer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(returned)
		w.Header().Set("Content-Type", "application/octet-stream")
		for i := 0; i < len(want); i += 8 << 10 {
			w.Write(want[i : i+8<<10])
		}
	}), ResponseBufferConfig{})

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4 << 10)
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if !bufAwait(t, returned, "the handler to return before the client reads") {
		return
	}
	conn.(*net.TCPConn).SetReadBuffer(1 << 20) // read at full speed now
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(got, want) || resp.ContentLength != int64(len(want)) {
		t.Errorf("got %d bytes (%v), Content-Length %d; want %d", len(got), err, resp.ContentLength, len(want))
	}
}

// A body over Max streams: the client has the head before the handler
// returns, and the whole body after.
func TestResponseBufferOverflow(t *testing.T) {
	want := bufPattern(300 << 10)
	gotHead := make(chan struct{})
	srv := newResponseBuffer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < len(want); i += 10 << 10 {
			w.Write(want[i:min(i+10<<10, len(want))])
		}
		bufAwait(t, gotHead, "the client to see the head of an overflowed response")
	}), ResponseBufferConfig{Max: 64 << 10})
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	close(gotHead)
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, want) || resp.ContentLength != -1 {
		t.Errorf("got %d bytes (%v), Content-Length %d; want %d, chunked", len(got), err, resp.ContentLength, len(want))
	}
}

// Streaming responses pass through: an event-stream or gRPC type, or a
// backend's X-Accel-Buffering: no, sends what was written while the
// handler still runs.
func TestResponseBufferStreaming(t *testing.T) {
	events := strings.Repeat("data: tick\n\n", 2000) // more than net/http buffers
	for name, stream := range map[string]func(t *testing.T, w http.ResponseWriter){
		"X-Accel-Buffering": func(t *testing.T, w http.ResponseWriter) {
			w.Header().Set("X-Accel-Buffering", "no")
			w.Write([]byte("data: first\n\n"))
			if err := http.NewResponseController(w).Flush(); err != nil {
				t.Error(err)
			}
		},
		"gRPC": func(t *testing.T, w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/grpc+proto")
			w.Write([]byte("data: first\n\n"))
			w.(http.Flusher).Flush()
		},
		"SSE": func(t *testing.T, w http.ResponseWriter) {
			w.Header().Set("Content-Type", "Text/Event-Stream; charset=utf-8")
			w.WriteHeader(200)
			w.Write([]byte("data: first\n\n" + events))
		},
		"SSE implicit 200": func(t *testing.T, w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/event-stream")
			w.Write([]byte("data: first\n\n" + events))
		},
	} {
		t.Run(name, func(t *testing.T) {
			gotFirst := make(chan struct{})
			srv := newResponseBuffer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				stream(t, w)
				if bufAwait(t, gotFirst, "the first event while the handler runs") {
					w.Write([]byte("data: last\n\n"))
				}
			}), ResponseBufferConfig{})
			resp, err := srv.Client().Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			if line, err := br.ReadString('\n'); line != "data: first\n" {
				t.Fatalf("first line %q, %v", line, err)
			}
			close(gotFirst)
			rest, _ := io.ReadAll(br)
			if !strings.HasSuffix(string(rest), "data: last\n\n") {
				t.Errorf("stream ends %q", rest[max(0, len(rest)-20):])
			}
		})
	}
}

// Held responses come out as net/http would have sent them.
func TestResponseBufferHeld(t *testing.T) {
	for _, tc := range []struct {
		name, method string
		h            func(t *testing.T, w http.ResponseWriter)
		code         int
		length       int64
		body         string
	}{
		{"implicit 200", "GET", func(t *testing.T, w http.ResponseWriter) { w.Write([]byte("hello")) }, 200, 5, "hello"},
		{"nothing written", "GET", func(t *testing.T, w http.ResponseWriter) {}, 200, 0, ""},
		{"second WriteHeader ignored", "GET", func(t *testing.T, w http.ResponseWriter) {
			w.WriteHeader(201)
			w.WriteHeader(500)
			w.Write([]byte("made"))
		}, 201, 4, "made"},
		{"next's Content-Length kept", "HEAD", func(t *testing.T, w http.ResponseWriter) {
			w.Header().Set("Content-Length", "1234")
		}, 200, 1234, ""},
		{"204 has no body", "GET", func(t *testing.T, w http.ResponseWriter) {
			w.WriteHeader(204)
			if _, err := w.Write([]byte("x")); !errors.Is(err, http.ErrBodyNotAllowed) {
				t.Errorf("Write on a 204: %v", err)
			}
		}, 204, 0, ""},
		{"early hints sent, status later", "GET", func(t *testing.T, w http.ResponseWriter) {
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(103)
			w.WriteHeader(404)
			w.Write([]byte("no"))
		}, 404, 2, "no"},
		{"deadline through Unwrap", "GET", func(t *testing.T, w http.ResponseWriter) {
			if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
				t.Error(err)
			}
			w.Write([]byte("ok"))
		}, 200, 2, "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newResponseBuffer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tc.h(t, w) }), ResponseBufferConfig{})
			req, _ := http.NewRequest(tc.method, srv.URL, nil)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code || resp.ContentLength != tc.length || string(body) != tc.body {
				t.Errorf("%d, length %d, %q; want %d, %d, %q", resp.StatusCode, resp.ContentLength, body, tc.code, tc.length, tc.body)
			}
		})
	}
}

// Trailers are announced: the response streams, and they arrive.
func TestResponseBufferTrailer(t *testing.T) {
	srv := newResponseBuffer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "Grpc-Status")
		w.Write([]byte("msg"))
		w.Header().Set("Grpc-Status", "0")
	}), ResponseBufferConfig{})
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Trailer.Get("Grpc-Status") != "0" || resp.Header.Get("Grpc-Status") != "" {
		t.Errorf("trailer %q, header %q", resp.Trailer, resp.Header)
	}
}

// Hijacking works through the wrapper, both ways of asking.
func TestResponseBufferHijack(t *testing.T) {
	for _, controller := range []bool{true, false} {
		t.Run(fmt.Sprint("ResponseController=", controller), func(t *testing.T) {
			srv := newResponseBuffer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var conn net.Conn
				var err error
				if controller {
					conn, _, err = http.NewResponseController(w).Hijack()
				} else {
					conn, _, err = w.(http.Hijacker).Hijack()
				}
				if err != nil {
					t.Error(err)
					return
				}
				defer conn.Close()
				io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nhello")
			}), ResponseBufferConfig{})
			conn := bufRawRequest(t, srv, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
			got, _ := io.ReadAll(conn)
			if !strings.HasPrefix(string(got), "HTTP/1.1 101 ") || !strings.HasSuffix(string(got), "\r\n\r\nhello") {
				t.Errorf("client got %q", got)
			}
		})
	}
}

// A next that aborts (ReverseProxy when the backend breaks off) must not
// have its partial body delivered as a complete one.
func TestResponseBufferAbort(t *testing.T) {
	srv := newResponseBuffer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("half of it"))
		panic(http.ErrAbortHandler)
	}), ResponseBufferConfig{})
	if resp, err := srv.Client().Get(srv.URL); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Errorf("aborted response delivered: %d %q", resp.StatusCode, body)
	}
}

// Behind httputil.ReverseProxy: a backend response is held and gets its
// length, with or without one from the backend, although the proxy
// flushes each write of the chunked one.
func TestResponseBufferProxy(t *testing.T) {
	want := bufPattern(100 << 10)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/length" {
			w.Header().Set("Content-Length", fmt.Sprint(len(want)))
		}
		w.Write(want)
	}))
	defer backend.Close()
	u, _ := url.Parse(backend.URL)
	srv := newResponseBuffer(t, httputil.NewSingleHostReverseProxy(u), ResponseBufferConfig{})
	for path, length := range map[string]int64{"/length": int64(len(want)), "/chunked": int64(len(want))} {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Equal(got, want) || resp.ContentLength != length {
			t.Errorf("%s: %d bytes, Content-Length %d; want %d, %d", path, len(got), resp.ContentLength, len(want), length)
		}
	}
}

func TestResponseBufferConfig(t *testing.T) {
	if _, err := ResponseBuffer(http.NotFoundHandler(), ResponseBufferConfig{Max: -1}); err == nil {
		t.Error("negative Max accepted")
	}
	h, _ := ResponseBuffer(http.NotFoundHandler(), ResponseBufferConfig{})
	if m := h.(*responseBuffer).max; m != 1<<20 {
		t.Errorf("default max %d", m)
	}
}

// memBuf's chunk arithmetic at and around chunk boundaries.
func TestResponseBufferMemBuf(t *testing.T) {
	for _, n := range []int{0, 1, bufChunkSize - 1, bufChunkSize, bufChunkSize + 1, 3*bufChunkSize + 17} {
		want := bufPattern(n)
		var b memBuf
		b.Write(want[:n/3])
		b.Write(want[n/3:])
		var out bytes.Buffer
		b.writeTo(&out)
		got := make([]byte, n)
		for off := 0; off < n; {
			off += b.readAt(got[off:min(off+1000, n)], off)
		}
		if !bytes.Equal(out.Bytes(), want) || !bytes.Equal(got, want) {
			t.Errorf("%d bytes: writeTo %d bytes, readAt differs: %v", n, out.Len(), !bytes.Equal(got, want))
		}
		b.free()
	}
}

// A flush while the response is held keeps it held: a plain response
// that flushes (as proxies do for chunked backend answers) still frees
// the handler before the client reads, and gets a Content-Length.
func TestResponseBufferFlushHeld(t *testing.T) {
	body := bufPattern(64 << 10)
	returned := make(chan struct{})
	srv := newResponseBuffer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(returned)
		for i := 0; i < len(body); i += 4096 {
			w.Write(body[i : i+4096])             //nolint:errcheck
			http.NewResponseController(w).Flush() //nolint:errcheck
		}
	}), ResponseBufferConfig{})
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	<-returned
	got, _ := io.ReadAll(resp.Body)
	if !bytes.Equal(got, body) || resp.ContentLength != int64(len(body)) {
		t.Errorf("%d bytes, Content-Length %d; want %d and its length", len(got), resp.ContentLength, len(body))
	}
}
