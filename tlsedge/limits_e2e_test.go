package tlsedge

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/tlsedge/tlsedge/config"
)

// The request limits end to end, over both protocols: every oversized
// request of the table gets its 4xx, reaches no backend byte, and
// the next client is served. HTTP/1.1 heads are refused by our parser,
// HTTP/2 ones by Go's server (header block bytes) or the limits filter.

// limitProbe is one oversized request.
type limitProbe struct {
	name   string
	target string      // request target
	fields [][2]string // extra header fields, lower-case names
	status int
	// mayRefuse: over HTTP/2 a connection-level refusal (GOAWAY, a closed
	// connection) instead of the status is accepted, as long as nothing
	// reaches the backend.
	mayRefuse bool
}

func limitProbes() []limitProbe {
	many, same := make([][2]string, 10000), make([][2]string, 10000)
	for i := range many {
		many[i], same[i] = [2]string{fmt.Sprintf("x-h-%d", i), "1"}, [2]string{"x-same", "1"}
	}
	return []limitProbe{
		{name: "64 KiB header", target: "/p", fields: [][2]string{{"x-big", strings.Repeat("a", 64<<10)}}, status: 431},
		{name: "1 MiB header", target: "/p", fields: [][2]string{{"x-big", strings.Repeat("a", 1<<20)}}, status: 431, mayRefuse: true},
		{name: "64 KiB URL", target: "/p?q=" + strings.Repeat("u", 64<<10), status: 414},
		// 10,000 distinct fields are a header block of 8 frames, and Go's
		// server ends a connection whose CONTINUATION frames run far past
		// its limit (the CVE-2023-45288 defence); the same field repeated
		// is one HPACK byte each, one frame, and gets the 431.
		{name: "10000 headers", target: "/p", fields: many, status: 431, mayRefuse: true},
		{name: "10000 headers, one repeated", target: "/p", fields: same, status: 431},
		{name: "64 KiB cookie", target: "/p", fields: [][2]string{{"cookie", "c=" + strings.Repeat("k", 64<<10)}}, status: 431},
	}
}

// limitsGateway serves raw.example.com from a byte-recording backend.
func limitsGateway(t *testing.T, app config.App) (*gateway, *recordingBackend) {
	t.Helper()
	be := startRecordingBackend(t)
	app.Hosts = []string{"raw.example.com"}
	app.Backends = []config.Backend{{Addr: be.ln.Addr().String()}}
	return startGateway(t, &config.Config{Apps: []config.App{app}}), be
}

// h1Outcome sends req on a fresh HTTP/1.1 connection, writing while it
// reads (the gateway may answer before the request is all sent), and
// returns the status or what the client saw instead.
func h1Outcome(t *testing.T, g *gateway, req string) (status int, saw string) {
	t.Helper()
	c, br := rawConn(t, g)
	wrote := make(chan error, 1)
	go func() { _, err := io.WriteString(c, req); wrote <- err }()
	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		c.Close()
		return 0, fmt.Sprintf("read: %v (write: %v)", err, <-wrote)
	}
	io.Copy(io.Discard, resp.Body) //nolint:errcheck
	resp.Body.Close()
	c.Close()
	return resp.StatusCode, fmt.Sprintf("%s, Connection close=%v (write: %v)", resp.Status, resp.Close, <-wrote)
}

