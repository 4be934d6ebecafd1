package tlsedge

import "time"

// A request head almost always arrives whole in the TLS record whose first
// byte ended the idle wait: crypto/tls then hands it over from its buffer
// and the socket is not read again. Setting the header timeout before
// parsing cost three clock readings and a timer update per request, for a
// deadline that nothing waited on. Instead the deadline is deferred: the
// first read that does reach the socket sets it, from then.

// deferredReader is a connection that can defer a read deadline.
type deferredReader interface {
	// deferReadDeadline makes the next Read that goes to the socket first
	// set the read deadline to d from then. Zero cancels a deferred
	// deadline that no read has set yet.
	deferReadDeadline(d time.Duration)
	// takeDeferred cancels a deferred deadline and reports whether a
	// read set it already (or none was deferred).
	takeDeferred() (set bool)
}

var _ deferredReader = (*clientConn)(nil)

func (c *clientConn) deferReadDeadline(d time.Duration) { c.deferred.Store(int64(d)) }

func (c *clientConn) takeDeferred() bool { return c.deferred.Swap(0) == 0 }

// armDeferred sets a deferred read deadline before a read of the socket.
// (deferred is atomic because the server's shutdown sets deadlines from
// its own goroutine.)
func (c *clientConn) armDeferred() {
	if c.deferred.Load() == 0 {
		return
	}
	if d := time.Duration(c.deferred.Swap(0)); d > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(d)) //nolint:errcheck // a dead conn fails the read
	}
}

// SetReadDeadline replaces a deferred deadline too.
func (c *clientConn) SetReadDeadline(t time.Time) error {
	c.deferred.Store(0)
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline replaces a deferred read deadline too.
func (c *clientConn) SetDeadline(t time.Time) error {
	c.deferred.Store(0)
	return c.Conn.SetDeadline(t)
}

// The idle wait's deadline (parkAfter, or the idle timeout) was set before
// nearly every request and cleared after its head: two runtime timer
// updates per request, for deadlines that almost never fire. Now a
// deadline already on the socket that ends the wait at most slack late is
// kept, and a request without a body leaves it in place after its head:
// nothing reads the socket until the next wait, except a hijacker, and
// Hijack clears it.

// idleDeadline bounds the idle wait to [want, want+slack], slack being
// half the wait and at most a second.
func (c *h1Conn) idleDeadline(want, now time.Time) {
	slack := min(want.Sub(now)/2, time.Second)
	if !c.rdl.IsZero() && !c.rdl.Before(want) && c.rdl.Sub(want) <= slack {
		return
	}
	c.rdl = want.Add(slack)
	c.nc.SetReadDeadline(c.rdl) //nolint:errcheck // a dead conn fails the read
}

// headDone ends the head's deadline: the header timeout if a read set it
// (lazydeadline above), else the idle wait's, which a request without a
// body may keep. Body reads set their own.
func (c *h1Conn) headDone(noBody bool) {
	set := true
	if c.deferrer != nil {
		set = c.deferrer.takeDeferred()
	}
	if noBody && !set {
		return
	}
	c.clearReadDeadline()
}

// clearReadDeadline leaves the socket with no read deadline.
func (c *h1Conn) clearReadDeadline() {
	c.rdl = time.Time{}
	c.nc.SetReadDeadline(time.Time{}) //nolint:errcheck // a dead conn fails the read
}
