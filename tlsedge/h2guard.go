package tlsedge

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The HTTP/2 guard sits between a handshaken TLS connection and the HTTP/2
// server (x/net/http2, the same code as net/http's bundled server) and
// closes three gaps between that server and RFC 9113, without forking it:
//
//   - A SETTINGS frame may repeat a setting (RFC 9113 6.5.3: values are
//     processed in order); Go's server answers GOAWAY. The guard rewrites
//     such a frame to hold each setting once with its last value, in the
//     order of last occurrence. The one difference from processing in
//     order: a SETTINGS_HEADER_TABLE_SIZE that dips and rises within one
//     frame is seen as its final value only, so the server's encoder does
//     not signal the dip (RFC 7541 4.2) and its table is not flushed.
//   - A request carrying a connection-specific field (Connection,
//     Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade) or a TE
//     other than "trailers" is malformed, which an intermediary MUST treat
//     as a stream error PROTOCOL_ERROR (RFC 9113 8.2.2, 8.1.1). Go's server
//     answers 400 without calling the handler, so nothing is forwarded; the
//     guard decodes every request header block with its own HPACK decoder,
//     remembers such streams, and once the server has ended one (END_STREAM)
//     sends RST_STREAM(PROTOCOL_ERROR) for it at the next frame boundary.
//     The client gets the 400 that says why, then the reset: RFC 9113 5.1
//     lets a peer receive RST_STREAM shortly after END_STREAM, and 8.1 has
//     a server send one after a complete response (Go's server does, with
//     NO_ERROR, when the request body is unfinished). Frames the
//     server writes on such a stream afterwards (its own RST_STREAM(NO_ERROR)
//     when the client had not finished the request body) are dropped: the
//     stream is closed once reset (5.1).
//   - The frame size the server advertises is set by newH2Server, not here.
//
// The guard never makes a valid connection fail: on anything it does not
// understand (a bad preface, a frame out of order, an HPACK error, a
// header string longer than h2GuardMaxString) it stops inspecting and
// passes bytes through, and Go's server reports the protocol error itself.
// Its HPACK decoder stays in step with the server's because header blocks
// pass through unchanged and both start from the table size the server
// advertises (h2GuardTableSize, Go's default).
//
// Memory per connection: a 4 KiB read buffer, the HPACK dynamic table
// (≤ 4 KiB), and a few hundred bytes allocated only when a client sends a
// SETTINGS frame with duplicates or a malformed request.
const (
	// h2GuardTableSize is the HPACK dynamic table size the server
	// advertises (SETTINGS_HEADER_TABLE_SIZE): http2.Server's default,
	// which newH2Server does not change.
	h2GuardTableSize = 4096
	// h2GuardMaxString bounds a header name or value the guard decodes
	// (and so its HPACK buffer): the server's own limit with net/http's
	// default MaxHeaderBytes (1 MiB + 320), above the gateway's. The
	// server refuses a longer string with a connection error; if it were
	// configured to accept one, that would only stop the inspection.
	h2GuardMaxString = 1<<20 + 320
	// h2GuardMaxSettings is the most settings Go's server accepts in one
	// frame; a longer frame passes unchanged and is refused by the server.
	h2GuardMaxSettings = 100
	// h2GuardMaxMarked caps the malformed requests awaiting their reset.
	// The server answers each within a round trip, so only a client
	// pipelining that many malformed requests reaches it; the guard then
	// has the server end the connection with GOAWAY(PROTOCOL_ERROR), as
	// it does for other floods (see endBlock).
	h2GuardMaxMarked = 128
	// h2GuardResetRing is how many streams reset by the guard are
	// remembered so that the server's later frames on them are dropped.
	h2GuardResetRing = 16

	h2FrameHeaderLen = 9
)

// h2TLSStater is what x/net/http2 looks for to fill r.TLS and to
// enforce RFC 9113 9.2.
type h2TLSStater interface {
	ConnectionState() tls.ConnectionState
}

// h2Guard is a net.Conn carrying one HTTP/2 server connection. Reads are
// made by one goroutine at a time (the server's frame reader); writes are
// serialized by wmu. The read side shares only marked with the write side.
type h2Guard struct {
	net.Conn
	r      h2Reader
	wmu    sync.Mutex // held for a whole Write: injected frames never interleave
	w      h2Writer
	marked h2StreamSet
}

// h2TLSGuard is an h2Guard over a TLS connection.
type h2TLSGuard struct {
	h2Guard
	cs h2TLSStater
}

// ConnectionState is the TLS state of the wrapped connection, for the
// HTTP/2 server's r.TLS and its TLS version and cipher checks.
func (g *h2TLSGuard) ConnectionState() tls.ConnectionState { return g.cs.ConnectionState() }

// newH2Guard wraps c, a server connection about to speak HTTP/2 (a
// *tls.Conn after a handshake that chose "h2"), before anything is read
// from or written to it. When c has a ConnectionState method, so does the
// result. The guard owns c: closing the guard closes c.
func newH2Guard(c net.Conn) net.Conn {
	if cs, ok := c.(h2TLSStater); ok {
		g := &h2TLSGuard{cs: cs}
		g.init(c)
		return g
	}
	g := new(h2Guard)
	g.init(c)
	return g
}