func h1Request(target string, fields [][2]string) string {
	var b strings.Builder
	b.WriteString("GET " + target + " HTTP/1.1\r\nHost: raw.example.com\r\n")
	for _, f := range fields {
		b.WriteString(f[0] + ": " + f[1] + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// h2Outcome sends one GET with fields on a fresh HTTP/2 connection, the
// header block cut into CONTINUATION frames of the default frame size,
// and returns the status or how the connection ended instead.
func h2Outcome(t *testing.T, g *gateway, target string, fields [][2]string) (status string, saw string) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", g.srv.TLSAddr().String(),
		&tls.Config{ServerName: "raw.example.com", RootCAs: g.roots, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range append([][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "raw.example.com"}, {":path", target}}, fields...) {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}) //nolint:errcheck
	}
	fr := http2.NewFramer(c, c)
	io.WriteString(c, http2.ClientPreface) //nolint:errcheck // a failure shows in ReadFrame
	fr.WriteSettings()                     //nolint:errcheck
	var wmu sync.Mutex                     // the writer below and the SETTINGS ack
	wrote := make(chan error, 1)
	go func() {
		wmu.Lock()
		defer wmu.Unlock()
		wrote <- func() error {
			const max = 16384 // SETTINGS_MAX_FRAME_SIZE's initial value
			b := block.Bytes()
			first := b[:min(len(b), max)]
			b = b[len(first):]
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first, EndHeaders: len(b) == 0, EndStream: true}); err != nil {
				return err
			}
			for len(b) > 0 {
				frag := b[:min(len(b), max)]
				b = b[len(frag):]
				if err := fr.WriteContinuation(1, len(b) == 0, frag); err != nil {
					return err
				}
			}
			return nil
		}()
	}()
	dec := hpack.NewDecoder(4096, nil)
	var ended string
	for ended == "" {
		f, err := fr.ReadFrame()
		if err != nil {
			ended = "read: " + err.Error()
			break
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				go func() { wmu.Lock(); defer wmu.Unlock(); fr.WriteSettingsAck() }() //nolint:errcheck
			}
		case *http2.HeadersFrame:
			hf, _ := dec.DecodeFull(f.HeaderBlockFragment())
			for _, h := range hf {
				if h.Name == ":status" {
					status = h.Value
				}
			}
			if f.StreamEnded() {
				ended = "END_STREAM"
			}
		case *http2.DataFrame:
			if f.StreamEnded() {
				ended = "END_STREAM"
			}
		case *http2.RSTStreamFrame:
			ended = "RST_STREAM " + f.ErrCode.String()
		case *http2.GoAwayFrame:
			ended = fmt.Sprintf("GOAWAY %s %q", f.ErrCode, f.DebugData())
		}
	}
	c.Close() // unblocks a writer the server stopped reading
	return status, fmt.Sprintf("status %q, then %s (write: %v)", status, ended, <-wrote)
}

// protos are the two protocols a client may speak.
var protos = []struct {
	name string
	h2   bool
}{{"HTTP/1.1", false}, {"HTTP/2", true}}

// protoOutcome sends GET target on a fresh connection of either protocol,
// the target's bytes exactly as written.
func protoOutcome(t *testing.T, g *gateway, h2 bool, target string) (int, string) {
	t.Helper()
	if h2 {
		status, saw := h2Outcome(t, g, target, nil)
		var n int
		fmt.Sscan(status, &n) //nolint:errcheck
		return n, saw
	}
	return h1Outcome(t, g, h1Request(target, nil))
}

// protoClient is a client of g speaking HTTP/2 or HTTP/1.1 whatever
// TLSEDGE_TEST_H2 says, on fresh connections, without transparent
// decompression.
func protoClient(t *testing.T, g *gateway, h2 bool) *http.Client {
	t.Helper()
	addr := g.srv.TLSAddr().String()
	protos := []string{"http/1.1"}
	if h2 {
		protos = []string{"h2"}
	}
	return &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
			TLSClientConfig:    &tls.Config{RootCAs: g.roots, NextProtos: protos},
			ForceAttemptHTTP2:  h2,
			DisableKeepAlives:  true,
			DisableCompression: true,
		},
		Timeout: 30 * time.Second,
	}
}

// checkNothingForwarded asserts the probe left no byte at the backend,
// then that a normal request on a fresh connection is served, and that it
// is the only thing the backend received.
func checkNothingForwarded(t *testing.T, g *gateway, be *recordingBackend, h2 bool, next string) {
	t.Helper()
	if raw, paths := be.take(); len(raw) > 0 || len(paths) > 0 {
		t.Errorf("the refused request reached the backend: paths %q, %d bytes", paths, len(strings.Join(raw, "")))
	}
	if h2 {
		resp, body := get(t, protoClient(t, g, true), "https://raw.example.com"+next, "")
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 || body != "GET "+next+" len=0" {
			t.Errorf("next HTTP/2 client: %s %s %q", resp.Proto, resp.Status, body)
		}
	} else {
		c, br := rawConn(t, g)
		io.WriteString(c, h1Request(next, nil)) //nolint:errcheck
		if resp, body := readResp(t, br, "GET"); resp.StatusCode != 200 || body != "GET "+next+" len=0" {
			t.Errorf("next HTTP/1.1 client: %s %q", resp.Status, body)
		}
	}
	raw, paths := be.take()
	if len(paths) != 1 || paths[0] != next || strings.Contains(strings.Join(raw, ""), " /p") {
		t.Errorf("backend received %q, want only %s", paths, next)
	}
}

