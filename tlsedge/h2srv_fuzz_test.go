package tlsedge

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2FuzzConn is a net.Conn that reads the client's bytes from r and
// records what the server writes.
type h2FuzzConn struct {
	r      io.Reader
	mu     sync.Mutex
	w      bytes.Buffer
	closed bool
}

func (c *h2FuzzConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *h2FuzzConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.w.Write(p)
}

func (c *h2FuzzConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *h2FuzzConn) output() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.w.Bytes())
}

func (*h2FuzzConn) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443} }
func (*h2FuzzConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
}
func (*h2FuzzConn) SetDeadline(t time.Time) error      { return nil }
func (*h2FuzzConn) SetReadDeadline(t time.Time) error  { return nil }
func (*h2FuzzConn) SetWriteDeadline(t time.Time) error { return nil }

// h2FuzzHandler reads the body and answers with its length, headers and
// a trailer, exercising the writer's paths.
var h2FuzzHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	n, _ := io.Copy(io.Discard, r.Body)
	w.Header().Set("Trailer", "X-Len")
	w.Header().Set("Content-Type", "text/plain")
	if r.URL.Path == "/big" {
		w.Write(bytes.Repeat([]byte("x"), 70000)) //nolint:errcheck // the client may be gone
	}
	w.(http.Flusher).Flush()
	w.Header().Set("X-Len", string(rune('0'+n%10)))
})

// serveH2Bytes runs one server connection on client bytes in (the
// preface is prepended) until they run out, and returns what it wrote.
func serveH2Bytes(in []byte) []byte {
	c := &h2FuzzConn{r: io.MultiReader(bytes.NewReader([]byte(http2.ClientPreface)), bytes.NewReader(in))}
	srv := &h2Server{handler: h2FuzzHandler}
	srv.serveConn(context.Background(), c, h2ConnOptions{idle: time.Minute, header: time.Minute, body: time.Minute}, nil)
	return c.output()
}

// FuzzH2ServerFrames feeds arbitrary client frames to the HTTP/2 server:
// it must not panic or hang, and what it writes must be a well-formed
// frame sequence that starts with its SETTINGS and whose header blocks
// decode.
func FuzzH2ServerFrames(f *testing.F) {
	f.Add(h2ClientBytes(func(fr *http2.Framer) { h2MalformedRequests(fr, 3) })[len(http2.ClientPreface):])
	f.Add(h2ClientBytes(func(fr *http2.Framer) {
		fr.WriteSettings(h2Settings(4, 100, 4, 1, 1, 0)...)
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x82, 0x87}, EndStream: false, PadLength: 3, Priority: http2.PriorityParam{Weight: 9}})
		fr.WriteContinuation(1, true, []byte{0x84, 0x41, 0x01, 'a'})
		fr.WriteData(1, false, []byte("hello"))
		fr.WriteWindowUpdate(1, 1000)
		fr.WriteData(1, true, []byte(" world"))
		fr.WritePing(false, [8]byte{1})
	})[len(http2.ClientPreface):])
	f.Add(h2ClientBytes(func(fr *http2.Framer) {
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "a"}, {":path", "/big"}, {"cookie", "a=1"}, {"cookie", "b=2"}} {
			enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
		}
		fr.WriteSettings()
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
		fr.WriteRSTStream(1, http2.ErrCodeCancel)
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
		fr.WriteWindowUpdate(0, 1<<20)
		fr.WriteWindowUpdate(3, 1<<20)
		fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	})[len(http2.ClientPreface):])
	f.Fuzz(func(t *testing.T, in []byte) {
		out := serveH2Bytes(in)
		fr := http2.NewFramer(nil, bytes.NewReader(out))
		fr.ReadMetaHeaders = hpack.NewDecoder(h2TableSize, nil)
		fr.MaxHeaderListSize = 1 << 20
		for i := 0; ; i++ {
			f, err := fr.ReadFrame()
			// The connection may close in the middle of a frame: the
			// input ran out while handlers were still writing.
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return
			}
			if err != nil {
				t.Fatalf("frame %d of the server's output: %v\n%x", i, err, out)
			}
			if s, ok := f.(*http2.SettingsFrame); i == 0 && (!ok || s.IsAck()) {
				t.Fatalf("the server began with %v", f)
			}
		}
	})
}

// h2ClientBytes is the preface and the frames frames writes.
func h2ClientBytes(frames func(fr *http2.Framer)) []byte {
	var b bytes.Buffer
	b.WriteString(http2.ClientPreface)
	frames(http2.NewFramer(&b, nil))
	return b.Bytes()
}

// h2Settings makes settings of id (a uint16) and value pairs.
func h2Settings(kv ...uint32) []http2.Setting {
	var s []http2.Setting
	for i := 0; i < len(kv); i += 2 {
		s = append(s, http2.Setting{ID: http2.SettingID(kv[i]), Val: kv[i+1]})
	}
	return s
}

// h2MalformedRequests writes n requests with a Connection field on streams
// 1, 3, 5...
func h2MalformedRequests(fr *http2.Framer, n int) {
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	fr.WriteSettings()
	for i := range n {
		hb.Reset()
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/"}, {"connection", "close"}} {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	}
}
