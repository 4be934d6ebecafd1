package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// HTTP/2 to the backends (PoolConfig.Protocol "h2" over TLS with ALPN, or
// "h2c" in clear text with prior knowledge) goes through the ReverseProxy
// path with a net/http transport speaking only HTTP/2: one multiplexed
// connection per backend carries every request, and trailers (gRPC's
// status) pass through. HTTP/1.1 stays the default, on the package's own
// client.

// Backend protocols.
const (
	ProtocolHTTP1 = "http1"
	ProtocolH2    = "h2"
	ProtocolH2C   = "h2c"
)

// h2Transport is the transport of an h2 or h2c pool, with every
// multiplexed connection it holds, and the pool that owns it: the pool
// that built it, or the one it was handed to since (Pool.Adopt). Its TLS
// dials take the backend settings of the owner, so that a pool that
// adopted it dials its own membership's names; its owner's Close closes
// its idle connections. The owner changes only under the mutex of the
// pool that owns it then, and never once that pool is closed.
type h2Transport struct {
	*http.Transport
	owner atomic.Pointer[Pool]
}

// newH2Transport builds the transport of an h2 or h2c pool, owned by p.
func (p *Pool) newH2Transport() (*h2Transport, error) {
	cfg := &p.cfg
	t := &h2Transport{Transport: &http.Transport{
		Proxy:                  nil, // backends are dialled directly, never through HTTP_PROXY
		DialContext:            typedDial(cfg.dialTimeout()),
		DisableCompression:     true,
		ResponseHeaderTimeout:  cfg.responseHeaderTimeout(),
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		IdleConnTimeout:        cfg.idleConnTimeout(),
		Protocols:              new(http.Protocols),
	}}
	t.owner.Store(p)
	tr := t.Transport
	switch cfg.Protocol {
	case ProtocolH2:
		if cfg.TLS == nil {
			return nil, errors.New("upstream: protocol h2 needs TLS to the backends (h2c is HTTP/2 without TLS)")
		}
		tr.DialTLSContext = tlsDial("h2", cfg.dialTimeout(), func(addr string) *tls.Config { return t.owner.Load().tlsFor(addr) })
		tr.Protocols.SetHTTP2(true)
	case ProtocolH2C:
		if cfg.TLS != nil {
			return nil, errors.New("upstream: protocol h2c is HTTP/2 without TLS; with TLS use h2")
		}
		tr.Protocols.SetUnencryptedHTTP2(true)
	default:
		return nil, fmt.Errorf("upstream: protocol %q: want http1, h2 or h2c", cfg.Protocol)
	}
	return t, nil
}

// newUpgradeTransport builds the transport of WebSocket handshakes. It
// keeps no idle connections: a handshake that succeeds hands its
// connection to the tunnel, and one that fails is rare.
func (p *Pool) newUpgradeTransport() *http.Transport {
	cfg := &p.cfg
	tr := &http.Transport{
		// Never the environment's HTTP_PROXY: backends are dialled directly.
		Proxy:       nil,
		DialContext: typedDial(cfg.dialTimeout()),
		// The client's Accept-Encoding goes to the backend unchanged and the
		// response comes back as sent; decompressing here would only cost CPU.
		DisableCompression:     true,
		DisableKeepAlives:      true,
		ResponseHeaderTimeout:  cfg.responseHeaderTimeout(),
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		ReadBufferSize:         h1ReadBuffer,
		WriteBufferSize:        h1WriteBuffer,
		ForceAttemptHTTP2:      false,
	}
	if cfg.TLS != nil {
		tr.DialTLSContext = tlsDial("http/1.1", cfg.dialTimeout(), p.tlsFor)
	}
	return tr
}

// tlsDial is a transport's DialTLSContext: the TLS settings, from
// tlsFor, are the backend's own (its connection stack's), so a backend the
// resolver turned into an IP address still sends and verifies its name,
// not the IP the URL carries.
func tlsDial(alpn string, timeout time.Duration, tlsFor func(addr string) *tls.Config) func(ctx context.Context, network, addr string) (net.Conn, error) {
	dial := typedDial(timeout)
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tc := tlsFor(addr).Clone()
		tc.NextProtos = []string{alpn}
		c := tls.Client(nc, tc)
		hctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if err := c.HandshakeContext(hctx); err != nil {
			nc.Close()
			return nil, &DialError{Addr: addr, Err: fmt.Errorf("TLS handshake: %w", err)}
		}
		return c, nil
	}
}

// tlsFor returns the TLS settings of the backend at addr: those of its
// connection stack, or the pool's with the address's host as the name.
func (p *Pool) tlsFor(addr string) *tls.Config {
	for _, s := range p.state.Load().stacks {
		if s.addr == addr && s.tls != nil {
			return s.tls
		}
	}
	return backendTLS(p.cfg.TLS, addr)
}

// usesH2 reports whether the pool speaks HTTP/2 to its backends.
func (c *PoolConfig) usesH2() bool {
	return c.Protocol == ProtocolH2 || c.Protocol == ProtocolH2C
}

// protocol returns Protocol, "" meaning HTTP/1.1.
func (c *PoolConfig) protocol() string {
	if c.Protocol == "" {
		return ProtocolHTTP1
	}
	return c.Protocol
}

// typedDial is a net/http transport's DialContext whose failures are
// *DialError: the proxy then knows for certain that nothing was sent and
// the request may go to another backend.
func typedDial(timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, &DialError{Addr: addr, Err: err}
		}
		return c, nil
	}
}

// h2NotEstablished reports net/http's HTTP/2 error for a connection that
// failed before its preface and settings were exchanged: no request went
// out on it, so any request may go to another backend, as after a failed
// dial. net/http does not export the error; its text is stable since Go
// 1.13.
func h2NotEstablished(err error) bool {
	return strings.Contains(err.Error(), "http2: client conn could not be established")
}
