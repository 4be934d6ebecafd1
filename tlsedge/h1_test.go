package tlsedge

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/config"
)

// rawGateway serves one app over an echo backend that reports what it
// received, for tests that speak raw HTTP/1.1 bytes.
func rawGateway(t *testing.T) (*gateway, *int) {
	t.Helper()
	hits := new(int)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*hits++
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Method", r.Method)
		fmt.Fprintf(w, "%s %s len=%d body=%s", r.Method, r.URL.RequestURI(), len(body), body)
	}))
	t.Cleanup(origin.Close)
	g := startGateway(t, &config.Config{Apps: []config.App{{Hosts: []string{"raw.example.com"}, Backends: []config.Backend{{Addr: origin.Listener.Addr().String()}}}}})
	return g, hits
}

// rawConn opens a TLS connection speaking HTTP/1.1.
func rawConn(t *testing.T, g *gateway) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", g.srv.TLSAddr().String(),
		&tls.Config{ServerName: "raw.example.com", RootCAs: g.roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
	return c, bufio.NewReader(c)
}

func readResp(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func TestH1RefusesHostileHeads(t *testing.T) {
	g, hits := rawGateway(t)
	const host = "Host: raw.example.com\r\n"
	tests := []struct {
		name, req string
		status    int
	}{
		{"CL and TE", "POST / HTTP/1.1\r\n" + host + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"differing CL", "POST / HTTP/1.1\r\n" + host + "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
		{"CL list", "POST / HTTP/1.1\r\n" + host + "Content-Length: 3, 3\r\n\r\nabc", 400},
		{"CL sign", "POST / HTTP/1.1\r\n" + host + "Content-Length: +3\r\n\r\nabc", 400},
		{"TE gzip", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
		{"TE twice", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501},
		{"TE in 1.0", "POST / HTTP/1.0\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\n" + host + "X-A: 1\r\n  folded\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\n" + host + "X-A : 1\r\n\r\n", 400},
		{"bare CR", "GET / HTTP/1.1\r\n" + host + "X-A: 1\r2\r\n\r\n", 400},
		{"NUL in value", "GET / HTTP/1.1\r\n" + host + "X-A: 1\x002\r\n\r\n", 400},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two Hosts", "GET / HTTP/1.1\r\n" + host + host + "\r\n", 400},
		{"bad Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"HTTP/2.0 line", "GET / HTTP/2.0\r\n" + host + "\r\n", 505},
		{"garbage version", "GET / HTPT/1.1\r\n" + host + "\r\n", 400},
		{"long URI", "GET /" + strings.Repeat("a", 9000) + " HTTP/1.1\r\n" + host + "\r\n", 414},
		{"huge head", "GET / HTTP/1.1\r\n" + host + strings.Repeat("X-Pad: "+strings.Repeat("p", 1000)+"\r\n", 70) + "\r\n", 431},
		{"many fields", "GET / HTTP/1.1\r\n" + host + strings.Repeat("X-A: 1\r\n", 101) + "\r\n", 431},
		{"Expect other", "POST / HTTP/1.1\r\n" + host + "Expect: 200-ok\r\nContent-Length: 1\r\n\r\na", 417},
		{"space in target", "GET /a b HTTP/1.1\r\n" + host + "\r\n", 400},
		{"bad escape", "GET /%zz HTTP/1.1\r\n" + host + "\r\n", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, br := rawConn(t, g)
			io.WriteString(c, tt.req) //nolint:errcheck
			resp, _ := readResp(t, br, "GET")
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if !resp.Close {
				t.Error("the connection was kept after a refused head")
			}
		})
	}
	if *hits != 0 {
		t.Errorf("%d refused requests reached the backend", *hits)
	}
}

func TestH1Framing(t *testing.T) {
	g, _ := rawGateway(t)
	const host = "Host: raw.example.com\r\n"

	t.Run("pipelined", func(t *testing.T) {
		c, br := rawConn(t, g)
		io.WriteString(c, "GET /one HTTP/1.1\r\n"+host+"\r\nGET /two HTTP/1.1\r\n"+host+"\r\n") //nolint:errcheck
		for _, want := range []string{"GET /one", "GET /two"} {
			resp, body := readResp(t, br, "GET")
			if resp.StatusCode != 200 || !strings.HasPrefix(body, want) {
				t.Errorf("got %d %q, want %q", resp.StatusCode, body, want)
			}
		}
	})
	t.Run("chunked request body", func(t *testing.T) {
		c, br := rawConn(t, g)
		io.WriteString(c, "POST /c HTTP/1.1\r\n"+host+"Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n") //nolint:errcheck
		_, body := readResp(t, br, "POST")
		if body != "POST /c len=11 body=hello world" {
			t.Errorf("body %q", body)
		}
		// The connection carries the next request.
		io.WriteString(c, "GET /next HTTP/1.1\r\n"+host+"\r\n") //nolint:errcheck
		if _, body := readResp(t, br, "GET"); !strings.HasPrefix(body, "GET /next") {
			t.Errorf("next: %q", body)
		}
	})
	t.Run("bad chunk", func(t *testing.T) {
		c, br := rawConn(t, g)
		io.WriteString(c, "POST /c HTTP/1.1\r\n"+host+"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n") //nolint:errcheck
		resp, _ := readResp(t, br, "POST")
		if resp.StatusCode < 400 {
			t.Errorf("a malformed chunk was accepted: %d", resp.StatusCode)
		}
	})
	t.Run("content-length body", func(t *testing.T) {
		c, br := rawConn(t, g)
		io.WriteString(c, "PUT /p HTTP/1.1\r\n"+host+"Content-Length: 5\r\n\r\nabcdeGET /after HTTP/1.1\r\n"+host+"\r\n") //nolint:errcheck
		if _, body := readResp(t, br, "PUT"); body != "PUT /p len=5 body=abcde" {
			t.Errorf("body %q", body)
		}
		if _, body := readResp(t, br, "GET"); !strings.HasPrefix(body, "GET /after") {
			t.Errorf("the bytes after the body were not the next request: %q", body)
		}
	})
	t.Run("HEAD has no body", func(t *testing.T) {
		c, br := rawConn(t, g)
		io.WriteString(c, "HEAD /h HTTP/1.1\r\n"+host+"\r\nGET /g HTTP/1.1\r\n"+host+"\r\n") //nolint:errcheck
		resp, body := readResp(t, br, "HEAD")
		if resp.StatusCode != 200 || body != "" || resp.Header.Get("X-Method") != "HEAD" {
			t.Errorf("HEAD: %d %q", resp.StatusCode, body)
		}
		if _, body := readResp(t, br, "GET"); !strings.HasPrefix(body, "GET /g") {
			t.Errorf("after HEAD: %q", body)
		}
	})
	t.Run("HTTP/1.0", func(t *testing.T) {
		c, br := rawConn(t, g)
		io.WriteString(c, "GET /old HTTP/1.0\r\n"+host+"\r\n") //nolint:errcheck
		resp, body := readResp(t, br, "GET")
		if !strings.HasPrefix(body, "GET /old") || !resp.Close {
			t.Errorf("HTTP/1.0 without keep-alive: %q close=%v", body, resp.Close)
		}
	})
	t.Run("100-continue", func(t *testing.T) {
		c, br := rawConn(t, g)
		io.WriteString(c, "POST /e HTTP/1.1\r\n"+host+"Expect: 100-continue\r\nContent-Length: 4\r\n\r\n") //nolint:errcheck
		line, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 Continue") {
			t.Fatalf("want 100 Continue, got %q %v", line, err)
		}
		br.ReadString('\n')       //nolint:errcheck
		io.WriteString(c, "data") //nolint:errcheck
		if _, body := readResp(t, br, "POST"); body != "POST /e len=4 body=data" {
			t.Errorf("body %q", body)
		}
	})
	t.Run("unknown host gets 421 and keeps the connection", func(t *testing.T) {
		c, br := rawConn(t, g)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: nope.example.org\r\n\r\nGET /ok HTTP/1.1\r\n"+host+"\r\n") //nolint:errcheck
		if resp, _ := readResp(t, br, "GET"); resp.StatusCode != 421 {
			t.Errorf("status %d", resp.StatusCode)
		}
		if _, body := readResp(t, br, "GET"); !strings.HasPrefix(body, "GET /ok") {
			t.Errorf("after 421: %q", body)
		}
	})
}

// FuzzRequestHead: any bytes either parse into a request with one
// unambiguous framing or are refused with a status; nothing panics.
func FuzzRequestHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /x?y HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET http://a/b HTTP/1.1\r\n\r\n", "OPTIONS * HTTP/1.0\r\n\r\n",
		"\r\nGET /%41 HTTP/1.1\nHost: a\nX: y\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		hr := headReader{br: bufio.NewReaderSize(bytes.NewReader(data), 4096)}
		r := &http.Request{Header: http.Header{}, URL: new(url.URL)}
		var head requestHead
		err := hr.read(r, &head)
		if err != nil {
			return
		}
		if head.chunked && head.length != -1 || !head.chunked && head.length < 0 {
			t.Fatalf("ambiguous framing: %+v", head)
		}
		if head.chunked && r.Header.Get("Content-Length") != "" {
			t.Fatal("both framings accepted")
		}
		if len(r.Header["Content-Length"]) > 0 {
			for _, v := range r.Header["Content-Length"] {
				if n, ok := parseContentLength(v); !ok || n != head.length {
					t.Fatalf("Content-Length %q disagrees with %d", v, head.length)
				}
			}
		}
		if !isToken(r.Method) || r.Proto == "" {
			t.Fatalf("accepted method %q proto %q", r.Method, r.Proto)
		}
		for k, vs := range r.Header {
			for _, v := range vs {
				if !isToken(k) || strings.ContainsAny(v, "\r\n\x00") {
					t.Fatalf("accepted header %q: %q", k, v)
				}
			}
		}
	})
}

func TestH1TrailersPassThrough(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		w.WriteHeader(200)
		io.WriteString(w, "body") //nolint:errcheck
		w.(http.Flusher).Flush()
		w.Header().Set("X-Sum", "42")
		w.Header().Set(http.TrailerPrefix+"X-Late", "yes")
	}))
	defer origin.Close()
	g := startGateway(t, &config.Config{Apps: []config.App{{Hosts: []string{"raw.example.com"}, Backends: []config.Backend{{Addr: origin.Listener.Addr().String()}}}}})
	resp, body := get(t, g.client(false), "https://raw.example.com/t", "")
	if body != "body" || resp.Trailer.Get("X-Sum") != "42" || resp.Trailer.Get("X-Late") != "yes" {
		t.Errorf("body %q, trailers %v (proto %s)", body, resp.Trailer, resp.Proto)
	}
	if resp.Header.Get("X-Sum") != "" {
		t.Error("a declared trailer was sent as a header")
	}
}
