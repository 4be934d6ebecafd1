package tlsedge

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Server is the HTTP/2 frontend: the handler and what its connections
// share. Build it with newH2Server; it is safe for concurrent use and
// holds no connection state (h2Conns tracks connections for shutdowns).
type h2Server struct {
	handler  http.Handler
	errorLog *log.Logger // handler panics, as net/http logs them; nil: not logged
	dates    dateCache
}

// newH2Server returns the HTTP/2 server of hs's handler; hs.ErrorLog gets
// handler panics. hs is only read.
func newH2Server(hs *http.Server) (*h2Server, error) {
	return &h2Server{handler: hs.Handler, errorLog: hs.ErrorLog}, nil
}

// h2TLSStater is a connection with TLS state (*tls.Conn), for r.TLS.
type h2TLSStater interface {
	ConnectionState() tls.ConnectionState
}

// h2ConnOptions are one connection's settings, read when it starts (a
// reload applies to the next connections).
type h2ConnOptions struct {
	idle   time.Duration // no stream open for this long: GOAWAY, close; 0: no limit
	header time.Duration // the client preface and first SETTINGS must arrive within it
	body   time.Duration // a request body pausing longer fails its read (408 or reset); 0: none
	// refused, when set, records a request the server answers by itself
	// (431 for a head over the limit) in the access log.
	refused func(r *http.Request, he *headError)
}

// h2SrvConn is one HTTP/2 connection. Its reader goroutine (serve) owns
// the read side; handler goroutines write their own frames (h2srv_write.go).
//
// Locks: mu guards the streams, flow control and connection state, wmu
// the buffered writer and the header block being encoded, qmu the queued
// control frames; each request body has its own. They nest only as
// mu > body, body > wmu > qmu and mu > qmu: mu and wmu are never held
// together, and nothing takes mu under a body's lock.
type h2SrvConn struct {
	srv        *h2Server
	nc         net.Conn
	opts       h2ConnOptions
	tlsState   *tls.ConnectionState
	remoteAddr string
	ctx        context.Context
	handlers   sync.WaitGroup // worker goroutines

	// The reader's own.
	br          *bufio.Reader
	dec         *hpack.Decoder
	hb          h2HeadBuilder // the header block being decoded
	blk         h2Block       // what to do with it
	blockID     uint32        // stream of an unfinished header block (CONTINUATION expected)
	blockBytes  int           // its compressed bytes so far
	sawSettings bool
	unacked     int  // SETTINGS sent and not acknowledged
	queued      bool // control frames queued since the last wantFlush

	// Under mu.
	mu          sync.Mutex
	cond        sync.Cond // signalled when send windows grow or streams close
	streams     map[uint32]*h2Stream
	running     int              // handlers running (reset streams' included)
	workers     []chan *h2Stream // idle worker goroutines, each waiting on its channel
	maxID       uint32           // highest stream the client opened
	sendWin     int64            // connection send window
	peerWin     int64            // the client's SETTINGS_INITIAL_WINDOW_SIZE
	recvAvail   int64            // what the client may still send on the connection
	recvCredit  int64            // consumed or discarded, not yet given back
	goingAway   bool             // GOAWAY sent: no new streams
	lastID      uint32           // the last stream of that GOAWAY
	closed      bool
	idleSince   time.Time
	resets      [32]uint32 // streams the server reset lately (noteReset)
	nextReset   int
	deadline    time.Time // the read deadline set
	peerMaxSize atomic.Uint32

	// The write side: h2srv_write.go.
	wmu         sync.Mutex
	bw          *bufio.Writer
	block       []byte // the header block being encoded (h2srv_hpack.go)
	sizeUpdated bool   // the first block said the table size is 0
	werr        error
	lower       map[string]string // lower-case names of fields not in h2RespFields
	flushQueued atomic.Bool
	qmu         sync.Mutex
	ctl, spare  []byte // control frames waiting for the writer
	ctlPending  atomic.Bool
}

