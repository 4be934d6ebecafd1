package tlsedge

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/tlsedge/tlsedge/config"
)

// rawBackend answers every request on a connection with resp, as written,
// keeping the connection; it returns its address.
func rawBackend(t *testing.T, resp string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveConns(t, ln, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if line == "\r\n" {
					break
				}
			}
			if _, err := io.WriteString(c, resp); err != nil {
				return
			}
		}
	})
	return ln.Addr().String()
}

// rawTestResponse is what rawBackend answers in the tests below.
const (
	rawTestDate     = "Mon, 30 Nov 2026 20:00:00 GMT"
	rawTestResponse = "HTTP/1.1 200 OK\r\n" +
		"server: nginx/1.22.1\r\n" +
		"Date: " + rawTestDate + "\r\n" +
		"content-type: text/plain\r\n" +
		"Connection: keep-alive\r\n" +
		"Keep-Alive: timeout=60\r\n" +
		"x-lower-case: kept\r\n" +
		"Set-Cookie: theirs=1; Path=/\r\n" +
		"X-Request-Id: from-backend\r\n" +
		"Content-Length: 5\r\n" +
		"\r\nhello"
)

// dialRawGateway starts a sticky gateway in front of rawBackend's
// rawTestResponse and returns a TLS connection to it speaking proto.
func dialRawGateway(t *testing.T, proto string) *tls.Conn {
	t.Helper()
	be := rawBackend(t, rawTestResponse)
	g := startGateway(t, &config.Config{Apps: []config.App{{Hosts: []string{"raw.example.com"},
		Backends: []config.Backend{{Addr: be}}, Sticky: &config.Sticky{}}}})
	c, err := tls.Dial("tcp", g.srv.TLSAddr().String(), &tls.Config{ServerName: "raw.example.com", RootCAs: g.roots, NextProtos: []string{proto}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second)) //nolint:errcheck
	return c
}

// An HTTP/2 client gets a backend's fields in the backend's order, names
// in lower case, without the connection-specific ones and with the
// gateway's changes, on several streams of one connection.
func TestH2ResponseFieldsFromRaw(t *testing.T) {
	c := dialRawGateway(t, "h2")
	io.WriteString(c, http2.ClientPreface) //nolint:errcheck
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.WriteSettings() //nolint:errcheck
	for i := range 3 {
		id := uint32(2*i + 1)
		var block bytes.Buffer
		enc := hpack.NewEncoder(&block)
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "raw.example.com"}, {":path", "/"}, {"x-request-id", fmt.Sprint("client-", i)}} {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}) //nolint:errcheck
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block.Bytes(), EndHeaders: true, EndStream: true}); err != nil {
			t.Fatal(err)
		}
		var fields []string
		var body []byte
		for done := false; !done; {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("stream %d: %v", id, err)
			}
			switch f := f.(type) {
			case *http2.MetaHeadersFrame:
				for _, hf := range f.Fields {
					fields = append(fields, hf.Name+": "+hf.Value)
				}
				done = f.StreamEnded()
			case *http2.DataFrame:
				body = append(body, f.Data()...)
				done = f.StreamEnded()
			case *http2.SettingsFrame:
				if !f.IsAck() {
					fr.WriteSettingsAck() //nolint:errcheck
				}
			}
		}
		if string(body) != "hello" {
			t.Errorf("stream %d: body %q", id, body)
		}
		head := "\n" + strings.Join(fields, "\n") + "\n"
		// The backend's fields, in its order.
		want := []string{":status: 200", "date: " + rawTestDate, "content-type: text/plain", "x-lower-case: kept", "set-cookie: theirs=1; Path=/", "content-length: 5"}
		at := 0
		for _, w := range want {
			i := strings.Index(head[at:], "\n"+w+"\n")
			if i < 0 {
				t.Fatalf("stream %d: no %q after position %d in%s", id, w, at, head)
			}
			at += i + 1
		}
		for _, w := range []string{"strict-transport-security: max-age=31536000", fmt.Sprint("x-request-id: client-", i), "set-cookie: tlsedge_sticky="} {
			if !strings.Contains(head, "\n"+w) {
				t.Errorf("stream %d: no %q in%s", id, w, head)
			}
		}
		for _, gone := range []string{"server:", "connection:", "keep-alive:", "from-backend"} {
			if strings.Contains(head, gone) {
				t.Errorf("stream %d: %q passed:%s", id, gone, head)
			}
		}
	}
}

