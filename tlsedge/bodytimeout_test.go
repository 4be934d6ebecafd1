package tlsedge

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/tlsedge/tlsedge/config"
)

// A client that stops in the middle of a request body is cut after
// frontend.body_timeout, over HTTP/1.1 and HTTP/2 alike, and the backend
// never gets a whole request from it.
func TestBodyIdleTimeout(t *testing.T) {
	be := startRecordingBackend(t)
	const timeout = time.Second
	g := startGateway(t, &config.Config{
		Frontend: config.Frontend{BodyTimeout: config.Duration(timeout)},
		Apps:     []config.App{{Hosts: []string{"raw.example.com"}, Backends: []config.Backend{{Addr: be.ln.Addr().String()}}}},
	})
	// Generous: the test proves the stall is cut, not how fast.
	const limit = timeout + 4*time.Second

	t.Run("HTTP/1.1", func(t *testing.T) {
		c, br := rawConn(t, g)
		io.WriteString(c, "POST /stalled HTTP/1.1\r\nHost: raw.example.com\r\nContent-Length: 100\r\n\r\n0123456789") //nolint:errcheck
		start := time.Now()
		c.SetReadDeadline(start.Add(limit)) //nolint:errcheck
		resp, err := io.ReadAll(br)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("the stalled body was not cut within %v (read %q)", limit, resp)
		}
		if !bytes.HasPrefix(resp, []byte("HTTP/1.1 408 ")) {
			t.Errorf("got %q, want 408 Request Timeout", firstLine(resp))
		}
		t.Logf("HTTP/1.1: cut after %v: %q", time.Since(start).Round(10*time.Millisecond), firstLine(resp))
	})

	t.Run("HTTP/2", func(t *testing.T) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", g.srv.TLSAddr().String(),
			&tls.Config{ServerName: "raw.example.com", RootCAs: g.roots, NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, http2.ClientPreface) //nolint:errcheck
		fr := http2.NewFramer(c, c)
		fr.WriteSettings() //nolint:errcheck
		var block bytes.Buffer
		enc := hpack.NewEncoder(&block)
		for _, f := range [][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", "raw.example.com"}, {":path", "/stalled"}, {"content-length", "100"}} {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}) //nolint:errcheck
		}
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndHeaders: true}) //nolint:errcheck
		fr.WriteData(1, false, []byte("0123456789"))                                                          //nolint:errcheck
		start := time.Now()
		c.SetReadDeadline(start.Add(limit)) //nolint:errcheck
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("the stalled stream was not ended within %v: %v", limit, err)
			}
			if f.Header().StreamID != 1 {
				if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
					fr.WriteSettingsAck() //nolint:errcheck
				}
				continue
			}
			if rst, ok := f.(*http2.RSTStreamFrame); ok {
				t.Logf("HTTP/2: stream reset (%v) after %v", rst.ErrCode, time.Since(start).Round(10*time.Millisecond))
				break
			}
			if f.Header().Flags.Has(http2.FlagDataEndStream) || f.Header().Flags.Has(http2.FlagHeadersEndStream) {
				t.Logf("HTTP/2: stream answered and ended after %v", time.Since(start).Round(10*time.Millisecond))
				break
			}
		}
	})
	if _, paths := be.take(); slices.Contains(paths, "/stalled") {
		t.Error("a stalled request reached the backend whole")
	}
}

func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}