func (g *h2Guard) init(c net.Conn) {
	g.Conn = c
	g.r.br = bufio.NewReaderSize(c, 4096)
	g.r.hdec = hpack.NewDecoder(h2GuardTableSize, g.r.emit)
	g.r.hdec.SetMaxStringLength(h2GuardMaxString)
}

// h2Reader is the read side's state, touched only by the reading
// goroutine.
type h2Reader struct {
	br   *bufio.Reader
	hdec *hpack.Decoder
	off  bool  // inspection stopped: bytes pass through
	err  error // returned by every later Read (the marked cap was hit)

	prefaceDone bool
	// The frame being passed to the server, offsets from its first byte:
	// pos bytes passed of end; [decFrom, decTo) is its header block
	// fragment; endsBlock is set when the frame carries END_HEADERS.
	pos, end       int
	decFrom, decTo int
	endsBlock      bool
	pending        []byte // a rewritten SETTINGS frame being returned
	settingsBuf    []byte // pending's storage, allocated on first use

	// The header block being decoded.
	inBlock   bool   // a CONTINUATION must follow
	blockID   uint32 // its stream
	isRequest bool   // it opens a stream (not trailers)
	bad       bool   // it carries a connection-specific field
	teCount   int
	maxID     uint32 // highest stream a request opened
}

// emit checks one decoded field of a request header block the way Go's
// server does (checkValidHTTP2RequestHeaders), so that exactly the requests
// it answers with 400 are reset. Field names arrive lower-case (an upper-case
// name is a stream error the server raises itself).
func (r *h2Reader) emit(f hpack.HeaderField) {
	switch f.Name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		r.bad = true
	case "te":
		// Go accepts one TE field that is "trailers" or empty.
		r.teCount++
		if r.teCount > 1 || f.Value != "trailers" && f.Value != "" {
			r.bad = true
		}
	}
}

// Read passes the client's bytes to the server, frame by frame, inspecting
// each frame's header (and a SETTINGS frame's payload) before any of its
// bytes are returned, and decoding header block fragments as they pass.
func (g *h2Guard) Read(p []byte) (int, error) {
	r := &g.r
	if r.off {
		return r.br.Read(p)
	}
	if r.err != nil {
		return 0, r.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if len(r.pending) == 0 && r.pos == r.end {
		err := g.nextFrame()
		if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			return 0, err // nothing consumed: a later Read starts over
		}
		if err != nil {
			// The stream ended inside a frame header: pass what is left,
			// then the error, as without the guard.
			r.off = true
		}
		if r.off {
			return r.br.Read(p)
		}
	}
	if len(r.pending) > 0 {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		return n, nil
	}
	n, err := r.br.Read(p[:min(len(p), r.end-r.pos)])
	if lo, hi := max(r.pos, r.decFrom), min(r.pos+n, r.decTo); lo < hi {
		if _, derr := r.hdec.Write(p[lo-r.pos : hi-r.pos]); derr != nil {
			r.off = true
		}
	}
	r.pos += n
	if r.pos == r.end && r.endsBlock && !r.off {
		g.endBlock()
	}
	return n, err
}

// nextFrame reads ahead the next frame's header (nothing is consumed) and
// sets up its passage. An error is the connection's.
func (g *h2Guard) nextFrame() error {
	r := &g.r
	if !r.prefaceDone {
		b, err := r.br.Peek(len(http2.ClientPreface))
		if err != nil {
			return err
		}
		r.prefaceDone = true
		if string(b) != http2.ClientPreface {
			r.off = true
			return nil
		}
		r.pos, r.end, r.decFrom, r.decTo, r.endsBlock = 0, len(b), 0, 0, false
		return nil
	}
	h, err := r.br.Peek(h2FrameHeaderLen)
	if err != nil {
		return err
	}
	length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
	typ, flags := http2.FrameType(h[3]), http2.Flags(h[4])
	id := binary.BigEndian.Uint32(h[5:]) & (1<<31 - 1)
	if r.inBlock && typ != http2.FrameContinuation {
		r.off = true // the server raises the connection error
		return nil
	}
	from, to, ends := 0, 0, false
	switch typ {
	case http2.FrameSettings:
		if flags.Has(http2.FlagSettingsAck) || id != 0 || length%6 != 0 || length > 6*h2GuardMaxSettings {
			break
		}
		b, err := r.br.Peek(h2FrameHeaderLen + length)
		if err != nil {
			return err
		}
		if hasDupSettings(b[h2FrameHeaderLen:]) {
			if r.settingsBuf == nil {
				r.settingsBuf = make([]byte, h2FrameHeaderLen+6*h2GuardMaxSettings)
			}
			r.pending = r.settingsBuf[:rewriteSettings(r.settingsBuf, b)]
			r.br.Discard(len(b)) //nolint:errcheck // the bytes were peeked
			r.pos, r.end = 0, 0
			return nil
		}
	case http2.FrameHeaders:
		pre, pad := 0, 0
		if flags.Has(http2.FlagHeadersPadded) {
			b, err := r.br.Peek(h2FrameHeaderLen + 1)
			if err != nil {
				return err
			}
			pre, pad = 1, int(b[h2FrameHeaderLen])
		}
		if flags.Has(http2.FlagHeadersPriority) {
			pre += 5
		}
		if id == 0 || pre+pad > length {
			r.off = true
			return nil
		}
		r.blockID, r.bad, r.teCount = id, false, 0
		// A HEADERS frame above every stream seen opens a stream (the
		// server refuses an even one); otherwise it carries trailers,
		// which the server checks itself, or is an error.
		r.isRequest = id%2 == 1 && id > r.maxID
		if r.isRequest {
			r.maxID = id
		}
		r.hdec.SetEmitEnabled(r.isRequest)
		from, to = h2FrameHeaderLen+pre, h2FrameHeaderLen+length-pad
		r.inBlock = !flags.Has(http2.FlagHeadersEndHeaders)
		ends = !r.inBlock
	case http2.FrameContinuation:
		if !r.inBlock || id != r.blockID {
			r.off = true
			return nil
		}
		from, to = h2FrameHeaderLen, h2FrameHeaderLen+length
		r.inBlock = !flags.Has(http2.FlagContinuationEndHeaders)
		ends = !r.inBlock
	case http2.FrameRSTStream:
		// The client gave up on the stream: the server will send nothing
		// more on it, so nothing is left to reset.
		g.marked.take(id)
	}
	r.pos, r.end, r.decFrom, r.decTo, r.endsBlock = 0, h2FrameHeaderLen+length, from, to, ends
	return nil
}

