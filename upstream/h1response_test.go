package upstream

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"reflect"

	"github.com/tlsedge/tlsedge/httpsyntax"
)

// cannedProxy puts a proxy in front of a raw backend that answers every
// request on a connection with response, then waits up to wait for the
// proxy to close the connection and reports on closed whether it did.
func cannedProxy(t *testing.T, response string, wait time.Duration) (*Proxy, *logtest.Hook, chan bool) {
	t.Helper()
	closed := make(chan bool, 1)
	rb := newRawBackend(t, func(c net.Conn, br *bufio.Reader) {
		if _, _, err := readRequest(br); err != nil {
			t.Errorf("backend: %v", err)
			return
		}
		if _, err := io.WriteString(c, response); err != nil {
			return
		}
		// Half-close: a proxy waiting for more bytes of a cut response
		// sees the end at once.
		_ = c.(*net.TCPConn).CloseWrite()
		closed <- waitClosed(c, wait)
	})
	p, hook := newTestProxy(t, PoolConfig{Backends: []BackendConfig{{ID: "raw", Addr: rb.addr()}}}, nil)
	return p, hook, closed
}

// Every response head that breaks HTTP/1.1 syntax or framing is a 502, and
// the connection it came on is never used again.
func TestMalformedResponseHeads(t *testing.T) {
	const ok = "HTTP/1.1 200 OK\r\n"
	for _, tc := range []struct{ name, response string }{
		{"empty", ""},
		{"cut head", ok + "Content-"},
		{"not HTTP", "ICY 200 OK\r\n\r\n"},
		{"HTTP/2", "HTTP/2 200\r\n\r\n"},
		{"HTTP/1.2", "HTTP/1.2 200 OK\r\n\r\n"},
		{"two-digit status", "HTTP/1.1 20 OK\r\n\r\n"},
		{"four-digit status", "HTTP/1.1 2000 OK\r\n\r\n"},
		{"status 600", "HTTP/1.1 600 Odd\r\n\r\n"},
		{"status 099", "HTTP/1.1 099 Odd\r\n\r\n"},
		{"no space after status", "HTTP/1.1 200OK\r\n\r\n"},
		{"bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\n\n"},
		{"bare LF in fields", ok + "Content-Length: 0\n\r\n"},
		{"bare CR", ok + "X-A: a\rb\r\nContent-Length: 0\r\n\r\n"},
		{"NUL in value", ok + "X-A: a\x00b\r\nContent-Length: 0\r\n\r\n"},
		{"DEL in value", ok + "X-A: a\x7fb\r\nContent-Length: 0\r\n\r\n"},
		{"obs-fold", ok + "X-A: a\r\n b\r\nContent-Length: 0\r\n\r\n"},
		{"space before colon", ok + "X-A : b\r\nContent-Length: 0\r\n\r\n"},
		{"no colon", ok + "X-A b\r\nContent-Length: 0\r\n\r\n"},
		{"empty name", ok + ": b\r\nContent-Length: 0\r\n\r\n"},
		{"bad name", ok + "X@A: b\r\nContent-Length: 0\r\n\r\n"},
		{"two lengths", ok + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"},
		{"length list", ok + "Content-Length: 5, 6\r\n\r\nhello!"},
		{"empty length", ok + "Content-Length: \r\n\r\n"},
		{"signed length", ok + "Content-Length: +5\r\n\r\nhello"},
		{"negative length", ok + "Content-Length: -1\r\n\r\n"},
		{"hex length", ok + "Content-Length: 0x5\r\n\r\nhello"},
		{"huge length", ok + "Content-Length: 99999999999999999999\r\n\r\n"},
		{"gzip coding", ok + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"},
		{"identity coding", ok + "Transfer-Encoding: identity\r\n\r\nhello"},
		{"chunked twice", ok + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"length and chunked", ok + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"},
		{"HTTP/1.0 chunked", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"101 to a GET", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"},
		{"too many 1xx", strings.Repeat("HTTP/1.1 103 Early Hints\r\n\r\n", maxInterim+1) + ok + "Content-Length: 0\r\n\r\n"},
		{"head over 1 MiB", ok + strings.Repeat("X-Pad: "+strings.Repeat("a", 1000)+"\r\n", 1100) + "\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _, closed := cannedProxy(t, tc.response, 5*time.Second)
			front := newFront(t, p, nil)
			status, hdr, page := get(t, front.Client(), front.URL)
			if status != http.StatusBadGateway || !strings.Contains(page, "502 Bad Gateway") {
				t.Errorf("status %d, want the 502 page", status)
			}
			if hdr.Get("X-Pad") != "" || hdr.Get("X-A") != "" {
				t.Error("fields of a refused head reached the client")
			}
			if !<-closed {
				t.Error("the proxy kept the connection")
			}
			if n := p.pool.stacks[0].idleLen(); n != 0 {
				t.Errorf("%d idle connections, want 0", n)
			}
		})
	}
}

// A body that breaks off or breaks framing after the head went out cuts
// the client's connection (a clean end would pass a truncated body off as
// whole), logs a warning and discards the backend connection.
func TestMalformedResponseBodies(t *testing.T) {
	const chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	for _, tc := range []struct{ name, response string }{
		{"short sized body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"},
		{"bad chunk size", chunked + "zz\r\n"},
		{"chunk size bare LF", chunked + "5\nhello\r\n0\r\n\r\n"},
		{"chunk size overflow", chunked + "fffffffffffffffff\r\n"},
		{"chunk data without CRLF", chunked + "5\r\nhelloXX0\r\n\r\n"},
		{"cut chunk", chunked + "a\r\nhello"},
		{"no last chunk", chunked + "5\r\nhello\r\n"},
		{"bad trailer", chunked + "5\r\nhello\r\n0\r\nX-Sum: a\x00\r\n\r\n"},
		{"trailer obs-fold", chunked + "5\r\nhello\r\n0\r\nX-Sum: a\r\n b\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, hook, closed := cannedProxy(t, tc.response, 100*time.Millisecond)
			front := newFront(t, p, nil)
			resp, err := front.Client().Get(front.URL)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if err == nil {
				t.Error("the client got a clean response")
			}
			<-closed // cut bodies end only when the backend gives up
			if n := p.pool.stacks[0].idleLen(); n != 0 {
				t.Errorf("%d idle connections, want 0", n)
			}
			if e := errorEntries(hook); len(e) != 1 || e[0].Level != logrus.WarnLevel {
				t.Errorf("log: %v, want one warning", e)
			}
		})
	}
}

// Well-formed responses of every framing reach the client whole, and the
// connection is kept exactly when HTTP/1.1 allows it.
func TestResponseFraming(t *testing.T) {
	for _, tc := range []struct {
		name, method, response string
		wantStatus             int
		wantBody, wantLength   string // "*": the front server's choice
		keep                   bool   // else closed by the proxy, or by the backend (to EOF)
	}{
		{"sized", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, "hello", "5", true},
		{"repeated length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\nhello", 200, "hello", "5", true},
		{"chunked", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n5;ext=1\r\nhello\r\n6 \r\n world\r\n0\r\n\r\n", 200, "hello world", "*", true},
		{"to EOF", "GET", "HTTP/1.1 200 OK\r\n\r\nhello", 200, "hello", "*", false},
		{"Connection: close", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", 200, "hello", "5", false},
		{"HTTP/1.0", "GET", "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, "hello", "5", false},
		{"HTTP/1.0 keep-alive", "GET", "HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello", 200, "hello", "5", true},
		{"103 and 100 skipped", "GET", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, "ok", "2", true},
		{"204", "GET", "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", 204, "", "", true},
		{"304", "GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", 304, "", "*", true},
		{"HEAD", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 200, "", "5", true},
		{"HEAD chunked", "HEAD", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 200, "", "", true},
		{"long field line", "GET", "HTTP/1.1 200 OK\r\nX-Long: " + strings.Repeat("b", 20000) + "\r\nContent-Length: 2\r\n\r\nok", 200, "ok", "2", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _, closed := cannedProxy(t, tc.response, 100*time.Millisecond)
			front := newFront(t, p, nil)
			req, _ := http.NewRequest(tc.method, front.URL, nil)
			resp, err := front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantStatus || string(body) != tc.wantBody {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body, tc.wantStatus, tc.wantBody)
			}
			if got := resp.Header.Get("Content-Length"); got != tc.wantLength && tc.wantLength != "*" {
				t.Errorf("Content-Length %q, want %q", got, tc.wantLength)
			}
			if resp.Header.Get("Link") != "" {
				t.Error("a 1xx response's fields leaked into the final one")
			}
			gotClosed := <-closed
			switch {
			case tc.keep && (gotClosed || p.pool.stacks[0].idleLen() != 1):
				t.Errorf("connection closed (%v) or not idle; want it kept", gotClosed)
			case !tc.keep && p.pool.stacks[0].idleLen() != 0:
				t.Error("connection kept")
			case !tc.keep && !gotClosed && tc.name != "to EOF":
				t.Error("connection not closed by the proxy")
			}
		})
	}
}

// Hop-by-hop response fields, and the ones Connection names, stop at the
// proxy; trailers of a chunked response reach the client as trailers.
func TestResponseFieldsAndTrailers(t *testing.T) {
	p, _, _ := cannedProxy(t, "HTTP/1.1 200 OK\r\n"+
		"Connection: X-Internal\r\nX-Internal: secret\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\n"+
		"Upgrade: h2c\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n"+
		"set-cookie: a=1\r\nSet-Cookie: b=2\r\nx-lower: v\r\nContent-Type: text/plain\r\n\r\n"+
		"5\r\nhello\r\n0\r\nX-Sum: 42\r\nContent-Length: 5\r\n\r\n", 100*time.Millisecond)
	front := newFront(t, p, nil)
	resp, err := front.Client().Get(front.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello" {
		t.Errorf("body %q", body)
	}
	for _, h := range []string{"X-Internal", "Keep-Alive", "Proxy-Authenticate", "Upgrade", "Trailer"} {
		if v, ok := resp.Header[h]; ok {
			t.Errorf("hop-by-hop %s reached the client: %q", h, v)
		}
	}
	if v := resp.Header.Values("Set-Cookie"); len(v) != 2 || v[0] != "a=1" || v[1] != "b=2" {
		t.Errorf("Set-Cookie = %q", v)
	}
	if v := resp.Header.Get("X-Lower"); v != "v" {
		t.Errorf("X-Lower = %q", v)
	}
	if v := resp.Trailer.Get("X-Sum"); v != "42" {
		t.Errorf("trailer X-Sum = %q (trailers %v)", v, resp.Trailer)
	}
	if _, ok := resp.Trailer["Content-Length"]; ok {
		t.Error("a framing field passed as a trailer")
	}
}

func FuzzReadResponseHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"HTTP/1.0 204\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nset-cookie: a\r\nSet-Cookie: b\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\n\r\n",
		"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
		"HTTP/1.1 200 OK\r\nServer: x\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nx-lower: 1\r\nContent-Length: 2\r\nContent-Type: text/event-stream\r\n\r\nhi",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// The head in one read (scanHead), and a byte at a time (line by
		// line): the same verdict and the same head, down to where each
		// line's parts lie.
		var h, slow respHead
		buf, err := readResponseHead(bufio.NewReaderSize(bytes.NewReader(data), 8192), &h, nil, 4096)
		_, slowErr := readResponseHead(bufio.NewReader(iotest.OneByteReader(bytes.NewReader(data))), &slow, nil, 4096)
		if (err == nil) != (slowErr == nil) {
			t.Fatalf("whole: %v, byte by byte: %v", err, slowErr)
		}
		if err == nil && !reflect.DeepEqual(h, slow) {
			t.Fatalf("whole: %+v\nbyte by byte: %+v", h, slow)
		}
		// scanHead alone, on what one read could have brought: when it
		// decides, it decides as the line-by-line reader does.
		direct := respHead{length: -1}
		end, derr := direct.scanHead(data[:min(len(data), 4096)])
		if derr == nil && end > 0 {
			direct.read = end
			derr = direct.finish(data[:end])
		}
		if (derr != nil || end > 0) && (derr == nil) != (slowErr == nil) {
			t.Fatalf("scanHead: %v, byte by byte: %v", derr, slowErr)
		}
		if derr == nil && end > 0 && !reflect.DeepEqual(direct, slow) {
			t.Fatalf("scanHead: %+v\nbyte by byte: %+v", direct, slow)
		}
		if h.read > 4096 && err == nil {
			t.Fatalf("read %d bytes past the limit", h.read)
		}
		if err != nil {
			return
		}
		if h.status < 100 || h.status > 599 || h.minor > 1 || h.length < -1 {
			t.Fatalf("accepted status %d minor %d length %d", h.status, h.minor, h.length)
		}
		if h.chunked && (h.length >= 0 || h.minor == 0) {
			t.Fatalf("accepted chunked with length %d, HTTP/1.%d", h.length, h.minor)
		}
		if len(h.block) > len(buf) || bytes.Contains(h.block, []byte("\r\n\r\n")) {
			t.Fatalf("block %q", h.block)
		}
		for _, line := range bytes.Split(h.block, []byte("\r\n")) {
			if len(line) > 0 && bytes.IndexByte(line, '\n') >= 0 {
				t.Fatalf("LF inside line %q", line)
			}
		}
		dst := http.Header{}
		copyFields(dst, &h, h.framing(http.MethodGet))
		n := 0
		for k, vs := range dst {
			if k != http.CanonicalHeaderKey(k) || classifyField(k) == fieldHop || classifyField(k) == fieldTE ||
				classifyField(k) == fieldTrailer && !h.chunked {
				t.Fatalf("forwarded field %q", k)
			}
			for _, v := range vs {
				if !validFieldValue(v) || v != strings.Trim(v, " \t") {
					t.Fatalf("value %q", v)
				}
			}
			n += len(vs)
		}
		if n > h.fields {
			t.Fatalf("%d values from %d field lines", n, h.fields)
		}
		if cl, ok := dst["Content-Length"]; ok && (len(cl) != 1 || h.length < 0) {
			t.Fatalf("Content-Length %q with parsed length %d", cl, h.length)
		}
		checkRawFields(t, &h, dst)
	})
}

