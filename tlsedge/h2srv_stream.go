package tlsedge

import (
	"context"
	"net/http"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/net/http2"
)

// h2Stream is one request and its response. The reader opens it (and
// registers it in c.streams); a handler goroutine serves it and, when the
// handler returns, finishes the response and recycles the stream. The
// request, its header map and the response writer are reused through
// h2StreamPool, as HTTP/1.1 reuses them per connection; the request body,
// which a transport goroutine may still hold after the handler returned,
// is allocated per stream.
type h2Stream struct {
	c  *h2SrvConn
	id uint32

	// Under c.mu.
	sendWin    int64 // what may still be sent (the client's window)
	recvAvail  int64 // what the client may still send
	recvCredit int64 // consumed by the handler, not yet given back
	remoteDone bool  // END_STREAM received, or the stream was reset
	closed     bool  // no longer in c.streams

	reset atomic.Bool // reset by either side: nothing more goes out
	// ended is set when END_STREAM is written, before it can reach the
	// client: from then on the stream counts as closed for what the
	// client sends on it, though its handler has not finished.
	ended atomic.Bool

	// The reader's.
	declLen int64 // Content-Length, -1 for none
	gotLen  int64
	body    *h2Body // nil: the request has no body

	refusal *h2Refusal // answered by the server instead of the handler chain
	ctx     *h2Ctx
	blank   http.Request // a zero request with ctx as its context
	req     http.Request
	url     url.URL
	hdr     http.Header
	vals    []string // backing array of hdr's values
	w       h2RespWriter
}

var h2StreamPool = sync.Pool{New: func() any {
	st := &h2Stream{hdr: make(http.Header, smallHeader), vals: make([]string, 0, 16), ctx: new(h2Ctx)}
	st.blank = *new(http.Request).WithContext(st.ctx)
	st.w.hdr = make(http.Header, smallHeader)
	return st
}}

// newStream takes a stream from the pool for id.
func (c *h2SrvConn) newStream(id uint32) *h2Stream {
	st := h2StreamPool.Get().(*h2Stream)
	st.c, st.id = c, id
	st.declLen = -1
	if !st.ctx.reuse(c.ctx) {
		st.ctx = &h2Ctx{conn: c.ctx}
		st.blank = *new(http.Request).WithContext(st.ctx)
	}
	st.req = st.blank
	return st
}

// recycle clears what refers to the finished request and pools st.
func (st *h2Stream) recycle() {
	clear(st.hdr)
	clear(st.w.hdr)
	clear(st.vals)
	st.vals = st.vals[:0]
	st.c, st.id, st.body, st.refusal = nil, 0, nil, nil
	st.sendWin, st.recvAvail, st.recvCredit = 0, 0, 0
	st.remoteDone, st.closed = false, false
	st.reset.Store(false)
	st.ended.Store(false)
	st.declLen, st.gotLen = -1, 0
	st.req, st.url = http.Request{}, url.URL{}
	st.w.raw.Release()
	st.w = h2RespWriter{respFields: respFields{hdr: st.w.hdr, raw: st.w.raw}, buf: st.w.buf[:0], rawBlock: st.w.rawBlock[:0]}
	h2StreamPool.Put(st)
}

// addField adds a request field, its value slice carved from vals.
func (st *h2Stream) addField(key, value string) {
	st.vals = append(st.vals, value)
	i := len(st.vals) - 1
	if old, ok := st.hdr[key]; ok {
		st.hdr[key] = append(old, value)
		return
	}
	st.hdr[key] = st.vals[i : i+1 : i+1]
}

// start registers st (its head checked) and has its handler run: by an
// idle worker goroutine of the connection, or a new one. refused streams
// get the server's answer instead.
func (c *h2SrvConn) start(st *h2Stream, endStream bool) error {
	r := &st.req
	r.URL = &st.url
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
	r.Header = st.hdr
	r.RemoteAddr = c.remoteAddr
	r.TLS = c.tlsState
	if endStream {
		r.Body = http.NoBody
	} else {
		st.body = &h2Body{c: c, id: st.id, w: &st.w, timeout: c.opts.body}
		st.body.needContinue = st.refusal == nil && hasToken(c.hb.expect, "100-continue")
		r.Body = st.body
		r.ContentLength = c.hb.cl
		st.declLen = c.hb.cl
	}
	st.w.reset(st, r.Method == http.MethodHead)

	c.mu.Lock()
	if c.running >= h2MaxHandlers {
		c.mu.Unlock()
		st.recycle()
		return connErr(http2.ErrCodeEnhanceYourCalm, "too many handlers: streams reset faster than they finish")
	}
	st.sendWin = c.peerWin
	st.recvAvail = h2StreamWindow
	st.remoteDone = endStream
	c.streams[st.id] = st
	c.running++
	var w chan *h2Stream
	if n := len(c.workers); n > 0 {
		w = c.workers[n-1]
		c.workers = c.workers[:n-1]
	}
	c.mu.Unlock()
	if w != nil {
		w <- st
		return nil
	}
	c.handlers.Add(1)
	go c.work(st)
	return nil
}

// work is a worker goroutine: it serves st, then waits among the
// connection's idle workers for the next stream, until the connection
// ends. Reusing goroutines spares each stream the growth of a new one's
// stack through the handler chain (runtime.newstack, 6 % of the S4
// profile with a goroutine per stream).
func (c *h2SrvConn) work(st *h2Stream) {
	defer c.handlers.Done()
	next := make(chan *h2Stream, 1)
	for st != nil {
		c.run(st)
		if !c.endStream(st, next) {
			return
		}
		st = <-next
	}
}

