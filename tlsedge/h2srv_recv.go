package tlsedge

import (
	"encoding/binary"

	"golang.org/x/net/http2"
)

// The frames a client sends (RFC 9113 6), as the reader goroutine
// handles them. Errors are *h2ConnError (GOAWAY, end) or *h2StreamError
// (RST_STREAM); the comments name the RFC's rule where the choice between
// them is not obvious.

// The header block being decoded: what to do with it at END_HEADERS.
type h2Block struct {
	id        uint32
	st        *h2Stream // a request's stream (not yet open)
	trailers  bool
	endStream bool
	after     error // a stream error raised once the block is decoded
}

func (c *h2SrvConn) onHeaders(f h2Frame, p []byte) error {
	if f.id == 0 {
		return connErr(http2.ErrCodeProtocol, "HEADERS on stream 0")
	}
	pad := 0
	if f.flags.Has(http2.FlagHeadersPadded) {
		if len(p) < 1 {
			return connErr(http2.ErrCodeFrameSize, "HEADERS too short for its padding")
		}
		pad, p = int(p[0]), p[1:]
	}
	selfDep := false
	if f.flags.Has(http2.FlagHeadersPriority) {
		if len(p) < 5 {
			return connErr(http2.ErrCodeFrameSize, "HEADERS too short for its priority")
		}
		selfDep = binary.BigEndian.Uint32(p)&(1<<31-1) == f.id
		p = p[5:]
	}
	if pad > len(p) {
		return connErr(http2.ErrCodeProtocol, "HEADERS padding longer than its payload")
	}
	p = p[:len(p)-pad]
	if f.id%2 == 0 {
		return connErr(http2.ErrCodeProtocol, "HEADERS on an even stream")
	}
	b := h2Block{id: f.id, endStream: f.flags.Has(http2.FlagHeadersEndStream)}
	c.mu.Lock()
	st := c.streams[f.id]
	switch {
	case st != nil && st.remoteDone && st.ended.Load():
		c.mu.Unlock()
		return connErr(http2.ErrCodeStreamClosed, "HEADERS on a closed stream") // 5.1
	case st != nil && st.remoteDone:
		b.after = streamErr(f.id, http2.ErrCodeStreamClosed) // half-closed (remote)
	case st != nil && !b.endStream:
		b.after = streamErr(f.id, http2.ErrCodeProtocol) // trailers must end the stream (8.1)
	case st != nil:
		b.trailers = true
	case f.id <= c.maxID:
		if !c.wasReset(f.id) {
			c.mu.Unlock()
			// Closed: by both ends, or reset by the client (5.1). One
			// the server reset is ignored: the client may have sent this
			// before it saw the reset.
			return connErr(http2.ErrCodeStreamClosed, "HEADERS on a closed stream")
		}
	default:
		c.maxID = f.id
		switch {
		case c.goingAway && f.id > c.lastID:
			// After GOAWAY: ignored (6.8), decoded for the HPACK state.
		case len(c.streams) >= h2MaxStreams:
			b.after = streamErr(f.id, http2.ErrCodeRefusedStream) // 5.1.2
		default:
			b.st = c.newStream(f.id)
		}
	}
	c.mu.Unlock()
	if selfDep && b.after == nil {
		b.after = streamErr(f.id, http2.ErrCodeProtocol) // 5.3.1
	}
	if b.after != nil && b.st != nil {
		b.st.recycle()
		b.st = nil
	}
	c.blk = b
	c.hb.reset(b.st, b.trailers)
	c.dec.SetEmitEnabled(b.st != nil || b.trailers)
	c.blockBytes = 0
	return c.blockFragment(p, f.flags.Has(http2.FlagHeadersEndHeaders))
}

func (c *h2SrvConn) onContinuation(f h2Frame, p []byte) error {
	if c.blockID == 0 || f.id != c.blockID {
		return connErr(http2.ErrCodeProtocol, "CONTINUATION without a header block in progress")
	}
	return c.blockFragment(p, f.flags.Has(http2.FlagContinuationEndHeaders))
}

// blockFragment decodes a fragment of the current header block.
func (c *h2SrvConn) blockFragment(p []byte, endHeaders bool) error {
	c.blockBytes += len(p)
	if c.blockBytes > h2MaxBlock {
		return connErr(http2.ErrCodeProtocol, "header block too large")
	}
	if _, err := c.dec.Write(p); err != nil {
		return connErr(http2.ErrCodeCompression, err.Error())
	}
	if !endHeaders {
		c.blockID = c.blk.id
		return nil
	}
	c.blockID = 0
	if err := c.dec.Close(); err != nil {
		return connErr(http2.ErrCodeCompression, err.Error())
	}
	return c.endBlock()
}

