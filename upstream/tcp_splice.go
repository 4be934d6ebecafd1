package upstream

import "net"

// A tunnel whose two sides are plain TCP moves its bytes with splice(2)
// where the platform has it (tcp_splice_linux.go): socket to pipe to
// socket, never through user space. Every other tunnel copies through
// pooled buffers (tcpTunnel.pipe):
//
//   - a *tls.Conn side: the socket carries records, not the bytes to
//     forward, and only crypto/tls can open or seal them;
//   - a wrapper that does not implement TCPUnwrapper (a PROXY-protocol
//     reader over a bufio.Reader, a byte counter, a test's pipe): what its
//     Read holds back or its Write adds is unknown, and skipping it would
//     lose or change bytes.

// TCPUnwrapper is implemented by a connection wrapper whose Read and Write
// are those of a *net.TCPConn, except for bytes it read ahead, so that a
// plain↔plain tunnel can splice (tlsedge's gate connection, which may have
// read past a PROXY header).
type TCPUnwrapper interface {
	// UnwrapTCP returns the TCP connection under the wrapper and the
	// bytes the wrapper's Read would return before the connection's own
	// (nil if none), or a nil connection if there is none. A tunnel that
	// takes it neither reads nor writes through the wrapper afterwards,
	// writes ahead before anything else, and still closes the wrapper
	// (not the connection) at the end. ahead is not modified.
	UnwrapTCP() (c *net.TCPConn, ahead []byte)
}

// spliceSide is one side of a splicing tunnel.
type spliceSide struct {
	conn  *net.TCPConn
	ahead []byte // to write to the other side first
}

// spliceSides returns client's and backend's TCP connections if the
// tunnel between them can splice: enabled, supported, and both plain TCP.
func spliceSides(client, backend net.Conn, enabled bool) (c, b spliceSide, ok bool) {
	if !enabled || !spliceSupported {
		return c, b, false
	}
	if c, ok = asSpliceSide(client); !ok {
		return c, b, false
	}
	b, ok = asSpliceSide(backend)
	return c, b, ok
}

func asSpliceSide(c net.Conn) (spliceSide, bool) {
	switch c := c.(type) {
	case *net.TCPConn:
		return spliceSide{conn: c}, true
	case TCPUnwrapper:
		tc, ahead := c.UnwrapTCP()
		return spliceSide{conn: tc, ahead: ahead}, tc != nil
	}
	return spliceSide{}, false
}
