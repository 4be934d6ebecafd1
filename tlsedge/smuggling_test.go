package tlsedge

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/tlsedge/tlsedge/config"
)

// recordingBackend is an HTTP/1.1 origin that keeps the raw bytes of
// every connection, so a test can check what reached it byte for byte,
// not what a lenient parser made of it.
type recordingBackend struct {
	ln   net.Listener
	mu   sync.Mutex
	raw  []*bytes.Buffer
	done []string // paths of the requests received whole
}

func startRecordingBackend(t *testing.T) *recordingBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &recordingBackend{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go b.serve(c)
		}
	}()
	return b
}

func (b *recordingBackend) serve(c net.Conn) {
	defer c.Close()
	rec := &bytes.Buffer{}
	b.mu.Lock()
	b.raw = append(b.raw, rec)
	b.mu.Unlock()
	br := bufio.NewReader(io.TeeReader(c, lockedWriter{&b.mu, rec}))
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		b.mu.Lock()
		b.done = append(b.done, req.URL.Path)
		b.mu.Unlock()
		msg := fmt.Sprintf("%s %s len=%d", req.Method, req.URL.RequestURI(), len(body))
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(msg), msg)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// take returns and forgets the raw bytes each connection received so
// far and the paths of the requests received whole.
func (b *recordingBackend) take() (raw []string, paths []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.raw {
		if r.Len() > 0 {
			raw = append(raw, r.String())
			r.Reset()
		}
	}
	paths, b.done = b.done, nil
	return raw, paths
}

// checkUnambiguous parses what each backend connection received with a
// strict reading and fails on anything that two parsers could frame
// differently, or on a request for /smuggled.
func checkUnambiguous(t *testing.T, conns []string) {
	t.Helper()
	for _, raw := range conns {
		checkConnBytes(t, raw)
	}
}

func checkConnBytes(t *testing.T, raw string) {
	t.Helper()
	heads := strings.Split(raw, "\r\n\r\n")
	for _, h := range heads {
		lower := strings.ToLower(h)
		if strings.Contains(lower, "\ncontent-length:") && strings.Contains(lower, "\ntransfer-encoding:") {
			t.Errorf("forwarded with both Content-Length and Transfer-Encoding:\n%q", h)
		}
		if strings.Count(lower, "\ncontent-length:") > 1 || strings.Count(lower, "\ntransfer-encoding:") > 1 {
			t.Errorf("forwarded with a repeated framing header:\n%q", h)
		}
		if strings.Contains(h, "\n ") || strings.Contains(h, "\n\t") {
			t.Errorf("forwarded with an obs-fold line:\n%q", h)
		}
	}
	if strings.Contains(strings.ReplaceAll(raw, "\r\n", "\n"), "\r") || strings.ContainsRune(raw, 0) {
		t.Errorf("forwarded a bare CR or a NUL:\n%q", raw)
	}
	br := bufio.NewReader(strings.NewReader(raw))
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			if err != io.EOF {
				t.Errorf("backend bytes do not parse as requests: %v\n%q", err, raw)
			}
			return
		}
		if strings.HasPrefix(req.URL.Path, "/smuggled") {
			t.Errorf("a smuggled request reached the backend:\n%q", raw)
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			// A body the client broke off: the request was cut, and the
			// connection is not used again (nothing may follow it).
			if rest, _ := io.ReadAll(br); len(rest) > 0 {
				t.Errorf("bytes after a cut body (%v): %q", err, rest)
			}
			return
		}
	}
}

