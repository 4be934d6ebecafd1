package tlsedge

import (
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2PipeConn feeds an h2Guard from a reader and records what it writes;
// the guard uses nothing else of a net.Conn.
type h2PipeConn struct {
	net.Conn
	r io.Reader
	w bytes.Buffer
}

func (c *h2PipeConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *h2PipeConn) Write(p []byte) (int, error) { return c.w.Write(p) }

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

func TestH2GuardSettingsRewrite(t *testing.T) {
	const (
		hts = uint32(http2.SettingHeaderTableSize)
		iws = uint32(http2.SettingInitialWindowSize)
		mfs = uint32(http2.SettingMaxFrameSize)
		ep  = uint32(http2.SettingEnablePush)
	)
	cases := []struct {
		name     string
		in, want []http2.Setting
		wantErr  error // from the server's framer, which checks the window
	}{
		{"h2spec 6.5.3/1", h2Settings(iws, 100, iws, 1), h2Settings(iws, 1), nil},
		{"no duplicates pass unchanged", h2Settings(ep, 0, iws, 10, mfs, 20000), h2Settings(ep, 0, iws, 10, mfs, 20000), nil},
		{"last value, order of last occurrence",
			h2Settings(hts, 0, mfs, 20000, hts, 4096, iws, 5, mfs, 16384), h2Settings(hts, 4096, iws, 5, mfs, 16384), nil},
		{"unknown setting", h2Settings(0x99, 1, 0x99, 2), h2Settings(0x99, 2), nil},
		// In order, the first invalid value is a connection error: the
		// server is shown that value alone and answers with its code.
		{"invalid value", h2Settings(ep, 2, ep, 0), h2Settings(ep, 2), nil},
		{"invalid after valid", h2Settings(iws, 10, ep, 2, iws, 20), h2Settings(ep, 2), nil},
		{"window too large", h2Settings(iws, 1<<31, iws, 10), nil, http2.ConnectionError(http2.ErrCodeFlowControl)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := h2ClientBytes(func(fr *http2.Framer) {
				fr.WriteSettings(tc.in...)
				fr.WriteSettingsAck()
				fr.WritePing(false, [8]byte{1})
			})
			pc := &h2PipeConn{r: bytes.NewReader(in)}
			g := newH2Guard(pc)
			if _, ok := g.(h2TLSStater); ok {
				t.Fatal("a guard of a conn without TLS state has ConnectionState")
			}
			preface := make([]byte, len(http2.ClientPreface))
			if _, err := io.ReadFull(g, preface); err != nil || string(preface) != http2.ClientPreface {
				t.Fatalf("preface: %q, %v", preface, err)
			}
			fr := http2.NewFramer(nil, g)
			f, err := fr.ReadFrame()
			if tc.wantErr != nil || err != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %v, want %v", err, tc.wantErr)
				}
				return
			}
			var got []http2.Setting
			f.(*http2.SettingsFrame).ForeachSetting(func(s http2.Setting) error { got = append(got, s); return nil })
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			if f, err := fr.ReadFrame(); err != nil || !f.(*http2.SettingsFrame).IsAck() {
				t.Fatalf("then %v, %v; want the SETTINGS ACK", f, err)
			}
			if f, err := fr.ReadFrame(); err != nil || f.Header().Type != http2.FramePing {
				t.Fatalf("then %v, %v; want the PING", f, err)
			}
		})
	}
}

// h2ServerFrames writes what a server might: answers to malformed requests
// on streams 1, 5 and 7 among others.
func h2ServerFrames(fr *http2.Framer) {
	fr.WriteSettings(h2Settings(uint32(http2.SettingMaxFrameSize), 16384)...)
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x88}, EndHeaders: true})
	fr.WriteData(1, true, []byte("request header \"Connection\" is not valid in HTTP/2\n"))
	fr.WriteData(3, false, bytes.Repeat([]byte("x"), 100))
	fr.WriteRSTStream(1, http2.ErrCodeNo) // the server's own reset: dropped
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: []byte{0x88}, EndStream: true})
	fr.WriteContinuation(5, true, []byte{0x40, 1, 'a', 1, 'b'})
	fr.WriteData(3, true, nil)
	fr.WriteRSTStream(7, http2.ErrCodeRefusedStream) // reset by the server: nothing added
	fr.WritePing(true, [8]byte{2})
}