// endBlock acts on a decoded header block.
func (c *h2SrvConn) endBlock() error {
	b := c.blk
	c.blk = h2Block{}
	switch {
	case b.after != nil:
		return b.after
	case b.trailers:
		if c.hb.malformed {
			return streamErr(b.id, http2.ErrCodeProtocol)
		}
		// The trailers are checked and dropped, as HTTP/1.1's are: the
		// request is forwarded with a body of known end.
		c.mu.Lock()
		st := c.streams[b.id]
		var body *h2Body
		if st != nil && !st.remoteDone {
			if st.declLen >= 0 && st.gotLen != st.declLen {
				c.mu.Unlock()
				return streamErr(b.id, http2.ErrCodeProtocol)
			}
			st.remoteDone = true
			body = st.body
		}
		c.mu.Unlock()
		if body != nil {
			body.end()
		}
		return nil
	case b.st != nil:
		st := b.st
		ref := c.hb.check(st, b.endStream)
		if ref != nil && ref.status == 0 {
			st.recycle()
			return streamErr(b.id, ref.reset)
		}
		st.refusal = ref
		return c.start(st, b.endStream)
	}
	return nil
}

func (c *h2SrvConn) onData(f h2Frame, p []byte) error {
	if f.id == 0 {
		return connErr(http2.ErrCodeProtocol, "DATA on stream 0")
	}
	data := p
	if f.flags.Has(http2.FlagDataPadded) {
		if len(p) < 1 || int(p[0]) > len(p)-1 {
			return connErr(http2.ErrCodeProtocol, "DATA padding longer than its payload")
		}
		data = p[1 : len(p)-int(p[0])]
	}
	length := int64(f.length) // flow control counts the padding too
	end := f.flags.Has(http2.FlagDataEndStream)
	c.mu.Lock()
	if length > c.recvAvail {
		c.mu.Unlock()
		return connErr(http2.ErrCodeFlowControl, "DATA over the connection window")
	}
	c.recvAvail -= length
	st := c.streams[f.id]
	if st == nil || st.remoteDone {
		// Not open: the bytes are dropped and the window given back.
		queued := c.giveBackLocked(0, length)
		idle := f.id > c.maxID || f.id%2 == 0
		ignore := st == nil && c.wasReset(f.id)
		c.mu.Unlock()
		if queued {
			c.wantFlush(false)
		}
		switch {
		case idle:
			return connErr(http2.ErrCodeProtocol, "DATA on an idle stream") // 5.1
		case ignore:
			return nil
		}
		return streamErr(f.id, http2.ErrCodeStreamClosed)
	}
	if length > st.recvAvail {
		c.giveBackLocked(0, length)
		c.mu.Unlock()
		return streamErr(f.id, http2.ErrCodeFlowControl)
	}
	st.recvAvail -= length
	st.gotLen += int64(len(data))
	if st.declLen >= 0 && (st.gotLen > st.declLen || end && st.gotLen != st.declLen) {
		// 8.1.1: malformed when the DATA do not add up to Content-Length.
		c.giveBackLocked(0, length)
		c.mu.Unlock()
		return streamErr(f.id, http2.ErrCodeProtocol)
	}
	if end {
		st.remoteDone = true
	}
	body := st.body
	// Padding is given back at once; data as the handler reads it.
	queued := c.giveBackLocked(f.id, length-int64(len(data)))
	c.mu.Unlock()
	if len(data) > 0 && !body.write(data) {
		queued = c.giveBack(0, int64(len(data))) || queued
	}
	if end {
		body.end()
	}
	if queued {
		c.wantFlush(false)
	}
	return nil
}

func (c *h2SrvConn) onPriority(f h2Frame, p []byte) error {
	if f.id == 0 {
		return connErr(http2.ErrCodeProtocol, "PRIORITY on stream 0")
	}
	if len(p) != 5 {
		return streamErr(f.id, http2.ErrCodeFrameSize) // 6.3
	}
	if binary.BigEndian.Uint32(p)&(1<<31-1) == f.id {
		return streamErr(f.id, http2.ErrCodeProtocol) // 5.3.1
	}
	return nil // priorities are not acted on: every stream is served at once
}

