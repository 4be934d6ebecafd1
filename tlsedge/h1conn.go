package tlsedge

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// The HTTP/1.1 frontend. net/http's server costs a goroutine hand-off and
// a background read per request and allocates its request anew each
// time; on the hot path of a proxy that is most of the CPU (see
// docs/performance.md). This loop parses strictly into one reused
// http.Request per connection and hands it to the same http.Handler chain
// as HTTP/2, which stays with net/http.

// Frontend timeouts are config.Frontend's, kept in Server.gate.
const (
	// maxDrain is how much of an unread request body is read away so the
	// connection can carry the next request (net/http uses 256 KiB).
	maxDrain = 256 << 10
)

// h1Conn is the serving state of a client connection speaking HTTP/1.x,
// from connPool: the connection holds it while it serves requests and for
// parkAfter after the last one, then gives it back and parks (h1park.go).
type h1Conn struct {
	linger   bool // the last answer left request body unread: close lingering
	srv      *Server
	link     *h1Link
	nc       net.Conn // the *tls.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	hr       headReader
	req      http.Request
	url      url.URL
	base     http.Request // the per-connection fields, copied into req per request
	hdr      http.Header
	body     h1Body
	head     requestHead
	w        h1Writer
	tlsInfo  *tls.ConnectionState // &tlsState, shared by the connection's requests
	tlsState tls.ConnectionState
	src      idleSource
	batch    batcher        // tc's connection, when it can gather records
	deferrer deferredReader // tc's connection, when it can defer a deadline
	// rdl is the read deadline this goroutine last set on nc for an idle
	// wait, zero when it is unknown or none (idleDeadline).
	rdl time.Time
}

// h1Link is what an HTTP/1.x connection holds for as long as it is open,
// busy, idle or parked: the connection tracker knows it by this.
type h1Link struct {
	tc     *tls.Conn
	remote string      // tc.RemoteAddr().String(), the requests' RemoteAddr
	active atomic.Bool // a request is being served
	// idleEnd is when the idle wait under way ends (the idle timeout
	// counted from the end of the last response); zero from the first
	// byte of a request to the end of its response. It survives parking:
	// a client that trickles bytes does not restart it.
	idleEnd time.Time
	// parkable: the server has an idlePoller and this socket can join it.
	parkable bool
	// The idlePoller's, while parked (registered: ever added to its set).
	registered bool
	heapIdx    int
	token      uint64
}

// idleSource is what the bufio.Reader reads: first the byte that ended an
// idle wait, then the connection. While a connection waits for its next
// request it holds no bufio buffers (16 KiB back to the pools), which is
// most connections most of the time.
type idleSource struct {
	conn    net.Conn
	b       [1]byte
	pending bool
}

func (s *idleSource) Read(p []byte) (int, error) {
	if s.pending && len(p) > 0 {
		p[0], s.pending = s.b[0], false
		return 1, nil
	}
	return s.conn.Read(p)
}

// recycle clears what refers to the finished connection and returns the
// state to connPool; maps and scratch slices keep their capacity.
func (c *h1Conn) recycle() {
	clear(c.hdr)
	clear(c.w.hdr)
	c.w.raw.Release()
	c.req, c.base, c.url = http.Request{}, http.Request{}, url.URL{}
	c.tlsState, c.tlsInfo = tls.ConnectionState{}, nil
	c.body, c.head, c.src = h1Body{}, requestHead{}, idleSource{}
	c.srv, c.link, c.nc, c.w.conn, c.batch, c.deferrer = nil, nil, nil, nil, nil, nil
	c.linger, c.rdl = false, time.Time{}
	connPool.Put(c)
}

// acquire takes buffers from the pools for the next request.
func (c *h1Conn) acquire() {
	c.br = readerPool.Get().(*bufio.Reader)
	c.br.Reset(&c.src)
	c.bw = writerPool.Get().(*bufio.Writer)
	c.bw.Reset(c.nc)
	c.hr.br, c.w.bw = c.br, c.bw
}

// release gives the buffers back; the caller has flushed bw and knows br
// holds nothing unread.
func (c *h1Conn) release() {
	if c.br == nil {
		return
	}
	c.br.Reset(nil)
	c.bw.Reset(nil)
	readerPool.Put(c.br)
	writerPool.Put(c.bw)
	c.br, c.bw, c.hr.br, c.w.bw = nil, nil, nil, nil
}

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 8<<10) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 8<<10) }}
	// connPool recycles the per-connection state (request, header maps,
	// parser scratch): a connection per request, as with TLS handshake
	// floods, would otherwise allocate ~4 KB of it each time.
	connPool = sync.Pool{New: func() any {
		return &h1Conn{hdr: make(http.Header, smallHeader), w: h1Writer{respFields: respFields{hdr: make(http.Header, smallHeader)}}}
	}}
)

