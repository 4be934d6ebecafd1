package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"
)

// The TCP mode forwards connections the listener accepted and TLS-terminated
// to a backend, byte for byte, the way stunnel does: pick a backend, connect
// (optionally sending a PROXY header and re-encrypting), then copy both ways
// until both sides are done.

// DefaultTCPIdleTimeout is TCPConfig.IdleTimeout's default.
const DefaultTCPIdleTimeout = time.Hour

// TCPConfig configures a TCPProxy. NewTCPProxy reads it once (and clones
// TLS); the caller keeps ownership of the struct. The zero value of every
// field but Pool means its default.
type TCPConfig struct {
	// Pool supplies the backends and the balancer. Required.
	Pool *Pool

	// DialTimeout bounds connecting to one backend: the TCP connect, the
	// PROXY header and, with TLS, the handshake, all in one budget. Default
	// 5s (DefaultDialTimeout), as for HTTP.
	DialTimeout time.Duration

	// IdleTimeout closes both sides once no byte moved either way for this
	// long. Default 1h: TCP services (databases, IMAP IDLE, MQTT) keep quiet
	// connections open far longer than HTTP, and the client's and backend's
	// own keep-alives usually come sooner. Negative means never. Bytes
	// count when they are read from either side, so a write blocked on a
	// peer that stopped reading is not traffic. A connection is closed
	// between IdleTimeout and 1.25×IdleTimeout after its last byte (see
	// tcpTunnel), never earlier.
	IdleTimeout time.Duration

	// MaxAttempts caps the backends a connection is tried to; only connect
	// failures move to the next one. Zero means every backend once.
	MaxAttempts int

	// ProxyProtocol sends a PROXY protocol header to the backend before
	// anything else (before the TLS handshake, too): 0 none, 1 the v1 text
	// line, 2 the v2 binary header. It carries the client's address
	// (client.RemoteAddr) and the address it connected to
	// (client.LocalAddr).
	ProxyProtocol int

	// TLS, when set, re-encrypts towards the backends: it is the client
	// configuration of the handshake (RootCAs, ServerName, client
	// certificates). An empty ServerName means the host of each backend's
	// address, as tls.Dial does. A failed handshake counts as a failed
	// connect and is logged at error level with the reason.
	TLS *tls.Config

	// BufferPool supplies the 32 KiB copy buffers, two per connection while
	// it lasts (none while a plain↔plain one splices, tcp_splice.go); share
	// one (NewBufferPool) with the HTTP proxies. Nil means a pool of this
	// proxy's own.
	BufferPool httputil.BufferPool

	// Log receives the backends' state changes and TLS handshake failures,
	// never a line per connection. Nil discards.
	Log *logrus.Entry

	// Now is the clock of passive health (backoff windows). Nil means
	// time.Now. Timeouts always use real time.
	Now func() time.Time
}

func (c *TCPConfig) dialTimeout() time.Duration {
	if c.DialTimeout > 0 {
		return c.DialTimeout
	}
	return DefaultDialTimeout
}

// idleTimeout returns the resolved idle timeout; 0 means never.
func (c *TCPConfig) idleTimeout() time.Duration {
	switch {
	case c.IdleTimeout < 0:
		return 0
	case c.IdleTimeout == 0:
		return DefaultTCPIdleTimeout
	}
	return c.IdleTimeout
}

// TCPEnd says why a forwarded connection ended.
type TCPEnd uint8

const (
	// TCPEndDone: both sides finished sending (each direction reached
	// EOF), or a side that could not be half-closed was done.
	TCPEndDone TCPEnd = iota + 1
	// TCPEndIdle: nothing moved for IdleTimeout.
	TCPEndIdle
	// TCPEndCanceled: Serve's context ended (shutdown, reload drain).
	TCPEndCanceled
	// TCPEndClientError: reading from or writing to the client failed
	// (reset, broken TLS); TCPResult.Err says how.
	TCPEndClientError
	// TCPEndBackendError: the same on the backend side.
	TCPEndBackendError
)

var tcpEndNames = [...]string{"", "done", "idle", "canceled", "client_error", "backend_error"}

// String returns the access-log value: done, idle, canceled, client_error
// or backend_error.
func (e TCPEnd) String() string {
	if int(e) < len(tcpEndNames) {
		return tcpEndNames[e]
	}
	return "TCPEnd(" + strconv.Itoa(int(e)) + ")"
}

