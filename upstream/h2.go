package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
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

// newH2Transport builds the transport of an h2 or h2c pool.
func newH2Transport(cfg *PoolConfig) (*http.Transport, error) {
	tr := &http.Transport{
		Proxy:                  nil, // backends are dialled directly, never through HTTP_PROXY
		DialContext:            typedDial(cfg.dialTimeout()),
		DisableCompression:     true,
		ResponseHeaderTimeout:  cfg.responseHeaderTimeout(),
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		IdleConnTimeout:        cfg.idleConnTimeout(),
		Protocols:              new(http.Protocols),
	}
	switch cfg.Protocol {
	case ProtocolH2:
		if cfg.TLS == nil {
			return nil, errors.New("upstream: protocol h2 needs TLS to the backends (h2c is HTTP/2 without TLS)")
		}
		tc := backendTLS(cfg.TLS, "")
		tc.NextProtos = []string{"h2"}
		tr.TLSClientConfig = tc
		tr.Protocols.SetHTTP2(true)
	case ProtocolH2C:
		if cfg.TLS != nil {
			return nil, errors.New("upstream: protocol h2c is HTTP/2 without TLS; with TLS use h2")
		}
		tr.Protocols.SetUnencryptedHTTP2(true)
	default:
		return nil, fmt.Errorf("upstream: protocol %q: want http1, h2 or h2c", cfg.Protocol)
	}
	return tr, nil
}

// usesH2 reports whether the pool speaks HTTP/2 to its backends.
func (c *PoolConfig) usesH2() bool {
	return c.Protocol == ProtocolH2 || c.Protocol == ProtocolH2C
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
