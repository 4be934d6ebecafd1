package tlsedge

import (
	"io"
	"os"
	"sync"
	"time"
)

// h2Body is a request body: the reader appends the payloads of the
// stream's DATA frames, the handler reads them. What is buffered is
// bounded by the stream's receive window (h2StreamWindow), which is given
// back as the handler reads (giveBack). A body is allocated per stream,
// not pooled: a transport goroutine may still hold it after the handler
// returned, and then reads fail.
//
// The body idle timeout of HTTP/1.1 applies (frontend.body_timeout): a
// read that waits that long for the client fails with a timeout, which
// the proxy answers 408 (upstream.StatusCode), and the stream is reset.
type h2Body struct {
	c       *h2SrvConn
	id      uint32
	w       *h2RespWriter // for 100 Continue; used under mu, before the stream ends
	timeout time.Duration

	mu           sync.Mutex
	segs         []*[]byte // buffered payload, in h2BodySeg slabs
	off          int       // read offset into segs[0]
	n            int       // bytes buffered
	eof          bool      // END_STREAM received
	err          error     // the stream was reset or the connection ended
	closed       bool      // the handler is done with it: arriving data is dropped
	needContinue bool      // send 100 Continue before the first read waits
	deadline     time.Time // SetReadDeadline's, overriding timeout
	wake         chan struct{}
	timer        *time.Timer
}

// h2BodySeg is the slab size of buffered request data: one frame.
const h2BodySeg = h2MaxFrameSize

var h2SegPool = sync.Pool{New: func() any { b := make([]byte, 0, h2BodySeg); return &b }}

// errH2BodyTimeout is the read error of a body that stopped coming: a
// timeout (net.Error) that is os.ErrDeadlineExceeded, as a read deadline's.
var errH2BodyTimeout error = h2BodyTimeout{}

type h2BodyTimeout struct{}

func (h2BodyTimeout) Error() string {
	return "http2: request body: the client paused longer than the body timeout"
}
func (h2BodyTimeout) Timeout() bool        { return true }
func (h2BodyTimeout) Temporary() bool      { return true }
func (h2BodyTimeout) Is(target error) bool { return target == os.ErrDeadlineExceeded }

// write appends p (the reader's). False when the body no longer wants it:
// the caller gives the connection window back.
func (b *h2Body) write(p []byte) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.err != nil {
		return false
	}
	for len(p) > 0 {
		var last *[]byte
		if k := len(b.segs); k > 0 {
			last = b.segs[k-1]
		}
		if last == nil || len(*last) == cap(*last) {
			last = h2SegPool.Get().(*[]byte)
			b.segs = append(b.segs, last)
		}
		n := min(len(p), cap(*last)-len(*last))
		*last = append(*last, p[:n]...)
		p = p[n:]
		b.n += n
	}
	b.signal()
	return true
}

// end marks the body complete (END_STREAM).
func (b *h2Body) end() {
	b.mu.Lock()
	b.eof = true
	b.signal()
	b.mu.Unlock()
}

// fail ends the body with err (a reset stream, a closed connection);
// buffered data is dropped.
func (b *h2Body) fail(err error) {
	b.mu.Lock()
	if b.err == nil && !b.eof {
		b.err = err
	}
	if b.err != nil {
		b.freeLocked()
	}
	b.signal()
	b.mu.Unlock()
}

// closeRead is the handler's Close, and the end of the stream: what is
// buffered and what still arrives is dropped, and its connection window
// given back. Later reads fail with err.
func (b *h2Body) closeRead(err error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	n := b.n
	b.freeLocked()
	if b.err == nil {
		b.err = err
	}
	b.w = nil
	b.signal()
	b.mu.Unlock()
	if b.c.giveBack(0, int64(n)) {
		b.c.wantFlush(true)
	}
}

// Close is the handler's: the rest of the body is not wanted.
func (b *h2Body) Close() error {
	b.closeRead(errH2BodyClosed)
	return nil
}

func (b *h2Body) freeLocked() {
	for _, s := range b.segs {
		*s = (*s)[:0]
		h2SegPool.Put(s)
	}
	clear(b.segs)
	b.segs, b.off, b.n = b.segs[:0], 0, 0
}

func (b *h2Body) signal() {
	if b.wake != nil {
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
}

// setDeadline is http.ResponseController's SetReadDeadline for this
// stream's body: the zero time leaves the body timeout in force.
func (b *h2Body) setDeadline(t time.Time) {
	b.mu.Lock()
	b.deadline = t
	b.signal()
	b.mu.Unlock()
}

func (b *h2Body) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b.mu.Lock()
	for {
		if b.n > 0 {
			n := b.copyLocked(p)
			b.mu.Unlock()
			if b.c.giveBack(b.id, int64(n)) {
				b.c.wantFlush(true)
			}
			return n, nil
		}
		if b.err != nil {
			err := b.err
			b.mu.Unlock()
			return 0, err
		}
		if b.eof {
			b.mu.Unlock()
			return 0, io.EOF
		}
		if b.needContinue {
			// RFC 9110 10.1.1: the client waits for this before sending.
			b.needContinue = false
			if b.w != nil {
				b.w.sendContinue()
			}
		}
		if !b.waitLocked() {
			b.err = errH2BodyTimeout
		}
	}
}

// waitLocked waits (mu released meanwhile) for data, the end, or the
// deadline; false when the deadline passed.
func (b *h2Body) waitLocked() bool {
	if b.wake == nil {
		b.wake = make(chan struct{}, 1)
	}
	var d time.Duration
	switch {
	case !b.deadline.IsZero():
		d = time.Until(b.deadline)
		if d <= 0 {
			return false
		}
	case b.timeout > 0:
		d = b.timeout
	}
	b.mu.Unlock()
	timedOut := false
	if d == 0 {
		<-b.wake
	} else {
		if b.timer == nil {
			b.timer = time.NewTimer(d)
		} else {
			b.timer.Reset(d)
		}
		select {
		case <-b.wake:
			b.timer.Stop()
		case <-b.timer.C:
			timedOut = true
		}
	}
	b.mu.Lock()
	if timedOut {
		return b.n > 0 || b.eof || b.err != nil || !b.deadline.IsZero() && time.Now().Before(b.deadline)
	}
	return true
}

// copyLocked moves buffered bytes into p; the slabs emptied go back to
// their pool.
func (b *h2Body) copyLocked(p []byte) int {
	n := 0
	for n < len(p) && len(b.segs) > 0 {
		s := *b.segs[0]
		k := copy(p[n:], s[b.off:])
		n += k
		b.off += k
		if b.off == len(s) {
			*b.segs[0] = s[:0]
			h2SegPool.Put(b.segs[0])
			b.segs[0] = nil
			b.segs = b.segs[1:]
			b.off = 0
		}
	}
	b.n -= n
	return n
}