// h2WantFrames is h2ServerFrames as the client must see them.
func h2WantFrames(fr *http2.Framer) {
	fr.WriteSettings(h2Settings(uint32(http2.SettingMaxFrameSize), 16384)...)
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x88}, EndHeaders: true})
	fr.WriteData(1, true, []byte("request header \"Connection\" is not valid in HTTP/2\n"))
	fr.WriteRSTStream(1, http2.ErrCodeProtocol)
	fr.WriteData(3, false, bytes.Repeat([]byte("x"), 100))
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: []byte{0x88}, EndStream: true})
	fr.WriteContinuation(5, true, []byte{0x40, 1, 'a', 1, 'b'})
	fr.WriteRSTStream(5, http2.ErrCodeProtocol)
	fr.WriteData(3, true, nil)
	fr.WriteRSTStream(7, http2.ErrCodeRefusedStream)
	fr.WritePing(true, [8]byte{2})
}

func h2FramesBytes(write func(*http2.Framer)) []byte {
	var b bytes.Buffer
	write(http2.NewFramer(&b, nil))
	return b.Bytes()
}

// TestH2GuardWriteBoundaries writes the server's frames in pieces of
// every size, as a bufio.Writer may: resets go in at frame boundaries,
// and frames on reset streams are dropped, wherever the cuts fall.
func TestH2GuardWriteBoundaries(t *testing.T) {
	in, want := h2FramesBytes(h2ServerFrames), h2FramesBytes(h2WantFrames)
	for size := 1; size <= len(in); size++ {
		pc := &h2PipeConn{}
		g := newH2Guard(pc).(*h2Guard)
		for _, id := range []uint32{1, 5, 7} {
			g.marked.add(id)
		}
		for p := in; len(p) > 0; {
			n := min(size, len(p))
			if m, err := g.Write(p[:n]); m != n || err != nil {
				t.Fatalf("size %d: Write = %d, %v", size, m, err)
			}
			p = p[n:]
		}
		if !bytes.Equal(pc.w.Bytes(), want) {
			t.Fatalf("writes of %d bytes:\n got %x\nwant %x", size, pc.w.Bytes(), want)
		}
		if n := g.marked.n.Load(); n != 0 {
			t.Fatalf("size %d: %d streams still marked", size, n)
		}
	}
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

// TestH2GuardMarkedCap: past h2GuardMaxMarked malformed requests not yet
// answered, reading fails with a connection error, which the server turns
// into GOAWAY(PROTOCOL_ERROR).
func TestH2GuardMarkedCap(t *testing.T) {
	in := h2ClientBytes(func(fr *http2.Framer) { h2MalformedRequests(fr, h2GuardMaxMarked+1) })
	g := newH2Guard(&h2PipeConn{r: bytes.NewReader(in)})
	io.ReadFull(g, make([]byte, len(http2.ClientPreface)))
	fr := http2.NewFramer(nil, g)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	var err error
	n := 0
	for ; err == nil; n++ {
		_, err = fr.ReadFrame()
	}
	// SETTINGS, then every request is read; the next read fails.
	if want := http2.ConnectionError(http2.ErrCodeProtocol); !errors.Is(err, want) || n != h2GuardMaxMarked+3 {
		t.Fatalf("after %d frames: %v, want %v after %d", n, err, want, h2GuardMaxMarked+3)
	}
}

// FuzzH2Guard feeds arbitrary client bytes (after the preface) through the
// read side and arbitrary server bytes through the write side, in pieces
// of chunk bytes. The guard must not fail, and what it passes must not
// depend on how the bytes are cut: the same as in one piece. The client's
// bytes pass unchanged unless a SETTINGS frame was rewritten; with no
// malformed request pending, so do the server's.
func FuzzH2Guard(f *testing.F) {
	f.Add(h2ClientBytes(func(fr *http2.Framer) { h2MalformedRequests(fr, 3) })[len(http2.ClientPreface):], uint8(7))
	f.Add(h2ClientBytes(func(fr *http2.Framer) {
		fr.WriteSettings(h2Settings(4, 100, 4, 1)...)
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x82, 0x87}, EndStream: true, PadLength: 3, Priority: http2.PriorityParam{Weight: 9}})
		fr.WriteContinuation(1, true, []byte{0x84})
	})[len(http2.ClientPreface):], uint8(5))
	f.Add(h2FramesBytes(h2ServerFrames), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		size := int(chunk)%64 + 1
		in := append([]byte(http2.ClientPreface), data...)
		read := func(size int) ([]byte, bool) {
			g := newH2Guard(&h2PipeConn{r: bytes.NewReader(in)}).(*h2Guard)
			var out bytes.Buffer
			buf := make([]byte, size)
			for {
				n, err := g.Read(buf)
				out.Write(buf[:n])
				if err != nil {
					return out.Bytes(), g.r.settingsBuf != nil
				}
			}
		}
		out, rewrote := read(size)
		if whole, _ := read(len(in)); !bytes.Equal(out, whole) {
			t.Fatalf("read in pieces of %d:\n%x\nin one piece:\n%x", size, out, whole)
		}
		if !rewrote && !bytes.Equal(out, in) || len(out) > len(in) {
			t.Fatalf("read %x from %x", out, in)
		}
		write := func(size int, marked bool) []byte {
			pc := &h2PipeConn{}
			g := newH2Guard(pc).(*h2Guard)
			if marked {
				g.marked.add(1)
				g.marked.add(3)
			}
			for p := data; len(p) > 0; {
				n := min(size, len(p))
				if m, err := g.Write(p[:n]); m != n || err != nil {
					t.Fatalf("Write = %d, %v", m, err)
				}
				p = p[n:]
			}
			return pc.w.Bytes()
		}
		if out := write(size, false); !bytes.Equal(out, data) {
			t.Fatalf("wrote %x, want %x", out, data)
		}
		if out, whole := write(size, true), write(len(data)+1, true); !bytes.Equal(out, whole) {
			t.Fatalf("wrote in pieces of %d:\n%x\nin one piece:\n%x", size, out, whole)
		}
	})
}