func TestLimitsTableH1(t *testing.T) {
	g, be := limitsGateway(t, config.App{})
	for i, p := range limitProbes() {
		t.Run(p.name, func(t *testing.T) {
			status, saw := h1Outcome(t, g, h1Request(p.target, p.fields))
			t.Logf("HTTP/1.1 %s: %s", p.name, saw)
			if status != p.status {
				t.Errorf("status %d, want %d (%s)", status, p.status, saw)
			}
			checkNothingForwarded(t, g, be, false, fmt.Sprintf("/after-h1-%d", i))
		})
	}
}

func TestLimitsTableH2(t *testing.T) {
	g, be := limitsGateway(t, config.App{})
	for i, p := range limitProbes() {
		t.Run(p.name, func(t *testing.T) {
			status, saw := h2Outcome(t, g, p.target, p.fields)
			t.Logf("HTTP/2 %s: %s", p.name, saw)
			switch {
			case status == fmt.Sprint(p.status):
			case status == "" && p.mayRefuse:
				t.Logf("refused at the connection, not answered %d", p.status)
			default:
				t.Errorf("got %s, want :status %d", saw, p.status)
			}
			checkNothingForwarded(t, g, be, true, fmt.Sprintf("/after-h2-%d", i))
		})
	}
}

// Per-app limits smaller than the defaults apply to both protocols, with
// the Go client over HTTP/2 (these requests are within what it sends).
func TestLimitsPerApp(t *testing.T) {
	g, be := limitsGateway(t, config.App{Filters: config.Filters{MaxURL: "1K", MaxHeaderFields: 20, MaxCookie: "1K"}})
	manyFields := make([][2]string, 25)
	for i := range manyFields {
		manyFields[i] = [2]string{fmt.Sprintf("x-h-%d", i), "1"}
	}
	tests := []struct {
		name   string
		target string
		fields [][2]string
		status int
	}{
		{"2 KiB URL over max_url=1K", "/p?q=" + strings.Repeat("u", 2<<10), nil, 414},
		{"25 fields over max_header_fields=20", "/p", manyFields, 431},
		{"2 KiB cookie over max_cookie=1K", "/p", [][2]string{{"cookie", "c=" + strings.Repeat("k", 2<<10)}}, 431},
		{"900 B cookie within max_cookie=1K", "/p", [][2]string{{"cookie", "c=" + strings.Repeat("k", 900)}}, 200},
	}
	for i, tt := range tests {
		t.Run(tt.name+" HTTP/1.1", func(t *testing.T) {
			status, saw := h1Outcome(t, g, h1Request(tt.target, tt.fields))
			if status != tt.status {
				t.Errorf("status %d, want %d (%s)", status, tt.status, saw)
			}
			if tt.status != 200 {
				checkNothingForwarded(t, g, be, false, fmt.Sprintf("/after-app-h1-%d", i))
			}
			be.take()
		})
		t.Run(tt.name+" HTTP/2", func(t *testing.T) {
			req, _ := http.NewRequest("GET", "https://raw.example.com"+tt.target, nil)
			for _, f := range tt.fields {
				req.Header.Add(f[0], f[1])
			}
			resp, err := protoClient(t, g, true).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 || resp.StatusCode != tt.status {
				t.Errorf("%s %s %q, want HTTP/2 %d", resp.Proto, resp.Status, body, tt.status)
			}
			if tt.status != 200 {
				checkNothingForwarded(t, g, be, true, fmt.Sprintf("/after-app-h2-%d", i))
			}
			be.take()
		})
	}
}