func (c *h2SrvConn) onRSTStream(f h2Frame, p []byte) error {
	if len(p) != 4 {
		return connErr(http2.ErrCodeFrameSize, "RST_STREAM of the wrong size")
	}
	if f.id == 0 {
		return connErr(http2.ErrCodeProtocol, "RST_STREAM on stream 0")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.id > c.maxID || f.id%2 == 0 {
		return connErr(http2.ErrCodeProtocol, "RST_STREAM on an idle stream")
	}
	if st := c.streams[f.id]; st != nil {
		c.closeStreamLocked(st, errH2StreamClosed)
	}
	return nil
}

func (c *h2SrvConn) onSettings(f h2Frame, p []byte) error {
	if f.id != 0 {
		return connErr(http2.ErrCodeProtocol, "SETTINGS on a stream")
	}
	if f.flags.Has(http2.FlagSettingsAck) {
		if len(p) != 0 {
			return connErr(http2.ErrCodeFrameSize, "SETTINGS ACK with a payload")
		}
		if c.unacked--; c.unacked < 0 {
			return connErr(http2.ErrCodeProtocol, "SETTINGS ACK for nothing")
		}
		return nil
	}
	if len(p)%6 != 0 {
		return connErr(http2.ErrCodeFrameSize, "SETTINGS of the wrong size")
	}
	// In order (6.5.3): a setting that repeats takes its last value. The
	// ACK is queued before mu is released: a handler can only send with
	// the window this frame opens after it, so the ACK goes out first.
	c.mu.Lock()
	defer c.mu.Unlock()
	for ; len(p) > 0; p = p[6:] {
		s := http2.Setting{ID: http2.SettingID(binary.BigEndian.Uint16(p)), Val: binary.BigEndian.Uint32(p[2:])}
		if err := s.Valid(); err != nil {
			if ce, ok := err.(http2.ConnectionError); ok {
				return connErr(http2.ErrCode(ce), "invalid "+s.ID.String())
			}
			return connErr(http2.ErrCodeProtocol, "invalid "+s.ID.String())
		}
		switch s.ID {
		case http2.SettingHeaderTableSize:
			// Nothing to do: the server's encoder has no dynamic table.
		case http2.SettingInitialWindowSize:
			if err := c.setPeerWindowLocked(int64(s.Val)); err != nil {
				return err
			}
		case http2.SettingMaxFrameSize:
			c.peerMaxSize.Store(s.Val)
		case http2.SettingNoRFC7540Priorities:
			if s.Val > 1 {
				return connErr(http2.ErrCodeProtocol, "invalid SETTINGS_NO_RFC7540_PRIORITIES")
			}
		}
	}
	if !c.queue(func(b []byte) []byte { return appendH2Frame(b, 0, http2.FrameSettings, http2.FlagSettingsAck, 0) }) {
		return connErr(http2.ErrCodeEnhanceYourCalm, "SETTINGS faster than their acknowledgements are read")
	}
	c.queued = true
	return nil
}

// setPeerWindowLocked applies a new SETTINGS_INITIAL_WINDOW_SIZE to every
// open stream's send window (6.9.2): they may go negative, not over the
// max. Under mu.
func (c *h2SrvConn) setPeerWindowLocked(v int64) error {
	delta := v - c.peerWin
	c.peerWin = v
	for _, st := range c.streams {
		st.sendWin += delta
		if st.sendWin > h2MaxWindow {
			return connErr(http2.ErrCodeFlowControl, "SETTINGS_INITIAL_WINDOW_SIZE overflows a stream window")
		}
	}
	c.cond.Broadcast()
	return nil
}

func (c *h2SrvConn) onPing(f h2Frame, p []byte) error {
	if len(p) != 8 {
		return connErr(http2.ErrCodeFrameSize, "PING of the wrong size")
	}
	if f.id != 0 {
		return connErr(http2.ErrCodeProtocol, "PING on a stream")
	}
	if f.flags.Has(http2.FlagPingAck) {
		return nil
	}
	var data [8]byte
	copy(data[:], p)
	if !c.queue(func(b []byte) []byte {
		return append(appendH2Frame(b, 8, http2.FramePing, http2.FlagPingAck, 0), data[:]...)
	}) {
		return connErr(http2.ErrCodeEnhanceYourCalm, "PING faster than the answers are read")
	}
	c.queued = true
	return nil
}

func (c *h2SrvConn) onGoAway(f h2Frame, p []byte) error {
	if f.id != 0 {
		return connErr(http2.ErrCodeProtocol, "GOAWAY on a stream")
	}
	if len(p) < 8 {
		return connErr(http2.ErrCodeFrameSize, "GOAWAY too short")
	}
	c.goAway() // the streams open finish, then the connection closes
	return nil
}

func (c *h2SrvConn) onWindowUpdate(f h2Frame, p []byte) error {
	if len(p) != 4 {
		return connErr(http2.ErrCodeFrameSize, "WINDOW_UPDATE of the wrong size")
	}
	inc := int64(binary.BigEndian.Uint32(p) & (1<<31 - 1))
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.id == 0 {
		if inc == 0 {
			return connErr(http2.ErrCodeProtocol, "WINDOW_UPDATE of 0")
		}
		if c.sendWin += inc; c.sendWin > h2MaxWindow {
			return connErr(http2.ErrCodeFlowControl, "connection window over 2^31-1")
		}
		c.cond.Broadcast()
		return nil
	}
	if f.id > c.maxID || f.id%2 == 0 {
		return connErr(http2.ErrCodeProtocol, "WINDOW_UPDATE on an idle stream")
	}
	if inc == 0 {
		return streamErr(f.id, http2.ErrCodeProtocol)
	}
	st := c.streams[f.id]
	if st == nil {
		return nil // closed: may still come (5.1)
	}
	if st.sendWin += inc; st.sendWin > h2MaxWindow {
		return streamErr(f.id, http2.ErrCodeFlowControl)
	}
	c.cond.Broadcast()
	return nil
}