var h2ReaderPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, h2ReadBufSize) }}

// serveConn serves HTTP/2 on nc (a *tls.Conn whose handshake chose "h2")
// until the connection ends, then closes it. Request contexts carry ctx's
// values; cancelling ctx closes the connection (a hard stop). conns, when
// set, tracks the connection for a graceful shutdown; false from it
// (shutting down) closes nc at once.
func (h *h2Server) serveConn(ctx context.Context, nc net.Conn, opts h2ConnOptions, conns *h2Conns) {
	c := &h2SrvConn{srv: h, nc: nc, opts: opts, remoteAddr: nc.RemoteAddr().String()}
	if cs, ok := nc.(h2TLSStater); ok {
		st := cs.ConnectionState()
		c.tlsState = &st
	}
	c.cond.L = &c.mu
	c.streams = make(map[uint32]*h2Stream)
	c.sendWin, c.peerWin, c.recvAvail = h2InitialWindow, h2InitialWindow, h2ConnWindow
	c.peerMaxSize.Store(h2MaxFrameSize)
	c.idleSince = time.Now()
	// The server preface goes first, before a GOAWAY a shutdown may queue.
	c.ctl = appendServerPreface(c.ctl)
	c.unacked = 1
	c.ctlPending.Store(true)
	c.ctx = ctx
	c.br = h2ReaderPool.Get().(*bufio.Reader)
	c.br.Reset(nc)
	c.initWriter()
	if conns != nil {
		if !conns.add(c) {
			c.shut(false)
			return
		}
		defer conns.done(c)
	}
	// Cancelling ctx is a hard stop: the connection closes, its streams'
	// contexts end.
	defer context.AfterFunc(ctx, func() { nc.Close() })()
	c.dec = hpack.NewDecoder(h2TableSize, c.hb.emit)
	c.dec.SetMaxStringLength(h2MaxString)
	c.serve()
}

// serve is the reader loop.
func (c *h2SrvConn) serve() {
	graceful := false
	defer func() { c.shut(graceful) }()
	c.nc.SetReadDeadline(time.Now().Add(c.opts.header)) //nolint:errcheck // a dead conn fails the read
	if err := c.readPreface(); err != nil {
		if errors.Is(err, errH2BadPreface) {
			c.fail(http2.ErrCodeProtocol)
		}
		return
	}
	c.flushOwned() // the server's SETTINGS, without waiting for the client's
	for {
		if c.br.Buffered() < h2HeaderLen {
			// About to wait for the client: what the frames read so far
			// made us queue goes out first. ctlPending alone does not
			// say so: a handler that took the writer meanwhile
			// (lockWriter) may have moved our frames into the buffer
			// and not flushed it (one whose stream we just reset gives
			// up at once).
			if c.queued || c.ctlPending.Load() {
				c.queued = false
				c.wantFlush(false)
			}
			if !c.beforeWait() {
				graceful = true
				return
			}
		}
		f, p, err := h2ReadFrame(c.br)
		if err == nil {
			err = c.processFrame(f, p)
			if err == nil {
				continue
			}
		}
		var se *h2StreamError
		var ce *h2ConnError
		var ne net.Error
		switch {
		case errors.As(err, &se):
			c.resetStream(se.id, se.code)
			c.queued = true
		case errors.As(err, &ce):
			c.fail(ce.code)
			return
		case errors.As(err, &ne) && ne.Timeout():
			// The preface deadline, or the idle one: beforeWait decides
			// (and moves the deadline, or the read would fail again).
			if !c.sawSettings {
				return
			}
			if !c.beforeWait() {
				graceful = true
				return
			}
		default:
			return // the client went away
		}
	}
}

var errH2BadPreface = errors.New("http2: bad client preface")