// checkRawFields checks fillRaw against copyFields on the same head: the
// fields a writer sends raw stand for the same header, and written out
// they are whole lines that parse back to it.
func checkRawFields(t *testing.T, h *respHead, want http.Header) {
	t.Helper()
	f := h.framing(http.MethodGet)
	wantStream := copyFields(http.Header{}, h, f)
	var rf httpsyntax.RawFields
	ok, stream := fillRaw(&rf, h, f)
	if !ok {
		if f == bodySized && !h.connList && h.fields <= httpsyntax.MaxRawLines && !bytes.Contains(bytes.ToLower(h.block), []byte("content-length")) {
			t.Fatalf("fillRaw refused a sized head without Content-Length trouble: %q", h.block)
		}
		return
	}
	if stream != wantStream {
		t.Fatalf("event stream %v, copyFields %v", stream, wantStream)
	}
	if rf.Length != h.length {
		t.Fatalf("length %d, head %d", rf.Length, h.length)
	}
	got := http.Header{}
	rf.CopyTo(got)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("raw fields %q\ncopyFields %q", got, want)
	}
	out := rf.AppendTo(nil)
	back := http.Header{}
	for len(out) > 0 {
		line, rest, found := bytes.Cut(out, []byte("\r\n"))
		if !found || bytes.ContainsAny(line, "\r\n") {
			t.Fatalf("written lines %q", rf.AppendTo(nil))
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		k := http.CanonicalHeaderKey(string(name))
		back[k] = append(back[k], strings.Trim(string(value), " \t"))
		out = rest
	}
	if !reflect.DeepEqual(back, want) {
		t.Fatalf("written %q\ncopyFields %q", back, want)
	}
}

// FuzzChunkedBody feeds any bytes to the chunked decoder: it must not
// panic, and what it accepts must be no longer than its input.
func FuzzChunkedBody(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"5;a=b\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n",
		"fffffffffffffff\r\n",
		"0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st := newAttempt(&Proxy{bufs: NewBufferPool()}, &Target{})
		var out bytes.Buffer
		w := &discardWriter{h: http.Header{}}
		o := bodyOut{w: writerFunc{w, &out}}
		err := st.copyChunked(&o, bufio.NewReaderSize(bytes.NewReader(data), 16), w.h)
		if err == nil && out.Len() > len(data) {
			t.Fatalf("decoded %d bytes from %d", out.Len(), len(data))
		}
	})
}

// writerFunc is a ResponseWriter whose body goes to a buffer.
type writerFunc struct {
	*discardWriter
	out *bytes.Buffer
}

func (w writerFunc) Write(p []byte) (int, error) { return w.out.Write(p) }