// smugglingProbes are raw HTTP/1.1 requests, hostile or merely odd. The
// refused ones must get their status and reach nothing; the accepted ones
// must reach the backend re-serialised with one clean framing.
func smugglingProbes() []struct {
	name, req string
	status    int
} {
	const h = "Host: raw.example.com\r\n"
	const tail = "GET /smuggled HTTP/1.1\r\n" + h + "\r\n"
	return []struct {
		name, req string
		status    int
	}{
		{"CL.TE", "POST /p HTTP/1.1\r\n" + h + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + tail, 400},
		{"TE.CL", "POST /p HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n", 400},
		{"TE.CL lower-case names", "POST /p HTTP/1.1\r\n" + h + "transfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n0\r\n\r\n", 400},
		{"differing CL", "POST /p HTTP/1.1\r\n" + h + "Content-Length: 5\r\nContent-Length: 30\r\n\r\nhello" + tail, 400},
		{"CL list", "POST /p HTTP/1.1\r\n" + h + "Content-Length: 5, 30\r\n\r\nhello" + tail, 400},
		{"CL sign", "POST /p HTTP/1.1\r\n" + h + "Content-Length: +5\r\n\r\nhello", 400},
		{"CL hex", "POST /p HTTP/1.1\r\n" + h + "Content-Length: 0x5\r\n\r\nhello", 400},
		{"CL inner space", "POST /p HTTP/1.1\r\n" + h + "Content-Length: 1 5\r\n\r\nhello", 400},
		{"CL overflow", "POST /p HTTP/1.1\r\n" + h + "Content-Length: 99999999999999999999\r\n\r\nhello", 400},
		{"TE gzip, chunked", "POST /p HTTP/1.1\r\n" + h + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
		{"TE chunked, identity", "POST /p HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 501},
		{"TE xchunked", "POST /p HTTP/1.1\r\n" + h + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + tail, 501},
		{"TE twice", "POST /p HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501},
		{"TE space before colon", "POST /p HTTP/1.1\r\n" + h + "Transfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc", 400},
		{"TE tab before colon", "POST /p HTTP/1.1\r\n" + h + "Transfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE obs-fold", "POST /p HTTP/1.1\r\n" + h + "Transfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\nabc", 501}, // the empty TE is refused first
		{"obs-fold", "GET /p HTTP/1.1\r\n" + h + "X-A: 1\r\n\tfolded\r\n\r\n", 400},
		{"bare CR in value", "GET /p HTTP/1.1\r\n" + h + "X-A: 1\r2\r\n\r\n", 400},
		{"NUL in value", "GET /p HTTP/1.1\r\n" + h + "X-A: 1\x002\r\n\r\n", 400},
		{"NUL in name", "GET /p HTTP/1.1\r\n" + h + "X-\x00A: 1\r\n\r\n", 400},
		{"bad name char", "GET /p HTTP/1.1\r\n" + h + "X@A: 1\r\n\r\n", 400},
		{"chunk size junk", "POST /p HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3x\r\nabc\r\n0\r\n\r\n", 400},
		{"chunk size overflow", "POST /p HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nabc\r\n0\r\n\r\n", 400},
		{"chunk longer than size", "POST /p HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3\r\nabcGET /smuggled HTTP/1.1\r\n\r\n0\r\n\r\n", 400},
		{"chunk bare CR", "POST /p HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3\rx\r\nabc\r\n0\r\n\r\n", 400},
		{"TE in HTTP/1.0", "POST /p HTTP/1.0\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"two Hosts", "GET /p HTTP/1.1\r\n" + h + "Host: other.example.com\r\n\r\n", 400},
		{"no Host", "GET /p HTTP/1.1\r\n\r\n", 400},
		{"double space in line", "GET  /p HTTP/1.1\r\n" + h + "\r\n", 400},
		{"trailing space in line", "GET /p HTTP/1.1 \r\n" + h + "\r\n", 505},
		{"version 1.10", "GET /p HTTP/1.10\r\n" + h + "\r\n", 505},
		{"long URI", "GET /" + strings.Repeat("a", 9000) + " HTTP/1.1\r\n" + h + "\r\n", 414},
		{"many fields", "GET /p HTTP/1.1\r\n" + h + strings.Repeat("X-A: 1\r\n", 101) + "\r\n", 431},
		{"TRACE", "TRACE /p HTTP/1.1\r\n" + h + "\r\n", 405},
		// Odd but valid: forwarded, re-framed cleanly.
		{"TE with OWS, case", "POST /p HTTP/1.1\r\n" + h + "Transfer-Encoding:  Chunked \r\n\r\n5;ext=\"x\"\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", 200},
		{"CL leading zeros", "POST /p HTTP/1.1\r\n" + h + "Content-Length: 005\r\n\r\nhello", 200},
		{"same CL twice", "POST /p HTTP/1.1\r\n" + h + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 200},
		{"bare LF lines", "GET /p HTTP/1.1\n" + h[:len(h)-2] + "\nx-lower: 1\n\n", 200},
	}
}

func TestSmugglingProbes(t *testing.T) {
	be := startRecordingBackend(t)
	g := startGateway(t, &config.Config{Apps: []config.App{{Hosts: []string{"raw.example.com"}, Backends: []config.Backend{{Addr: be.ln.Addr().String()}}}}})
	probes := smugglingProbes()
	if len(probes) < 25 {
		t.Fatalf("only %d probes", len(probes))
	}
	for i, p := range probes {
		t.Run(p.name, func(t *testing.T) {
			c, br := rawConn(t, g)
			io.WriteString(c, p.req) //nolint:errcheck
			resp, body := readResp(t, br, "POST")
			if resp.StatusCode != p.status {
				t.Errorf("status %d, want %d (%q)", resp.StatusCode, p.status, body)
			}
			if p.status != 200 && p.status != 405 && !resp.Close {
				t.Error("the connection was kept after a refused request")
			}
			c.Close()
			// A fresh client gets its own answer: nothing of the probe is
			// left in a backend connection to answer it instead.
			path := fmt.Sprintf("/after-%d", i)
			c2, br2 := rawConn(t, g)
			io.WriteString(c2, "GET "+path+" HTTP/1.1\r\nHost: raw.example.com\r\n\r\n") //nolint:errcheck
			if resp, body := readResp(t, br2, "GET"); resp.StatusCode != 200 || body != "GET "+path+" len=0" {
				t.Errorf("the next client got %d %q", resp.StatusCode, body)
			}
			raw, paths := be.take()
			checkUnambiguous(t, raw)
			reached := slices.Contains(paths, "/p")
			if want := p.status == 200; reached != want {
				t.Errorf("request reached the backend: %v, want %v:\n%q", reached, want, raw)
			}
			if !slices.Contains(paths, path) {
				t.Errorf("the next request did not reach the backend:\n%q", raw)
			}
		})
	}
}

// h2Probe opens an HTTP/2 connection, sends one crafted request and
// reports how the stream ended: an HTTP status, or a reset code.
func h2Probe(t *testing.T, g *gateway, fields [][2]string, data []byte) (status string, reset http2.ErrCode) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", g.srv.TLSAddr().String(),
		&tls.Config{ServerName: "raw.example.com", RootCAs: g.roots, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
	io.WriteString(c, http2.ClientPreface)          //nolint:errcheck
	fr := http2.NewFramer(c, c)
	fr.WriteSettings() //nolint:errcheck
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range fields {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}) //nolint:errcheck
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndHeaders: true, EndStream: data == nil}) //nolint:errcheck
	if data != nil {
		fr.WriteData(1, true, data) //nolint:errcheck
	}
	dec := hpack.NewDecoder(4096, nil)
	// After an answer, a reset may still follow (an intermediary answers a
	// malformed request and resets the stream): wait a little for it.
	ended := func() {
		if status != "" && status[0] == '2' {
			c.SetDeadline(time.Now()) //nolint:errcheck
			return
		}
		c.SetDeadline(time.Now().Add(time.Second)) //nolint:errcheck
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return status, reset
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck() //nolint:errcheck
			}
		case *http2.HeadersFrame:
			hf, _ := dec.DecodeFull(f.HeaderBlockFragment())
			for _, h := range hf {
				if h.Name == ":status" {
					status = h.Value
				}
			}
			if f.StreamEnded() {
				ended()
			}
		case *http2.DataFrame:
			if f.StreamEnded() {
				ended()
			}
		case *http2.RSTStreamFrame:
			return status, f.ErrCode
		case *http2.GoAwayFrame:
			return status, f.ErrCode
		}
	}
}