// run serves one stream: the handler chain, then the end of the
// response. A panic ends the stream with RST_STREAM(INTERNAL_ERROR) and is
// logged with its stack (http.ErrAbortHandler silently), as net/http does.
func (c *h2SrvConn) run(st *h2Stream) {
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				c.logf("http2: panic serving %v: %v\n%s", c.remoteAddr, p, buf)
			}
			st.w.abort()
		}
	}()
	if st.refusal != nil {
		c.refuse(st, &st.req)
	} else {
		c.srv.handler.ServeHTTP(&st.w, &st.req)
	}
	st.w.finish()
}

func (c *h2SrvConn) logf(format string, args ...any) {
	if c.srv.errorLog != nil {
		c.srv.errorLog.Printf(format, args...)
	}
}

// refuse answers a request the server does not pass on.
func (c *h2SrvConn) refuse(st *h2Stream, r *http.Request) {
	ref := st.refusal
	if ref.status == 0 {
		return
	}
	if c.opts.refused != nil {
		c.opts.refused(r, badHead(ref.status, ref.reason))
	}
	w := &st.w
	w.hdr["Content-Type"] = []string{"text/plain; charset=utf-8"}
	w.WriteHeader(ref.status)
	w.Write([]byte(ref.reason)) //nolint:errcheck // the client may be gone
}

// endStream runs when the handler is done and the response finished: the
// stream closes (with RST_STREAM(NO_ERROR) when the client is still
// sending its request: RFC 9113 8.1), the connection may become idle, and
// the stream goes back to the pool. It reports whether the worker next
// joins the idle ones (false: it ends).
func (c *h2SrvConn) endStream(st *h2Stream, next chan *h2Stream) bool {
	code, rst := http2.ErrCodeNo, false
	if st.w.resetCode != 0 {
		code, rst = st.w.resetCode, true
	}
	if st.refusal != nil && st.refusal.reset != 0 {
		code, rst = st.refusal.reset, true
	}
	body := st.body
	if body != nil {
		body.closeRead(errH2StreamClosed)
	}
	c.mu.Lock()
	if !st.closed {
		rst = rst || !st.remoteDone
		if rst {
			st.reset.Store(true)
			c.queueRST(st.id, code)
			c.noteReset(st.id)
		}
		delete(c.streams, st.id)
		st.closed = true
		st.remoteDone = true
	} else {
		rst = false
	}
	c.running--
	c.wakeIfIdleLocked()
	st.recycle()
	park := !c.closed && len(c.workers) < h2MaxIdleWorkers
	if park {
		c.workers = append(c.workers, next)
	}
	c.mu.Unlock()
	if rst {
		c.wantFlush(true)
	}
	return park
}

// h2MaxIdleWorkers bounds the goroutines a connection keeps waiting for
// its next streams.
const h2MaxIdleWorkers = 32

// resetStream ends stream id with a stream error found by the reader:
// RST_STREAM(code), and the handler, if one runs, sees its context end, its
// body fail and its writes fail.
func (c *h2SrvConn) resetStream(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	if st := c.streams[id]; st != nil {
		c.closeStreamLocked(st, streamErr(id, code))
	}
	c.noteReset(id)
	ok := c.queueRST(id, code)
	c.mu.Unlock()
	if !ok {
		c.fail(http2.ErrCodeEnhanceYourCalm)
	}
}

// closeStreamLocked removes st from the open streams: reset by the
// client, by the reader, or left open when the connection ends.
func (c *h2SrvConn) closeStreamLocked(st *h2Stream, err error) {
	if st.closed {
		return
	}
	st.closed, st.remoteDone = true, true
	st.reset.Store(true)
	delete(c.streams, st.id)
	st.ctx.cancel(context.Canceled)
	if st.body != nil {
		st.body.fail(err)
	}
	c.cond.Broadcast()
}

// takeSendWindow waits until st may send, then takes up to want bytes of
// the stream's and the connection's windows. Before waiting, what was
// written goes out: the client opens windows only for what it received.
func (c *h2SrvConn) takeSendWindow(st *h2Stream, want int) (int, error) {
	c.mu.Lock()
	flushed := false
	for {
		if st.closed || c.closed {
			c.mu.Unlock()
			return 0, errH2StreamClosed
		}
		if n := min(int64(want), st.sendWin, c.sendWin); n > 0 {
			st.sendWin -= n
			c.sendWin -= n
			c.mu.Unlock()
			return int(n), nil
		}
		if !flushed {
			c.mu.Unlock()
			c.flushOwned()
			c.mu.Lock()
			flushed = true
			continue
		}
		c.cond.Wait()
	}
}

// giveBack returns n bytes of receive window: consumed by the handler of
// stream id (0: discarded, the connection's window only). WINDOW_UPDATE
// frames are queued once an eighth of a window is owed, so that a client
// streaming a body never waits for one and small bodies cost none; true
// when one was queued (the caller flushes). The stream is named by id: by
// the time a late read gives bytes back, it may be closed.
func (c *h2SrvConn) giveBack(id uint32, n int64) bool {
	if n <= 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.giveBackLocked(id, n)
}

func (c *h2SrvConn) giveBackLocked(id uint32, n int64) (queued bool) {
	if c.closed {
		return false
	}
	c.recvCredit += n
	if c.recvCredit >= h2ConnWindow/8 {
		c.queueWindowUpdate(0, c.recvCredit)
		c.recvAvail += c.recvCredit
		c.recvCredit = 0
		queued = true
	}
	if st := c.streams[id]; id != 0 && st != nil && !st.remoteDone {
		st.recvCredit += n
		if st.recvCredit >= h2StreamWindow/8 {
			c.queueWindowUpdate(st.id, st.recvCredit)
			st.recvAvail += st.recvCredit
			st.recvCredit = 0
			queued = true
		}
	}
	return queued
}