// serveH1 serves an HTTP/1.x connection until it closes.
func (s *Server) serveH1(tc *tls.Conn) {
	l := &h1Link{tc: tc, remote: tc.RemoteAddr().String(), parkable: s.idle.Load() != nil && canPark(tc)}
	s.metrics.ConnOpened("h1")
	s.trackConn(l, true)
	s.runH1(l)
}

// How runH1 leaves a connection.
const (
	h1Closed   = iota // closed, state recycled
	h1Hijacked        // the handler owns the connection and its buffers
	h1Parked          // idle: state recycled, handed to the idlePoller
)

// runH1 runs the request loop on l until the connection closes, is
// hijacked or parks.
func (s *Server) runH1(l *h1Link) {
	tc := l.tc
	c := connPool.Get().(*h1Conn)
	c.srv, c.link, c.nc = s, l, tc
	c.tlsState = tc.ConnectionState()
	c.tlsInfo = &c.tlsState
	// The request's context is Background: this server does not watch a
	// client while its backend thinks (see docs/performance.md), and a
	// shared or per-request context would cost every request.
	c.base = http.Request{RemoteAddr: l.remote, TLS: c.tlsInfo}
	c.src = idleSource{conn: tc}
	c.w.conn = c
	c.batch, _ = tc.NetConn().(batcher)
	c.deferrer, _ = tc.NetConn().(deferredReader)

	end := h1Closed
	defer func() {
		switch end {
		case h1Hijacked:
			s.trackConn(l, false)
			s.metrics.ConnClosed("h1")
		case h1Parked:
			c.release()
			c.recycle()
			s.parkH1(l)
		default:
			s.trackConn(l, false)
			if c.linger {
				lingerClose(tc)
			}
			tc.Close()
			c.release()
			c.recycle()
			s.metrics.ConnClosed("h1")
		}
	}()
	for {
		switch c.waitRequest() {
		case waitEnd:
			return
		case waitPark:
			end = h1Parked
			return
		}
		keep, hj := c.serveOne()
		if hj {
			end = h1Hijacked
			return
		}
		l.active.Store(false)
		if !keep || s.shuttingDown.Load() {
			return
		}
	}
}

// What waitRequest saw.
const (
	waitGot  = iota // the next request's first byte (or it was buffered)
	waitEnd         // EOF, error, idle timeout or shutdown: close
	waitPark        // silence for parkAfter: park until link.idleEnd
)

// waitRequest waits for the first byte of the next request, up to the
// idle timeout, or up to parkAfter when the connection can park.
func (c *h1Conn) waitRequest() int {
	if c.srv.shuttingDown.Load() {
		return waitEnd
	}
	if c.br == nil || c.br.Buffered() == 0 {
		// Nothing pipelined: wait without buffers.
		c.release()
		l := c.link
		now := time.Now()
		if l.idleEnd.IsZero() {
			l.idleEnd = now.Add(c.srv.gate.cur().idleTimeout)
		}
		deadline := l.idleEnd
		park := l.parkable && now.Add(parkAfter).Before(deadline)
		if park {
			deadline = now.Add(parkAfter)
		}
		c.idleDeadline(deadline, now)
		if n, err := c.nc.Read(c.src.b[:]); n == 0 {
			// A timeout leaves crypto/tls ready to read on (it keeps a
			// partial record), and no whole record in its buffers.
			if park && errors.Is(err, os.ErrDeadlineExceeded) && !c.srv.shuttingDown.Load() {
				return waitPark
			}
			return waitEnd // EOF, idle timeout, reset: the connection is done
		}
		l.idleEnd = time.Time{}
		c.src.pending = true
		c.acquire()
	}
	c.link.active.Store(true)
	if c.srv.shuttingDown.Load() {
		return waitEnd
	}
	return waitGot
}

