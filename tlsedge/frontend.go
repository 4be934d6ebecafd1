package tlsedge

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/tlsedge/tlsedge/certs"
)

// acceptLoop accepts TLS connections until the listener closes. Each gets
// its own goroutine for the handshake; ALPN then decides who serves it:
// "h2" goes to serveH2, everything else to serveH1.
func (s *Server) acceptLoop(ctx context.Context, ln net.Listener) error {
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.shuttingDown.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: wait, as net/http does.
			if ne, ok := err.(net.Error); ok && ne.Timeout() || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.WithError(err).Warnf("accept failed; retrying in %v", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		go s.handshake(ctx, nc)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// handshake completes TLS within handshakeTimeout and dispatches by ALPN.
func (s *Server) handshake(ctx context.Context, raw net.Conn) {
	nc, err := s.gate.admit(raw)
	if err != nil {
		if s.log.Logger.IsLevelEnabled(debugLevel) {
			s.log.WithError(err).WithField("peer", raw.RemoteAddr().String()).Debug("connection refused")
		}
		return
	}
	if !s.gate.startHandshake(nc) {
		if s.log.Logger.IsLevelEnabled(debugLevel) {
			s.log.WithField("client", nc.client.String()).Debug("connection refused: too many handshakes from this address")
		}
		nc.Close()
		return
	}
	tc := tls.Server(nc, s.tlsConf)
	// A deadline, not HandshakeContext with a timeout: a cancellable
	// context makes crypto/tls start a watcher goroutine per handshake.
	nc.SetDeadline(time.Now().Add(s.gate.cur().handshakeTimeout)) //nolint:errcheck // a dead conn fails the handshake
	err = tc.Handshake()
	nc.SetDeadline(time.Time{}) //nolint:errcheck
	s.gate.endHandshake(nc)
	s.metrics.Handshake(tc.ConnectionState().Version, err)
	if err != nil {
		s.snap.Load().clientAuth.logMissing(tc.ConnectionState().ServerName, nc.RemoteAddr().String(), err)
		if s.log.Logger.IsLevelEnabled(debugLevel) {
			s.log.WithError(err).WithField("client", nc.RemoteAddr().String()).Debug("TLS handshake failed")
		}
		nc.Close()
		return
	}
	switch tc.ConnectionState().NegotiatedProtocol {
	case certs.ACMETLS1:
		tc.Close() // a TLS-ALPN-01 validation ends with the handshake
		return
	case "h2":
		s.metrics.ConnOpened("h2")
		defer s.metrics.ConnClosed("h2")
		s.serveH2(ctx, tc)
		return
	}
	s.serveH1(tc) // counts the connection itself: it may outlive this goroutine (park)
}

// serveH2 serves an HTTP/2 connection (h2srv*.go) on the frontend's
// current timeouts.
func (s *Server) serveH2(ctx context.Context, tc *tls.Conn) {
	st := s.gate.cur()
	opts := h2ConnOptions{idle: st.idleTimeout, header: st.headerTimeout, body: st.bodyTimeout, refused: s.logRefused}
	s.h2srv.serveConn(ctx, tc, opts, &s.h2conns)
}

// logRefused records a refused request head in the access log and, at
// debug level, the reason.
func (s *Server) logRefused(r *http.Request, he *headError) {
	if s.log.Logger.IsLevelEnabled(debugLevel) {
		s.log.WithField("client", r.RemoteAddr).WithField("status", he.status).Debug(he.reason)
	}
	if s.access == nil {
		return
	}
	e := accessEntry{Time: time.Now(), ClientIP: clientIP(r), Method: r.Method, Host: r.Host, Status: he.status}
	if r.URL != nil {
		e.Path = r.URL.Path
	}
	if r.TLS != nil {
		e.TLS = r.TLS.Version
	}
	s.access.Log(&e)
}