// endBlock finishes a header block: a malformed request is remembered
// until the server has answered it.
func (g *h2Guard) endBlock() {
	r := &g.r
	if err := r.hdec.Close(); err != nil {
		r.off = true
		return
	}
	// A request the server ignores (above the last stream of a GOAWAY it
	// sent) stays marked until the connection ends: the cap bounds that.
	if r.isRequest && r.bad && !g.marked.add(r.blockID) {
		// The server turns a ConnectionError from the reader into
		// GOAWAY with that code, then closes.
		r.err = http2.ConnectionError(http2.ErrCodeProtocol)
	}
}

// hasDupSettings reports whether a SETTINGS payload (a multiple of 6
// bytes) names a setting twice.
func hasDupSettings(p []byte) bool {
	for i := 0; i < len(p); i += 6 {
		for j := i + 6; j < len(p); j += 6 {
			if p[i] == p[j] && p[i+1] == p[j+1] {
				return true
			}
		}
	}
	return false
}

// rewriteSettings writes into dst (room for h2GuardMaxSettings settings) a
// SETTINGS frame equivalent to frame without duplicates and returns its
// length. Each setting is kept once with its last value, in order of last
// occurrence. An invalid value (RFC 9113 6.5.2) ends in-order processing
// with a connection error, so the frame is rewritten to the first one
// alone: the server then answers with the error code the RFC asks for.
func rewriteSettings(dst, frame []byte) int {
	p := frame[h2FrameHeaderLen:]
	out := dst[:h2FrameHeaderLen]
	for i := 0; i < len(p); i += 6 {
		s := http2.Setting{ID: http2.SettingID(binary.BigEndian.Uint16(p[i:])), Val: binary.BigEndian.Uint32(p[i+2:])}
		if s.Valid() != nil {
			out = append(dst[:h2FrameHeaderLen], p[i:i+6]...)
			break
		}
		last := true
		for j := i + 6; j < len(p); j += 6 {
			if p[i] == p[j] && p[i+1] == p[j+1] {
				last = false
				break
			}
		}
		if last {
			out = append(out, p[i:i+6]...)
		}
	}
	copy(out, frame[:h2FrameHeaderLen])
	n := len(out) - h2FrameHeaderLen
	out[0], out[1], out[2] = byte(n>>16), byte(n>>8), byte(n)
	return len(out)
}

// h2StreamSet holds the malformed requests not yet answered: added by the
// read side, taken by the write side when the server ends the stream. Its
// mutex guards no I/O; n lets the write side skip it when empty.
type h2StreamSet struct {
	n   atomic.Int32
	mu  sync.Mutex
	ids []uint32 // allocated on first use, at most h2GuardMaxMarked
}

// add remembers id; false when the set is full.
func (s *h2StreamSet) add(id uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ids) == h2GuardMaxMarked {
		return false
	}
	if s.ids == nil {
		s.ids = make([]uint32, 0, h2GuardMaxMarked)
	}
	s.ids = append(s.ids, id)
	s.n.Store(int32(len(s.ids)))
	return true
}

// take forgets id and reports whether it was there.
func (s *h2StreamSet) take(id uint32) bool {
	if s.n.Load() == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, v := range s.ids {
		if v == id {
			last := len(s.ids) - 1
			s.ids[i] = s.ids[last]
			s.ids = s.ids[:last]
			s.n.Store(int32(last))
			return true
		}
	}
	return false
}
