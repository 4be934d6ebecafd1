package tlsedge

import (
	"encoding/binary"

	"golang.org/x/net/http2"
)

// h2Writer is the write side of an h2Guard, guarded by its wmu. The server
// writes whole frames, but through a bufio.Writer: one Write may hold
// several frames or part of one, so frame headers are tracked across
// Writes.
type h2Writer struct {
	hdr     [h2FrameHeaderLen]byte
	nhdr    int  // bytes of hdr seen so far
	hdrSent bool // those bytes went out already (else they are held back)
	left    int  // payload bytes of the current frame still to come
	id      uint32
	typ     http2.FrameType
	flags   http2.Flags
	drop    bool // the current frame is on a stream the guard reset

	// resetAfter is a malformed request whose answer ended with a HEADERS
	// frame (END_STREAM) whose block continues: the reset waits for
	// END_HEADERS, as nothing may come between a block's frames.
	resetAfter uint32
	// reset remembers the streams the guard reset (a ring; 0 is free);
	// nreset counts its entries.
	reset  [h2GuardResetRing]uint32
	nreset int
	next   int

	// The output of one Write when it differs from its input: runs of p
	// from start on, with frames dropped or added. out is reused.
	out    []byte
	edited bool
	start  int
}

// Write passes the server's bytes to the client unchanged, except that a
// RST_STREAM(PROTOCOL_ERROR) follows the frame that ends the answer to a
// malformed request, and frames on streams so reset are dropped. It
// reports len(p) written when everything it sent went out.
func (g *h2Guard) Write(p []byte) (int, error) {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	w := &g.w
	w.out, w.edited, w.start = w.out[:0], false, 0
	stop := len(p) // p[stop:] is a held-back partial frame header
	for i := 0; i < len(p); {
		if w.left > 0 {
			k := min(w.left, len(p)-i)
			if w.drop {
				w.cut(p, i, i+k)
			}
			i += k
			w.left -= k
			if w.left == 0 {
				g.frameEnd(p, i)
			}
			continue
		}
		held := w.nhdr
		if held == 0 {
			// A frame on a stream the guard reset is dropped whole, so
			// while there are such streams a header is sent only once
			// complete. (The ring cannot change within a header.)
			w.hdrSent = w.nreset == 0
		}
		need := h2FrameHeaderLen - held
		if len(p)-i < need {
			copy(w.hdr[held:], p[i:])
			w.nhdr += len(p) - i
			if !w.hdrSent {
				stop = i
			}
			break
		}
		copy(w.hdr[held:], p[i:i+need])
		w.nhdr = 0
		w.parseHeader()
		if w.drop {
			w.cut(p, i, i+need)
		} else if held > 0 && !w.hdrSent {
			w.insert(p, i, w.hdr[:held])
		}
		i += need
		if w.left == 0 {
			g.frameEnd(p, i)
		}
	}
	if !w.edited {
		if stop > 0 {
			if n, err := g.Conn.Write(p[:stop]); err != nil {
				return n, err
			}
		}
		return len(p), nil
	}
	w.out = append(w.out, p[w.start:stop]...)
	var err error
	if len(w.out) > 0 {
		_, err = g.Conn.Write(w.out)
	}
	if cap(w.out) > 32<<10 {
		w.out = nil // a rare large edit: do not keep its buffer
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *h2Writer) parseHeader() {
	h := &w.hdr
	w.left = int(h[0])<<16 | int(h[1])<<8 | int(h[2])
	w.typ, w.flags = http2.FrameType(h[3]), http2.Flags(h[4])
	w.id = binary.BigEndian.Uint32(h[5:]) & (1<<31 - 1)
	w.drop = false
	if w.nreset > 0 && w.id != 0 {
		for _, id := range w.reset {
			if id == w.id {
				w.drop = true
				break
			}
		}
	}
}

// frameEnd runs when the frame ending at p[at] (its last byte before at)
// is complete.
func (g *h2Guard) frameEnd(p []byte, at int) {
	w := &g.w
	if w.drop {
		w.drop = false
		if w.typ == http2.FrameRSTStream {
			w.forget(w.id) // the server's last word on that stream
		}
		return
	}
	switch w.typ {
	case http2.FrameData:
		if w.flags.Has(http2.FlagDataEndStream) && g.marked.take(w.id) {
			w.inject(p, at, w.id)
		}
	case http2.FrameHeaders:
		if w.flags.Has(http2.FlagHeadersEndStream) && g.marked.take(w.id) {
			if w.flags.Has(http2.FlagHeadersEndHeaders) {
				w.inject(p, at, w.id)
			} else {
				w.resetAfter = w.id
			}
		}
	case http2.FrameContinuation:
		if w.resetAfter != 0 && w.flags.Has(http2.FlagContinuationEndHeaders) {
			w.inject(p, at, w.resetAfter)
			w.resetAfter = 0
		}
	case http2.FrameRSTStream:
		// The server reset the stream itself (REFUSED_STREAM, say): it
		// is closed, and nothing may follow on it (RFC 9113 5.1).
		g.marked.take(w.id)
	}
}

// cut leaves p[from:to] out of the output.
func (w *h2Writer) cut(p []byte, from, to int) {
	w.out = append(w.out, p[w.start:from]...)
	w.start, w.edited = to, true
}

// insert puts b into the output before p[at].
func (w *h2Writer) insert(p []byte, at int, b []byte) {
	w.out = append(w.out, p[w.start:at]...)
	w.out = append(w.out, b...)
	w.start, w.edited = at, true
}

// inject puts RST_STREAM(PROTOCOL_ERROR) for id into the output before
// p[at], a frame boundary, and remembers id as reset.
func (w *h2Writer) inject(p []byte, at int, id uint32) {
	var f [h2FrameHeaderLen + 4]byte
	f[2], f[3] = 4, byte(http2.FrameRSTStream)
	binary.BigEndian.PutUint32(f[5:], id)
	binary.BigEndian.PutUint32(f[9:], uint32(http2.ErrCodeProtocol))
	w.insert(p, at, f[:])
	if w.reset[w.next] == 0 {
		w.nreset++
	}
	w.reset[w.next] = id
	w.next = (w.next + 1) % len(w.reset)
}

func (w *h2Writer) forget(id uint32) {
	for i, v := range w.reset {
		if v == id {
			w.reset[i] = 0
			w.nreset--
			return
		}
	}
}