func TestH2FrameProbes(t *testing.T) {
	be := startRecordingBackend(t)
	g := startGateway(t, &config.Config{Apps: []config.App{{Hosts: []string{"raw.example.com"}, Backends: []config.Backend{{Addr: be.ln.Addr().String()}}}}})
	req := func(path string, extra ...[2]string) [][2]string {
		return append([][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", "raw.example.com"}, {":path", path}}, extra...)
	}
	probes := []struct {
		name   string
		fields [][2]string
		data   []byte
	}{
		{"connection header", req("/p", [2]string{"connection", "keep-alive"}), nil},
		{"transfer-encoding", req("/p", [2]string{"transfer-encoding", "chunked"}), []byte("0\r\n\r\n")},
		{"te other than trailers", req("/p", [2]string{"te", "gzip"}), nil},
		{"content-length shorter than body", req("/p", [2]string{"content-length", "3"}), []byte("hello world")},
		{"upper-case field name", req("/p", [2]string{"X-Upper", "1"}), nil},
		{"CRLF in a value", req("/p", [2]string{"x-a", "1\r\nGET /smuggled HTTP/1.1"}), nil},
		{"no :path", [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "raw.example.com"}}, nil},
	}
	for i, p := range probes {
		t.Run(p.name, func(t *testing.T) {
			status, reset := h2Probe(t, g, p.fields, p.data)
			if status != "" && status[0] == '2' {
				t.Errorf("a malformed HTTP/2 request was answered %s", status)
			}
			if status == "" && reset == 0 {
				t.Error("the stream neither got an error status nor a reset")
			}
			// RFC 9113 8.2.2: an intermediary treats these as a stream
			// error, after the 400 that says why.
			if i < 3 && reset != http2.ErrCodeProtocol {
				t.Errorf("status %q, reset %v; want RST_STREAM(PROTOCOL_ERROR)", status, reset)
			}
			path := fmt.Sprintf("/after-h2-%d", i)
			if status, _ := h2Probe(t, g, [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "raw.example.com"}, {":path", path}}, nil); status != "200" {
				t.Errorf("the next client got %q", status)
			}
			raw, paths := be.take()
			checkUnambiguous(t, raw)
			if slices.Contains(paths, "/p") {
				t.Errorf("the malformed request reached the backend:\n%q", raw)
			}
			if !slices.Contains(paths, path) {
				t.Errorf("the next request did not reach the backend:\n%q", raw)
			}
		})
	}
}