// h2CycleReader reads b over and over.
type h2CycleReader struct {
	b   []byte
	off int
}

func (r *h2CycleReader) Read(p []byte) (int, error) {
	n := copy(p, r.b[r.off:])
	r.off = (r.off + n) % len(r.b)
	return n, nil
}

// BenchmarkH2GuardFrames measures the guard alone, per op one request
// HEADERS frame (static-table fields) and a 16 KiB DATA frame: read as the
// server's framer reads them, and written in 4 KiB pieces as its
// bufio.Writer does.
func BenchmarkH2GuardFrames(b *testing.B) {
	frames := h2FramesBytes(func(fr *http2.Framer) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x82, 0x87, 0x84}, EndHeaders: true})
		fr.WriteData(1, false, make([]byte, 16384))
	})
	// read-noguard is the framer alone, for comparison (its two
	// allocations are the frames it returns).
	for _, guard := range []bool{true, false} {
		name := "read"
		if !guard {
			name = "read-noguard"
		}
		b.Run(name, func(b *testing.B) {
			var c net.Conn = &h2PipeConn{r: io.MultiReader(bytes.NewReader([]byte(http2.ClientPreface)), &h2CycleReader{b: frames})}
			if guard {
				c = newH2Guard(c)
			}
			io.ReadFull(c, make([]byte, len(http2.ClientPreface)))
			fr := http2.NewFramer(nil, c)
			b.SetBytes(int64(len(frames)))
			b.ReportAllocs()
			for b.Loop() {
				for range 2 {
					if _, err := fr.ReadFrame(); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
	b.Run("write", func(b *testing.B) {
		g := newH2Guard(&h2PipeConn{}).(*h2Guard)
		g.Conn = h2DiscardConn{}
		b.SetBytes(int64(len(frames)))
		b.ReportAllocs()
		for b.Loop() {
			for p := frames; len(p) > 0; {
				n := min(4096, len(p))
				g.Write(p[:n])
				p = p[n:]
			}
		}
	})
}

type h2DiscardConn struct{ net.Conn }

func (h2DiscardConn) Write(p []byte) (int, error) { return len(p), nil }