// An HTTP/1.1 client gets a backend's fields as the backend wrote them
// (its letter case and order), without the hop-by-hop ones and with the
// gateway's own changes, on every request of a kept connection.
func TestH1ResponseFieldsPassRaw(t *testing.T) {
	c := dialRawGateway(t, "http/1.1")
	br := bufio.NewReader(c)
	for i := range 3 {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: raw.example.com\r\nX-Request-Id: client-"+string(rune('a'+i))+"\r\n\r\n") //nolint:errcheck
		var lines []string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("request %d: %v after %q", i, err, lines)
			}
			if line == "\r\n" {
				break
			}
			lines = append(lines, strings.TrimSuffix(line, "\r\n"))
		}
		body := make([]byte, 5)
		if _, err := io.ReadFull(br, body); err != nil || string(body) != "hello" {
			t.Fatalf("request %d: body %q, %v", i, body, err)
		}
		head := strings.Join(lines, "\n")
		if lines[0] != "HTTP/1.1 200 OK" {
			t.Fatalf("request %d: status line %q", i, lines[0])
		}
		for _, want := range []string{
			"\ncontent-type: text/plain\n", // as the backend spelled it: the raw path
			"\nx-lower-case: kept\n",
			"\nDate: " + rawTestDate + "\n", // the backend's, and only it
			"\nContent-Length: 5\n",
			"\nStrict-Transport-Security: max-age=31536000\n",
			"\nX-Request-Id: client-" + string(rune('a'+i)) + "\n",
			"\nSet-Cookie: theirs=1; Path=/\n",
			"\nSet-Cookie: tlsedge_sticky=",
		} {
			if !strings.Contains(head+"\n", want) {
				t.Errorf("request %d: no %q in\n%s", i, strings.TrimSpace(want), head)
			}
		}
		for _, gone := range []string{"server:", "connection:", "keep-alive:", "from-backend"} {
			if strings.Contains(strings.ToLower(head), gone) {
				t.Errorf("request %d: %q passed:\n%s", i, gone, head)
			}
		}
		if n := strings.Count(head, "\nDate: "); n != 1 {
			t.Errorf("request %d: %d Date lines", i, n)
		}
		if strings.Index(head, "content-type") > strings.Index(head, "x-lower-case") {
			t.Errorf("request %d: the backend's order changed:\n%s", i, head)
		}
	}
}

// The bucketed lookup of encodeRawField finds what h2RespFields holds,
// and only that.
func TestH2RespFieldByLower(t *testing.T) {
	for canonical, want := range h2RespFields {
		got, ok := h2RespFieldByLower([]byte(want.lower))
		if !ok || got != want {
			t.Errorf("%s (%q): got %+v %v, want %+v", canonical, want.lower, got, ok, want)
		}
	}
	for _, name := range []string{"", "x", "content-typf", "x-custom-field", strings.Repeat("a", 100)} {
		if f, ok := h2RespFieldByLower([]byte(name)); ok {
			t.Errorf("%q found: %+v", name, f)
		}
	}
}

// h2RespFieldByName finds every known field by its canonical name and in
// any other letter case, so a handler's "connection" key is dropped as
// "Connection" is; it finds nothing else.
func TestH2RespFieldByName(t *testing.T) {
	for canonical, want := range h2RespFields {
		for _, name := range []string{canonical, want.lower, strings.ToUpper(canonical)} {
			if got, ok := h2RespFieldByName(name); !ok || got != want {
				t.Errorf("%q: got %+v %v, want %+v", name, got, ok, want)
			}
		}
	}
	for _, name := range []string{"", "X", "Content-Typf", "X-Custom-Field", "Content_Type", strings.Repeat("A", 100)} {
		if f, ok := h2RespFieldByName(name); ok {
			t.Errorf("%q found: %+v", name, f)
		}
	}
}
