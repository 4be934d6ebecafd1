package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// captured is one request as a raw backend received it.
type captured struct {
	raw  string // every byte, head and body
	req  *http.Request
	body string
}

// newCaptureBackend parses each request with net/http's server parser
// (so what the proxy writes must pass it), records it, and answers 200.
func newCaptureBackend(t *testing.T) (*rawBackend, chan captured) {
	t.Helper()
	ch := make(chan captured, 16)
	rb := newRawBackend(t, func(c net.Conn, br *bufio.Reader) {
		for { // one request per iteration, until the proxy closes
			var raw bytes.Buffer
			tee := bufio.NewReader(io.TeeReader(br, &raw))
			req, body, err := readRequest(tee)
			if err != nil {
				return
			}
			ch <- captured{raw: raw.String(), req: req, body: string(body)}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	return rb, ch
}

func TestRequestSerialisation(t *testing.T) {
	rb, got := newCaptureBackend(t)
	p, _ := newTestProxy(t, PoolConfig{Backends: []BackendConfig{{ID: "cap", Addr: rb.addr()}}}, nil)
	front := newFront(t, p, nil)
	for _, tc := range []struct {
		name, request string
		check         func(t *testing.T, c captured)
	}{
		{"GET has no length", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", func(t *testing.T, c captured) {
			if strings.Contains(c.raw, "Content-Length") || strings.Contains(c.raw, "Transfer-Encoding") {
				t.Errorf("framing on a GET: %q", c.raw)
			}
		}},
		{"empty POST says 0", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", func(t *testing.T, c captured) {
			if !strings.Contains(c.raw, "\r\nContent-Length: 0\r\n") {
				t.Errorf("no Content-Length: 0 in %q", c.raw)
			}
		}},
		{"sized body", "PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", func(t *testing.T, c captured) {
			if c.req.ContentLength != 5 || c.body != "hello" {
				t.Errorf("length %d body %q", c.req.ContentLength, c.body)
			}
		}},
		{"chunked body with trailers", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n" +
			"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n", func(t *testing.T, c captured) {
			if c.body != "hello world" || c.req.Trailer.Get("X-Sum") != "42" {
				t.Errorf("body %q trailers %v", c.body, c.req.Trailer)
			}
			if c.req.Header.Get("Trailer") != "" {
				t.Error("Trailer forwarded")
			}
		}},
		{"escaped path and query kept", "GET /a%2Fb/c%20d?q=1%202&x HTTP/1.1\r\nHost: a\r\n\r\n", func(t *testing.T, c captured) {
			if c.req.RequestURI != "/a%2Fb/c%20d?q=1%202&x" {
				t.Errorf("target %q", c.req.RequestURI)
			}
		}},
		{"empty query kept", "GET /p? HTTP/1.1\r\nHost: a\r\n\r\n", func(t *testing.T, c captured) {
			if c.req.RequestURI != "/p?" {
				t.Errorf("target %q", c.req.RequestURI)
			}
		}},
		{"HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", func(t *testing.T, c captured) {
			if c.req.Host != rb.addr() || c.req.Header.Get("X-Forwarded-Host") != "" {
				t.Errorf("Host %q, X-Forwarded-Host %q", c.req.Host, c.req.Header.Get("X-Forwarded-Host"))
			}
		}},
		{"httpoxy and Proxy-* dropped", "GET / HTTP/1.1\r\nHost: a\r\nProxy: http://evil\r\nProxy-Foo: 1\r\nX-Keep: 1\r\n\r\n", func(t *testing.T, c captured) {
			if c.req.Header.Get("Proxy") != "" || c.req.Header.Get("Proxy-Foo") != "" || c.req.Header.Get("X-Keep") != "1" {
				t.Errorf("header %v", c.req.Header)
			}
		}},
		{"Expect passes", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", func(t *testing.T, c captured) {
			if c.req.Header.Get("Expect") != "100-continue" || c.body != "hi" {
				t.Errorf("Expect %q body %q", c.req.Header.Get("Expect"), c.body)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", front.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, tc.request); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err == nil && resp.StatusCode == http.StatusContinue {
				resp, err = http.ReadResponse(br, nil)
			}
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "ok" {
				t.Fatalf("status %d body %q", resp.StatusCode, body)
			}
			tc.check(t, <-got)
		})
	}
}

// A field the frontend would never let through but a filter might set
// (CR or LF in a value, a name that is not a token) is never written: the
// request fails before a byte reaches the backend.
func TestUnsendableRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(r *http.Request)
	}{
		{"LF in value", func(r *http.Request) { r.Header["X-A"] = []string{"a\r\nX-Injected: 1"} }},
		{"NUL in value", func(r *http.Request) { r.Header["X-A"] = []string{"a\x00"} }},
		{"space in name", func(r *http.Request) { r.Header["X A"] = []string{"1"} }},
		{"CR in Host", func(r *http.Request) { r.Host = "a\r\nX-Injected: 1" }},
		{"space in query", func(r *http.Request) { r.URL.RawQuery = "a b" }},
		{"bad method", func(r *http.Request) { r.Method = "GET /x" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://a/", nil)
			tc.mod(r)
			var out bytes.Buffer
			bw := bufio.NewWriter(&out)
			err := writeRequestHead(bw, r, "127.0.0.1:1")
			if !errors.Is(err, errBadOutboundRequest) {
				t.Errorf("err = %v", err)
			}
			// Nothing was flushed; the caller closes the connection.
			if out.Len() != 0 {
				t.Errorf("wrote %q", out.String())
			}
		})
	}
}