// TCPResult is what Serve reports for the access log.
type TCPResult struct {
	// Backend is the backend the connection was forwarded to; nil if none
	// could be reached.
	Backend *Backend
	// Attempts is the number of backends a connect was tried to.
	Attempts int
	// Received counts the bytes from the client delivered to the backend,
	// Sent the bytes from the backend delivered to the client (nginx
	// stream's $bytes_received and $bytes_sent). The PROXY header and TLS
	// overhead are not counted.
	Received, Sent int64
	// End is why the connection ended; zero when no backend was reached.
	End TCPEnd
	// Err is the I/O error behind TCPEndClientError or TCPEndBackendError.
	Err error

	spliced bool // the tunnel took the splice path (for tests)
}

// TCPProxy forwards client connections to one pool. It is immutable and
// safe for concurrent use; a reload builds a new one.
type TCPProxy struct {
	pool        *Pool
	log         *logrus.Entry
	now         func() time.Time
	dialer      net.Dialer
	dialTimeout time.Duration
	idle        time.Duration // 0: never
	maxAttempts int
	proxyProto  int
	tls         map[*Backend]*tls.Config // nil without re-encryption
	bufs        httputil.BufferPool
	// splice lets plain↔plain tunnels splice where the platform can;
	// pipeSize is what their pipes grow to once full (F_SETPIPE_SZ), 0
	// never. Fixed by NewTCPProxy; benchmarks change them.
	splice   bool
	pipeSize int
}

