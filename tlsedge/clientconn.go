package tlsedge

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/filter"
	"github.com/tlsedge/tlsedge/upstream"
)

// Before a TLS handshake starts, a client connection passes the gate:
//
//  1. With trusted proxies configured, its first byte is looked at: a TLS
//     record starts with 0x16, a PROXY protocol header with 'P' (v1) or
//     '\r' (v2), so there is nothing to guess. A header from a trusted
//     peer gives the connection its real client address; a header from
//     anyone else is read and dropped, and the peer stays the client.
//     Without trusted proxies nothing is read ahead: a PROXY header then
//     fails the handshake, as HAProxy does on a bind without accept-proxy.
//  2. The client address (the real one) may hold at most MaxConnsPerIP
//     open connections and MaxHandshakesPerIP handshakes in progress;
//     beyond, the connection is closed at once.
//
// The counters live in a sharded table whose entries are removed when
// they reach zero, so its size is bounded by the open connections, and
// no lock is shared by all connections.

// frontGate holds the frontend settings of the process: the settings are
// swapped whole by a reload, the counts of open connections stay.
type frontGate struct {
	settings     atomic.Pointer[gateSettings]
	counts       addrCounts
	refusedConns atomic.Uint64
	refusedHS    atomic.Uint64
}

// gateSettings are one configuration's frontend settings; immutable.
type gateSettings struct {
	trusted          *filter.TrustedSet // nil: no PROXY headers read
	maxConns, maxHS  int                // <= 0: no limit
	handshakeTimeout time.Duration
	headerTimeout    time.Duration
	bodyTimeout      time.Duration
	idleTimeout      time.Duration
}

func newGateSettings(fe *config.Frontend) (*gateSettings, error) {
	g := &gateSettings{
		maxConns:         fe.MaxConnsPerIP,
		maxHS:            fe.MaxHandshakesPerIP,
		handshakeTimeout: orDefault(fe.HandshakeTimeout.D(), config.DefaultHandshakeTimeout),
		headerTimeout:    orDefault(fe.HeaderTimeout.D(), config.DefaultHeaderTimeout),
		bodyTimeout:      orDefault(fe.BodyTimeout.D(), config.DefaultBodyTimeout),
		idleTimeout:      orDefault(fe.IdleTimeout.D(), config.DefaultIdleTimeout),
	}
	if len(fe.TrustedProxies) > 0 {
		t, err := filter.ParseTrusted(fe.TrustedProxies)
		if err != nil {
			return nil, &config.FieldError{Field: "frontend.trusted_proxies", Err: err}
		}
		g.trusted = &t
	}
	return g, nil
}

func newFrontGate(fe *config.Frontend) (*frontGate, error) {
	st, err := newGateSettings(fe)
	if err != nil {
		return nil, err
	}
	g := &frontGate{}
	g.settings.Store(st)
	for i := range g.counts.shards {
		g.counts.shards[i].m = map[netip.Addr]*addrCount{}
	}
	return g, nil
}

// cur is the current settings.
func (g *frontGate) cur() *gateSettings { return g.settings.Load() }

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// errRefused is a connection the gate closed.
var errRefused = errors.New("too many connections from this address")