// readPreface reads the client's connection preface (RFC 9113 3.4).
func (c *h2SrvConn) readPreface() error {
	b, err := c.br.Peek(len(http2.ClientPreface))
	if err != nil {
		return err
	}
	if string(b) != http2.ClientPreface {
		return errH2BadPreface
	}
	c.br.Discard(len(b)) //nolint:errcheck // peeked
	return nil
}

// beforeWait sets the read deadline for the wait ahead: none while
// streams are open, the idle timeout otherwise. It returns false when the
// connection is to end: idle for the whole timeout, or going away with no
// stream left.
func (c *h2SrvConn) beforeWait() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	var want time.Time
	if len(c.streams) == 0 && c.running == 0 {
		if c.goingAway {
			return false
		}
		if !c.sawSettings {
			return true // the preface deadline stands
		}
		if c.opts.idle > 0 {
			want = c.idleSince.Add(c.opts.idle)
			if !time.Now().Before(want) {
				c.goingAway, c.lastID = true, c.maxID
				c.queueGoAway(c.maxID, http2.ErrCodeNo)
				return false
			}
		}
	}
	if want != c.deadline {
		c.nc.SetReadDeadline(want) //nolint:errcheck // a dead conn fails the read
		c.deadline = want
	}
	return true
}

// processFrame acts on one frame. Its payload is valid until the next read.
func (c *h2SrvConn) processFrame(f h2Frame, p []byte) error {
	if !c.sawSettings {
		// RFC 9113 3.4: the preface ends with the client's SETTINGS.
		if f.typ != http2.FrameSettings || f.flags.Has(http2.FlagSettingsAck) {
			return connErr(http2.ErrCodeProtocol, "first frame is not SETTINGS")
		}
		c.sawSettings = true
	}
	if c.blockID != 0 && f.typ != http2.FrameContinuation {
		return connErr(http2.ErrCodeProtocol, "header block interrupted")
	}
	switch f.typ {
	case http2.FrameData:
		return c.onData(f, p)
	case http2.FrameHeaders:
		return c.onHeaders(f, p)
	case http2.FrameContinuation:
		return c.onContinuation(f, p)
	case http2.FramePriority:
		return c.onPriority(f, p)
	case http2.FrameRSTStream:
		return c.onRSTStream(f, p)
	case http2.FrameSettings:
		return c.onSettings(f, p)
	case http2.FramePushPromise:
		return connErr(http2.ErrCodeProtocol, "PUSH_PROMISE from a client")
	case http2.FramePing:
		return c.onPing(f, p)
	case http2.FrameGoAway:
		return c.onGoAway(f, p)
	case http2.FrameWindowUpdate:
		return c.onWindowUpdate(f, p)
	}
	return nil // unknown frame types are ignored (RFC 9113 4.1, 5.5)
}

// fail ends the connection after a connection error: GOAWAY with code,
// then, so that the client reads it rather than a reset, the sending side
// is closed and what the client still sends is read away for a while.
func (c *h2SrvConn) fail(code http2.ErrCode) {
	c.mu.Lock()
	c.goingAway = true
	c.queueGoAway(c.maxID, code)
	c.mu.Unlock()
	c.flushOwned()
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		c.nc.SetReadDeadline(time.Now().Add(h2LingerTime)) //nolint:errcheck // a dead conn ends the copy
		io.CopyN(io.Discard, c.br, h2LingerBytes)          //nolint:errcheck // best effort
	}
}

// After a connection error, what the client sends is read away for up to
// this long or this much before the connection closes.
const (
	h2LingerTime  = time.Second
	h2LingerBytes = 4 << 20
)

// shut ends the connection: streams still open are closed (their handlers
// see their context end and their writes fail), the connection is closed
// once what is buffered went out (graceful), and serveConn returns when
// every handler has.
func (c *h2SrvConn) shut(graceful bool) {
	if graceful {
		c.flushOwned()
	}
	c.mu.Lock()
	c.closed = true
	for _, st := range c.streams {
		c.closeStreamLocked(st, errH2ConnClosed)
	}
	for _, w := range c.workers {
		w <- nil // the idle workers end
	}
	c.workers = nil
	c.cond.Broadcast()
	c.mu.Unlock()
	c.nc.Close()
	c.handlers.Wait()
	c.releaseWriter()
	c.br.Reset(nil)
	h2ReaderPool.Put(c.br)
	c.br = nil
}

