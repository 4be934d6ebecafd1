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
}

var _ deferredReader = (*clientConn)(nil)

func (c *clientConn) deferReadDeadline(d time.Duration) { c.deferred.Store(int64(d)) }

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
