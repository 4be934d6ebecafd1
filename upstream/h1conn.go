package upstream

import (
	"bufio"
	"net"
	"sync"
	"syscall"
	"time"
)

// Buffer sizes of a backend connection. Bodies bypass both buffers (reads
// and writes of 8 KiB or more go straight to the socket when the buffer is
// empty), so they hold heads and small bodies: 8 KiB reads a response head
// with a few large cookies in one read, and a request head with a small
// body leaves in one write. Longer head lines are still accepted, up to
// maxResponseHeaderBytes.
const (
	h1ReadBuffer  = 8 << 10
	h1WriteBuffer = 8 << 10
	// maxResponseHeaderBytes caps what a backend may send as a response
	// head (status line, fields and interim responses); the net/http
	// default of 10 MiB lets one broken backend pin that much per request.
	maxResponseHeaderBytes = 1 << 20
)

// The buffers live in pools and are attached to a connection only while
// it carries a request: an idle keep-alive connection costs a descriptor
// and this struct, not 16 KiB (256 idle connections per backend are the
// default).
var (
	h1Readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, h1ReadBuffer) }}
	h1Writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, h1WriteBuffer) }}
)

// aLongTimeAgo is a deadline in the past: setting it makes blocked reads
// and writes on a connection return at once.
var aLongTimeAgo = time.Unix(1, 0)

// h1Conn is one HTTP/1.1 connection to a backend. It belongs to one
// request at a time: the idle stack hands it out and takes it back, and
// nothing else touches it in between except a request's cancellation,
// which only sets a deadline.
type h1Conn struct {
	nc     net.Conn
	br     *bufio.Reader // attached while in use
	bw     *bufio.Writer
	raw    syscall.RawConn // for the liveness probe; nil if nc has none
	probe  func(fd uintptr) bool
	peeked int       // result of the last probe: 0 closed, 1 data, -1 nothing
	reused bool      // taken from the idle stack rather than dialled
	idleAt time.Time // when it was put on the idle stack
	// rdl is the read deadline on nc as this request's goroutine last set
	// it, zero for none (headDeadline).
	rdl time.Time
}

// headDeadline bounds the wait for a response head to [want, want+slack].
// A deadline already on the socket in that window is kept: setting one
// costs a clock reading and a runtime timer update, and on a busy
// keep-alive connection the previous request's still fits. The head
// timeout may thus fire up to slack late.
func (c *h1Conn) headDeadline(want time.Time, slack time.Duration) error {
	if !c.rdl.IsZero() && !c.rdl.Before(want) && c.rdl.Sub(want) <= slack {
		return nil
	}
	dl := want.Add(slack)
	if err := c.nc.SetReadDeadline(dl); err != nil {
		c.rdl = time.Time{}
		return err
	}
	c.rdl = dl
	return nil
}

// noReadDeadline clears the read deadline before reads that may wait for
// as long as the backend likes (a streamed body).
func (c *h1Conn) noReadDeadline() error {
	if c.rdl.IsZero() {
		return nil
	}
	c.rdl = time.Time{}
	return c.nc.SetReadDeadline(time.Time{})
}

// headSlack is how late a response head timeout may fire: an eighth of
// it, at most a second.
func headSlack(timeout time.Duration) time.Duration {
	return min(timeout/8, time.Second)
}

func newH1Conn(nc net.Conn) *h1Conn {
	c := &h1Conn{nc: nc}
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
			c.probe = c.peek // one method value per connection, not per probe
		}
	}
	c.attach()
	return c
}

// attach gives c its buffers for one request.
func (c *h1Conn) attach() {
	c.br = h1Readers.Get().(*bufio.Reader)
	c.br.Reset(c.nc)
	c.bw = h1Writers.Get().(*bufio.Writer)
	c.bw.Reset(c.nc)
}

// detach returns the buffers to their pools. The reader must be empty:
// bytes left in it would be a protocol error, and the caller closes such a
// connection instead of keeping it.
func (c *h1Conn) detach() {
	if c.br != nil {
		c.br.Reset(nil)
		h1Readers.Put(c.br)
		c.br = nil
	}
	if c.bw != nil {
		c.bw.Reset(nil)
		h1Writers.Put(c.bw)
		c.bw = nil
	}
}

// close closes the connection and returns its buffers.
func (c *h1Conn) close() {
	_ = c.nc.Close() // nothing to do about a failed close
	c.detach()
}

// alive reports whether an idle connection still looks usable: the backend
// has neither closed it nor sent anything unasked. It costs one
// non-blocking recv(MSG_PEEK) and is used only before requests that could
// not be replayed if the connection turned out to be dead (see
// attempt.connect); idempotent requests are retried instead.
func (c *h1Conn) alive() bool {
	if c.raw == nil {
		return true
	}
	c.peeked = -1
	if err := c.raw.Read(c.probe); err != nil {
		return false
	}
	return c.peeked < 0
}

// peek is the RawConn.Read callback of alive. It returns true whatever
// happened so that the runtime never parks on an idle connection.
func (c *h1Conn) peek(fd uintptr) bool {
	var b [1]byte
	n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	switch {
	case err == nil && n == 0:
		c.peeked = 0 // orderly close
	case err == nil:
		c.peeked = 1 // unsolicited bytes: the connection is out of step
	case err == syscall.EAGAIN:
		c.peeked = -1
	default:
		c.peeked = 0 // reset or another error
	}
	return true
}
