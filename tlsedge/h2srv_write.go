package tlsedge

import (
	"bufio"
	"runtime"
	"sync"

	"golang.org/x/net/http2"
)

// The write side of an HTTP/2 connection. Handler goroutines write their
// frames into the connection's bufio.Writer under wmu; the reader
// goroutine never waits for wmu (a handler may hold it while the client is
// slow to read) and queues its frames (SETTINGS and PING acknowledgements,
// WINDOW_UPDATE, RST_STREAM, GOAWAY) in ctl, which whoever holds wmu next
// copies into the writer first.
//
// Flushes are coalesced: the goroutine that finds no flush pending
// promises one (flushQueued), lets every other runnable goroutine go
// first (runtime.Gosched), then flushes what they all wrote. On one core
// with hundreds of streams waiting on their backends, the answers that
// one poll of the network makes ready leave in one TLS record and one
// write(2) instead of one each: write(2) on loopback costs ~10 µs, more
// than the rest of a small request.

// h2WriteBufSize is the connection's write buffer: one TLS record.
const h2WriteBufSize = 16 << 10

var h2WriterPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, h2WriteBufSize) }}

func (c *h2SrvConn) initWriter() {
	c.bw = h2WriterPool.Get().(*bufio.Writer)
	c.bw.Reset(c.nc)
}

// releaseWriter returns the writer to its pool; later writes fail.
func (c *h2SrvConn) releaseWriter() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr == nil {
		c.werr = errH2ConnClosed
	}
	if c.bw != nil {
		c.bw.Reset(nil)
		h2WriterPool.Put(c.bw)
		c.bw = nil
	}
}

// wantFlush makes sure a flush follows what the caller wrote (under wmu,
// now released) or queued. Unless another goroutine has promised one, the
// caller flushes: after letting the other runnable goroutines write their
// frames when inline (a handler), in a goroutine of its own otherwise
// (the reader, which must not wait for the client).
func (c *h2SrvConn) wantFlush(inline bool) {
	if !c.flushQueued.CompareAndSwap(false, true) {
		return // the promised flush starts after this point: it covers us
	}
	if !inline {
		go c.flushOwned()
		return
	}
	runtime.Gosched()
	c.flushOwned()
}

// flushOwned writes the queued control frames and flushes.
func (c *h2SrvConn) flushOwned() {
	c.wmu.Lock()
	c.flushQueued.Store(false)
	c.drainLocked()
	if c.werr == nil && c.bw.Buffered() > 0 {
		if err := c.bw.Flush(); err != nil {
			c.werr = err
		}
	}
	c.wmu.Unlock()
}

// lockWriter takes wmu and writes the queued control frames first.
// It reports whether the connection can still be written to.
func (c *h2SrvConn) lockWriter() bool {
	c.wmu.Lock()
	c.drainLocked()
	return c.werr == nil
}

// drainLocked copies the queued control frames into the writer.
func (c *h2SrvConn) drainLocked() {
	if !c.ctlPending.Load() {
		return
	}
	c.qmu.Lock()
	ctl := c.ctl
	c.ctl, c.spare = c.spare[:0], nil
	c.ctlPending.Store(false)
	c.qmu.Unlock()
	if c.werr == nil && len(ctl) > 0 {
		if _, err := c.bw.Write(ctl); err != nil {
			c.werr = err
		}
	}
	c.qmu.Lock()
	if c.spare == nil && cap(ctl) <= 4<<10 {
		c.spare = ctl[:0]
	}
	c.qmu.Unlock()
}

// queue appends a control frame built by add; false when too much is
// queued already (a client that sends PINGs or SETTINGS and does not
// read): the caller ends the connection.
func (c *h2SrvConn) queue(add func([]byte) []byte) bool {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if len(c.ctl) > h2MaxQueued {
		return false
	}
	c.ctl = add(c.ctl)
	c.ctlPending.Store(true)
	return true
}

// The frames the reader and handlers queue.

func (c *h2SrvConn) queueRST(id uint32, code http2.ErrCode) bool {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if len(c.ctl) > h2MaxQueued {
		return false
	}
	c.ctl = appendRSTStream(c.ctl, id, code)
	c.ctlPending.Store(true)
	return true
}

func (c *h2SrvConn) queueWindowUpdate(id uint32, n int64) {
	c.qmu.Lock()
	c.ctl = appendWindowUpdate(c.ctl, id, uint32(n))
	c.ctlPending.Store(true)
	c.qmu.Unlock()
}

// queueGoAway is called with mu held (lastID and goingAway are set with it).
func (c *h2SrvConn) queueGoAway(last uint32, code http2.ErrCode) {
	c.qmu.Lock()
	c.ctl = appendGoAway(c.ctl, last, code)
	c.ctlPending.Store(true)
	c.qmu.Unlock()
}

// writeBlockLocked writes the header block in c.block for stream id as a
// HEADERS frame and as many CONTINUATION frames as the client's frame size
// asks for, all under wmu so that nothing comes between them.
func (c *h2SrvConn) writeBlockLocked(id uint32, end bool) {
	b := c.block
	max := int(c.peerMaxSize.Load())
	typ := http2.FrameHeaders
	for {
		n := min(len(b), max)
		var flags http2.Flags
		if n == len(b) {
			flags |= http2.FlagHeadersEndHeaders
		}
		if end && typ == http2.FrameHeaders {
			flags |= http2.FlagHeadersEndStream
		}
		c.writeFrameLocked(n, typ, flags, id, b[:n])
		b = b[n:]
		if len(b) == 0 {
			return
		}
		typ = http2.FrameContinuation
	}
}

// writeDataLocked writes p as DATA frames of the client's frame size,
// END_STREAM on the last when end; the caller took the flow-control
// window. An empty p with end is one empty DATA frame.
func (c *h2SrvConn) writeDataLocked(id uint32, p []byte, end bool) {
	max := int(c.peerMaxSize.Load())
	for {
		n := min(len(p), max)
		var flags http2.Flags
		if end && n == len(p) {
			flags = http2.FlagDataEndStream
		}
		c.writeFrameLocked(n, http2.FrameData, flags, id, p[:n])
		p = p[n:]
		if len(p) == 0 {
			return
		}
	}
}

func (c *h2SrvConn) writeFrameLocked(n int, typ http2.FrameType, flags http2.Flags, id uint32, payload []byte) {
	if c.werr != nil {
		return
	}
	if c.bw.Available() < h2HeaderLen {
		if err := c.bw.Flush(); err != nil {
			c.werr = err
			return
		}
	}
	// Built in the writer's own buffer: no copy, and nothing escapes.
	c.bw.Write(appendH2Frame(c.bw.AvailableBuffer(), n, typ, flags, id)) //nolint:errcheck // cannot fail: it fits
	if _, err := c.bw.Write(payload); err != nil {
		c.werr = err
	}
}