// serveOne reads and answers one request. keep reports whether the
// connection may carry another; hijacked that the handler took it.
func (c *h1Conn) serveOne() (keep, hijacked bool) {
	if c.deferrer != nil {
		// Set only if the head is not all buffered (lazydeadline.go);
		// meanwhile the idle wait's deadline, if any, stays.
		c.deferrer.deferReadDeadline(c.srv.gate.cur().headerTimeout)
	} else {
		c.nc.SetReadDeadline(time.Now().Add(c.srv.gate.cur().headerTimeout)) //nolint:errcheck
	}
	r := &c.req
	*r = c.base
	c.url = url.URL{}
	r.URL = &c.url
	clear(c.hdr)
	r.Header = c.hdr
	c.head = requestHead{}
	err := c.hr.read(r, &c.head)
	c.headDone(err == nil && c.head.length == 0)
	if err != nil {
		c.refuse(err)
		return false, false
	}
	var cont func() error
	if c.head.expect100 {
		cont = c.sendContinue
	}
	c.body.reset(c.br, &c.head, cont)
	c.body.conn, c.body.timeout = c.nc, c.srv.gate.cur().bodyTimeout
	if c.head.length != 0 {
		r.Body = &c.body
	} else {
		r.Body = http.NoBody
	}
	c.w.reset(r.Method == http.MethodHead, !c.head.keepAlive)
	if !c.serveHandler(r) {
		return false, false
	}
	if c.w.hijacked {
		return false, true
	}
	keep = c.w.finish()
	defer c.body.disarm()
	if keep && !c.body.drain(maxDrain) {
		keep = false
	}
	// Answered without reading the whole body (413, 401 before an upload):
	// closing now would reset the connection while the client still
	// sends, and it would see the reset instead of our answer.
	c.linger = !keep && !c.body.done && c.body.continue_ == nil
	return keep, false
}

// lingerClose ends the sending side (close_notify) and reads what the
// client still sends, for up to lingerTime or lingerBytes, before the
// caller closes: net/http's defence against losing a response to a TCP
// reset.
func lingerClose(tc *tls.Conn) {
	if tc.CloseWrite() != nil {
		return
	}
	tc.SetReadDeadline(time.Now().Add(lingerTime)) //nolint:errcheck // a dead conn ends the copy
	io.CopyN(io.Discard, tc, lingerBytes)          //nolint:errcheck // best effort
}

// Lingering close bounds: enough for the client to read the answer that
// went out before its upload stops.
const (
	lingerTime  = 500 * time.Millisecond
	lingerBytes = 1 << 20
)

// serveHandler runs the handler chain; a panic is logged with its stack and
// ends the connection, as net/http does.
func (c *h1Conn) serveHandler(r *http.Request) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				return
			}
			c.srv.log.WithField("panic", p).WithField("stack", string(debug.Stack())).Error("handler panic; connection closed")
			ok = false
		}
	}()
	c.srv.handler.ServeHTTP(&c.w, r)
	return true
}

// sendContinue answers "Expect: 100-continue" when the handler first reads
// the body, so a client that is refused never sends it.
func (c *h1Conn) sendContinue() error {
	if c.w.wroteHeader {
		return nil
	}
	if _, err := c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
		return err
	}
	return c.bw.Flush()
}

// refuse answers a request head that was not accepted, then the caller
// closes. A read error (timeout, client gone) gets no answer.
func (c *h1Conn) refuse(err error) {
	he, ok := err.(*headError)
	if !ok {
		return
	}
	c.w.reset(false, true)
	c.srv.logRefused(&c.req, he)
	writePage(&c.w, he.status, http.StatusText(he.status), "The request was malformed and was not forwarded.")
	c.w.finish()
}

// connTracker knows the live HTTP/1.1 connections, for a graceful shutdown.
// Its lock is taken when a connection opens or closes, never per request.
type connTracker struct {
	mu    sync.Mutex
	conns map[*h1Link]struct{}
}

func (s *Server) trackConn(c *h1Link, add bool) {
	t := &s.conns
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conns == nil {
		t.conns = map[*h1Link]struct{}{}
	}
	if add {
		t.conns[c] = struct{}{}
	} else {
		delete(t.conns, c)
	}
}

// closeIdle wakes every connection waiting for a request, parked or not,
// so that it sees the shutdown flag and closes; busy ones close after
// their response. It returns how many connections are left.
func (s *Server) closeIdle() int {
	s.idle.Load().shutdown() // closes the parked ones
	t := &s.conns
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		if !c.active.Load() {
			c.tc.SetReadDeadline(time.Now()) //nolint:errcheck
		}
	}
	return len(t.conns)
}

// closeAll cuts every remaining connection (the grace period is over).
func (s *Server) closeAll() {
	t := &s.conns
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		c.tc.Close()
	}
}

// waitConns waits until every HTTP/1.1 connection has closed, or cuts
// the rest when ctx ends. It polls: shutdown is rare and a connection
// closing must not pay for signalling it.
func (s *Server) waitConns(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for s.closeIdle() > 0 {
		select {
		case <-ctx.Done():
			s.closeAll()
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}