// admit runs the gate on a new connection. The returned conn replaces nc
// (its RemoteAddr is the real client, its Close releases the count); on
// error nc is already closed.
func (g *frontGate) admit(nc net.Conn) (*clientConn, error) {
	st := g.cur()
	c := &clientConn{Conn: nc, gate: g}
	c.client = addrOf(nc.RemoteAddr())
	trusted := st.trusted != nil && st.trusted.Contains(c.client)
	if !trusted {
		// The peer is the client whatever it sends: it is counted before
		// anything is read, and while a PROXY header (to be dropped) is
		// awaited it holds a handshake slot, so that idle connections
		// cannot escape the limits.
		if err := g.countConn(c); err != nil {
			return nil, err
		}
		if st.trusted == nil {
			return c, nil
		}
		if !g.startHandshake(c) {
			c.Close()
			return nil, errRefused
		}
		c.hsCounted = true
	}
	nc.SetReadDeadline(time.Now().Add(st.handshakeTimeout)) //nolint:errcheck // a dead conn fails the read
	if err := c.readProxyHeader(trusted); err != nil {
		if c.hsCounted {
			g.endHandshake(c)
		}
		c.Close()
		return nil, err
	}
	if trusted {
		if err := g.countConn(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// countConn counts c as an open connection of its client, or closes it.
func (g *frontGate) countConn(c *clientConn) error {
	if !g.counts.add(c.client, countConns, g.cur().maxConns) {
		g.refusedConns.Add(1)
		c.Conn.Close()
		return errRefused
	}
	c.counted = true
	return nil
}

// startHandshake counts a handshake of c's client; endHandshake must
// follow when it reports true.
func (g *frontGate) startHandshake(c *clientConn) bool {
	if c.hsCounted { // admit took the slot for this handshake
		c.hsCounted = false
		return true
	}
	if g.counts.add(c.client, countHandshakes, g.cur().maxHS) {
		return true
	}
	g.refusedHS.Add(1)
	return false
}

func (g *frontGate) endHandshake(c *clientConn) { g.counts.remove(c.client, countHandshakes) }

// clientConn is a client connection that passed the gate.
type clientConn struct {
	net.Conn
	gate    *frontGate
	client  netip.Addr
	remote  net.Addr // from a trusted PROXY header; nil: the peer
	ahead   []byte   // bytes read past the PROXY header
	counted bool
	// hsCounted: admit holds a handshake slot (an untrusted peer waited
	// on for a PROXY header); startHandshake takes it over.
	hsCounted bool
	closed    atomic.Bool
	batch     recordBatch // large response writes (recordbatch.go)
	// deferred is a read deadline (from the first read of the socket)
	// not set yet (lazydeadline.go).
	deferred atomic.Int64 // a time.Duration
}

func (c *clientConn) Read(p []byte) (int, error) {
	if len(c.ahead) > 0 {
		n := copy(p, c.ahead)
		c.ahead = c.ahead[n:]
		return n, nil
	}
	c.armDeferred()
	return c.Conn.Read(p)
}

// RemoteAddr is the client: the PROXY header's source when a trusted
// proxy sent one.
func (c *clientConn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}

// UnwrapTCP lets a plain TCP service's tunnel splice. Read and Write are
// the TCP connection's but for the bytes read past a PROXY header, which
// the tunnel sends first, and record batching (recordbatch.go), which is
// only on during an HTTPS response write. The tunnel still calls Close,
// which gives the count back.
func (c *clientConn) UnwrapTCP() (*net.TCPConn, []byte) {
	tc, _ := c.Conn.(*net.TCPConn) // nil under a test's listener: copy
	return tc, c.ahead
}

var _ upstream.TCPUnwrapper = (*clientConn)(nil)

// Close closes once and gives the connection's count back.
func (c *clientConn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return net.ErrClosed
	}
	if c.counted {
		c.gate.counts.remove(c.client, countConns)
	}
	return c.Conn.Close()
}

// readProxyHeader looks at the first byte; a PROXY header is parsed, and
// believed only when trusted.
func (c *clientConn) readProxyHeader(trusted bool) error {
	var first [1]byte
	if _, err := io.ReadFull(c.Conn, first[:]); err != nil {
		return err
	}
	if first[0] != 'P' && first[0] != '\r' {
		c.ahead = append(c.ahead[:0], first[0])
		return nil
	}
	br := bufio.NewReaderSize(io.MultiReader(bytesReader(first[:]), c.Conn), 512)
	src, _, err := upstream.ReadProxyHeader(br)
	if err != nil {
		return err
	}
	if n := br.Buffered(); n > 0 {
		c.ahead = make([]byte, n)
		br.Read(c.ahead) //nolint:errcheck // reads what is buffered
	}
	if trusted && src != nil { // nil: LOCAL or UNKNOWN, the peer is the client
		c.remote = src
		c.client = addrOf(src)
	}
	return nil
}

type byteSliceReader struct{ b []byte }

func bytesReader(b []byte) io.Reader { return &byteSliceReader{b} }

func (r *byteSliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// addrCounts counts connections and handshakes per client address.
type addrCounts struct {
	shards [64]countShard
}

// What addrCounts counts.
const (
	countConns      = 0
	countHandshakes = 1
)

type countShard struct {
	mu sync.Mutex
	m  map[netip.Addr]*addrCount
	_  [40]byte // keeps shards on their own cache lines
}

type addrCount struct{ n [2]int } // by countConns, countHandshakes

func (a *addrCounts) shard(ip netip.Addr) *countShard {
	b := ip.As16()
	h := binary.LittleEndian.Uint64(b[8:]) ^ binary.LittleEndian.Uint64(b[:8])
	h ^= h >> 29
	h *= 0xbf58476d1ce4e5b9
	return &a.shards[(h>>32)%uint64(len(a.shards))]
}

// add counts one more of kind for ip unless it already has max (max <= 0:
// no limit).
func (a *addrCounts) add(ip netip.Addr, k int, max int) bool {
	s := a.shard(ip)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[ip]
	if e == nil {
		e = &addrCount{}
		s.m[ip] = e
	}
	if max > 0 && e.n[k] >= max {
		if e.n[0] == 0 && e.n[1] == 0 {
			delete(s.m, ip)
		}
		return false
	}
	e.n[k]++
	return true
}

func (a *addrCounts) remove(ip netip.Addr, k int) {
	s := a.shard(ip)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[ip]
	if e == nil {
		return
	}
	e.n[k]--
	if e.n[0] <= 0 && e.n[1] <= 0 {
		delete(s.m, ip)
	}
}

// size is the number of addresses counted (tests check it returns to 0).
func (a *addrCounts) size() int {
	n := 0
	for i := range a.shards {
		s := &a.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