// goAway starts a graceful shutdown of the connection (the server's, or
// the client's GOAWAY): GOAWAY(NO_ERROR) naming the last stream opened;
// the streams open finish, then the connection closes. Safe for
// concurrent use.
func (c *h2SrvConn) goAway() {
	c.mu.Lock()
	if c.goingAway || c.closed {
		c.mu.Unlock()
		return
	}
	c.goingAway, c.lastID = true, c.maxID
	c.queueGoAway(c.maxID, http2.ErrCodeNo)
	c.wakeIfIdleLocked()
	c.mu.Unlock()
	c.wantFlush(false)
}

// wakeIfIdleLocked moves the reader's deadline when no stream is left: to
// now when going away (the reader then closes), to the idle timeout
// otherwise.
func (c *h2SrvConn) wakeIfIdleLocked() {
	if len(c.streams) != 0 || c.running != 0 || c.closed {
		return
	}
	now := time.Now()
	c.idleSince = now
	var want time.Time // none: no idle timeout
	switch {
	case c.goingAway:
		want = now
	case c.opts.idle > 0:
		want = now.Add(c.opts.idle)
	}
	if want != c.deadline {
		c.nc.SetReadDeadline(want) //nolint:errcheck // a dead conn fails the read
		c.deadline = want
	}
}

// Close closes the connection; its handlers see their context end. For
// h2Conns, when a shutdown's grace period is over.
func (c *h2SrvConn) Close() error { return c.nc.Close() }

// noteReset remembers a stream the server reset: frames the client had
// already sent on it are ignored (RFC 9113 5.1, closed). Under mu.
func (c *h2SrvConn) noteReset(id uint32) {
	c.resets[c.nextReset] = id
	c.nextReset = (c.nextReset + 1) % len(c.resets)
}

func (c *h2SrvConn) wasReset(id uint32) bool {
	for _, r := range c.resets {
		if r == id {
			return true
		}
	}
	return false
}

// h2Conns tracks the HTTP/2 connections being served, so that a shutdown
// can send them GOAWAY and wait for them. The zero value is ready; it is
// safe for concurrent use.
type h2Conns struct {
	mu       sync.Mutex
	conns    map[*h2SrvConn]struct{}
	draining bool
	idle     chan struct{} // closed when the last conn ends while draining
}

// add starts tracking c; false once shutdown has begun, and the caller
// then closes c instead of serving it.
func (t *h2Conns) add(c *h2SrvConn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.draining {
		return false
	}
	if t.conns == nil {
		t.conns = make(map[*h2SrvConn]struct{})
	}
	t.conns[c] = struct{}{}
	return true
}

// done stops tracking c (it is no longer served).
func (t *h2Conns) done(c *h2SrvConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.conns, c)
	if len(t.conns) == 0 && t.idle != nil {
		close(t.idle)
		t.idle = nil
	}
}

// shutdown refuses new connections, sends GOAWAY to those being served
// (their streams open finish, then they close) and waits until they have
// closed. When ctx ends first, it closes the connections left and returns
// ctx.Err().
func (t *h2Conns) shutdown(ctx context.Context) error {
	t.mu.Lock()
	t.draining = true
	var idle chan struct{}
	if len(t.conns) > 0 {
		if t.idle == nil {
			t.idle = make(chan struct{})
		}
		idle = t.idle
	}
	for c := range t.conns {
		c.goAway()
	}
	t.mu.Unlock()
	if idle == nil {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		t.mu.Lock()
		for c := range t.conns {
			c.Close()
		}
		t.mu.Unlock()
		return ctx.Err()
	}
}