// NewTCPProxy validates cfg and builds the proxy.
func NewTCPProxy(cfg TCPConfig) (*TCPProxy, error) {
	if cfg.Pool == nil {
		return nil, errors.New("upstream: tcp proxy needs a pool")
	}
	if cfg.DialTimeout < 0 || cfg.MaxAttempts < 0 {
		return nil, errors.New("upstream: tcp proxy DialTimeout and MaxAttempts must not be negative")
	}
	if cfg.ProxyProtocol < 0 || cfg.ProxyProtocol > 2 {
		return nil, fmt.Errorf("upstream: tcp proxy: PROXY protocol version %d, want 0 (off), 1 or 2", cfg.ProxyProtocol)
	}
	backends := cfg.Pool.Backends()
	p := &TCPProxy{
		pool:        cfg.Pool,
		log:         cfg.Log,
		now:         cfg.Now,
		dialTimeout: cfg.dialTimeout(),
		idle:        cfg.idleTimeout(),
		maxAttempts: cfg.MaxAttempts,
		proxyProto:  cfg.ProxyProtocol,
		splice:      true,
		pipeSize:    splicePipeSize,
	}
	if p.log == nil {
		l := logrus.New()
		l.Out = io.Discard
		p.log = logrus.NewEntry(l)
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.maxAttempts == 0 || p.maxAttempts > len(backends) {
		p.maxAttempts = len(backends)
	}
	if cfg.BufferPool != nil {
		p.bufs = minSizePool{cfg.BufferPool}
	} else {
		p.bufs = NewBufferPool()
	}
	if cfg.TLS != nil {
		// One config per backend, built here so that a connect only looks
		// it up: a shared one when ServerName is set, else one naming the
		// backend's host.
		shared := cfg.TLS.Clone()
		p.tls = make(map[*Backend]*tls.Config, len(backends))
		for _, b := range backends {
			c := shared
			if c.ServerName == "" {
				host, _, err := net.SplitHostPort(b.addr)
				if err != nil {
					return nil, fmt.Errorf("upstream: tcp proxy: backend %q: %w", b.id, err)
				}
				c = shared.Clone()
				c.ServerName = host
			}
			p.tls[b] = c
		}
	}
	return p, nil
}

// Serve forwards client to a backend of the pool until both are done, and
// closes client. client is an accepted connection, TLS already terminated
// (a *tls.Conn after its handshake, or a plain TCP connection); its
// RemoteAddr and LocalAddr go into the PROXY header.
//
// Connect failures (refused, timed out, TLS handshake failed) put the
// backend in backoff and move to the next one. When none can be reached
// Serve returns the last connect error (a *DialError) or ErrNoBackend if
// every backend was already in backoff; if ctx ended while connecting, it
// returns ctx's error. Errors after the connection was made end up in the
// result, not in the error.
//
// When one side finishes sending (EOF), the other side's write half is
// closed (CloseWrite; for TLS a close_notify, then the TCP FIN) and the
// other direction goes on until it finishes too; an error on either side,
// the idle timeout or ctx ending closes both at once.
func (p *TCPProxy) Serve(ctx context.Context, client net.Conn) (TCPResult, error) {
	var res TCPResult
	backend, b, err := p.connect(ctx, client, &res)
	if err != nil {
		_ = client.Close()
		return res, err
	}
	defer b.inflight.Add(-1)
	res.Backend = b
	p.tunnel(ctx, client, backend, &res)
	return res, nil
}

// connect picks backends and dials them until one connects. The winner's
// in-flight count is held for the caller.
func (p *TCPProxy) connect(ctx context.Context, client net.Conn, res *TCPResult) (net.Conn, *Backend, error) {
	var triedBuf [4]*Backend
	tried := triedBuf[:0]
	var now time.Time
	skip := func(b *Backend) bool {
		if !b.Up(now) {
			return true
		}
		for _, t := range tried {
			if t == b {
				return true
			}
		}
		return false
	}
	var lastErr error
	for len(tried) < p.maxAttempts {
		now = p.now()
		b := p.pool.Pick(skip)
		if b == nil {
			break
		}
		tried = append(tried, b)
		res.Attempts = len(tried)
		b.inflight.Add(1)
		c, err := p.dial(ctx, b, client)
		if err == nil {
			if b.MarkSucceeded(p.now()) {
				logRecovered(p.log, b, "accepted a connection")
			}
			return c, b, nil
		}
		b.inflight.Add(-1)
		if ctx.Err() != nil {
			// Shutdown, not the backend's fault.
			return nil, nil, ctx.Err()
		}
		var he *tlsHandshakeError
		if errors.As(err, &he) {
			p.log.WithFields(logrus.Fields{"backend": b.id, "addr": b.addr, "reason": he.err.Error()}).
				Error("backend " + b.id + ": TLS handshake failed: " + he.err.Error())
		}
		if now := p.now(); b.MarkFailed(now) {
			logEjected(p.log, b, now, err.Error())
		}
		lastErr = err
	}
	if lastErr == nil {
		lastErr = ErrNoBackend
	}
	return nil, nil, lastErr
}

// tlsHandshakeError is a re-encryption handshake that failed: a
// certificate the RootCAs do not trust or that does not name ServerName,
// no common protocol version, a timeout. It is wrapped in a *DialError.
type tlsHandshakeError struct {
	addr string
	err  error
}

func (e *tlsHandshakeError) Error() string {
	return "tls handshake with " + e.addr + ": " + e.err.Error()
}

func (e *tlsHandshakeError) Unwrap() error { return e.err }

// dial connects to b within the dial timeout, sends the PROXY header and
// does the TLS handshake. Every failure is a *DialError: nothing of the
// client's data was sent.
func (p *TCPProxy) dial(ctx context.Context, b *Backend, client net.Conn) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.dialTimeout)
	defer cancel()
	c, err := p.dialer.DialContext(ctx, "tcp", b.addr)
	if err != nil {
		return nil, &DialError{Addr: b.addr, Err: err}
	}
	if p.proxyProto != 0 {
		if err := p.sendProxyHeader(ctx, c, client); err != nil {
			_ = c.Close()
			return nil, &DialError{Addr: b.addr, Err: err}
		}
	}
	conf := p.tls[b]
	if conf == nil {
		return c, nil
	}
	tc := tls.Client(c, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		return nil, &DialError{Addr: b.addr, Err: &tlsHandshakeError{b.addr, err}}
	}
	return tc, nil
}

// sendProxyHeader writes the PROXY header for client's endpoints to c. The
// header of a fresh connection fits its empty send buffer, so the write
// does not block in practice; the deadline is for a backend that is gone.
func (p *TCPProxy) sendProxyHeader(ctx context.Context, c, client net.Conn) error {
	var buf [proxyV1MaxLen]byte // v2 over IPv6 is 52 bytes
	var h []byte
	if p.proxyProto == 1 {
		h = AppendProxyV1(buf[:0], client.RemoteAddr(), client.LocalAddr())
	} else {
		h = AppendProxyV2(buf[:0], client.RemoteAddr(), client.LocalAddr())
	}
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetWriteDeadline(d)
	}
	if _, err := c.Write(h); err != nil {
		return fmt.Errorf("send PROXY header: %w", err)
	}
	return c.SetWriteDeadline(time.Time{})
}

// idleChecks is how often per IdleTimeout the idle timer looks for
// traffic: a silent connection is closed between IdleTimeout and
// (1 + 1/idleChecks) × IdleTimeout after its last byte.
const idleChecks = 4

// tcpTunnel is one forwarded connection after the connect.
//
