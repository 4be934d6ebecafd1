package tlsedge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/upstream"
)

// TCP mode, the stunnel replacement: each TCP service's listener
// terminates TLS with tlsedge's certificates (or is plain), picks the
// service by SNI when several share it, and hands the connection to the
// service's upstream.TCPProxy, which forwards the bytes to its pool.

// tcpService is one compiled TCP service.
type tcpService struct {
	cfg    *config.TCPService
	pool   *upstream.Pool
	proxy  *upstream.TCPProxy
	health *upstream.HealthConfig // nil without checks
	log    *logrus.Entry
}

// tcpRoutes maps a listen address to its services: by SNI, and the
// default (no hosts) for every other name or none.
type tcpRoutes struct {
	plain  bool
	exact  map[string]*tcpService
	wild   map[string]*tcpService // "*.example.com" keyed by "example.com"
	deflt  *tcpService
	listen string
}

func (r *tcpRoutes) match(sni string) *tcpService {
	name := strings.TrimSuffix(strings.ToLower(sni), ".")
	if s, ok := r.exact[name]; ok {
		return s
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if s, ok := r.wild[name[i+1:]]; ok {
			return s
		}
	}
	return r.deflt
}

// compileTCP builds the TCP services of cfg and their routes.
func (snap *snapshot) compileTCP(cfg *config.Config, d compileDeps) error {
	snap.tcp = map[string]*tcpRoutes{}
	for i := range cfg.TCP {
		sc := &cfg.TCP[i]
		log := d.log.WithField("tcp", sc.Name)
		svc, err := newTCPService(sc, cfg, d.registry, log)
		if err != nil {
			return fmt.Errorf("tcp %q: %w", sc.Name, err)
		}
		snap.tcpServices = append(snap.tcpServices, svc)
		r := snap.tcp[sc.Listen]
		if r == nil {
			r = &tcpRoutes{listen: sc.Listen, exact: map[string]*tcpService{}, wild: map[string]*tcpService{}}
			snap.tcp[sc.Listen] = r
		}
		r.plain = sc.Plain
		if len(sc.Hosts) == 0 {
			r.deflt = svc
		}
		for _, h := range sc.Hosts {
			if rest, ok := strings.CutPrefix(h, "*."); ok {
				r.wild[rest] = svc
			} else {
				r.exact[h] = svc
			}
		}
	}
	return nil
}

func newTCPService(sc *config.TCPService, cfg *config.Config, reg *upstream.Registry, log *logrus.Entry) (*tcpService, error) {
	pc := upstream.PoolConfig{DialTimeout: cfg.Upstream.DialTimeout.D(), Balancer: sc.Balance}
	for _, b := range sc.Backends {
		pc.Backends = append(pc.Backends, upstream.BackendConfig{ID: b.ID, Addr: b.Addr, Weight: b.Weight, Priority: b.Priority})
	}
	pool, err := upstream.NewPool(pc, reg)
	if err != nil {
		return nil, err
	}
	backendTLS, err := backendTLSConfig(&config.App{BackendTLS: sc.BackendTLS}, log)
	if err != nil {
		pool.Close()
		return nil, err
	}
	proxy, err := upstream.NewTCPProxy(upstream.TCPConfig{
		Pool:          pool,
		DialTimeout:   cfg.Upstream.DialTimeout.D(),
		IdleTimeout:   sc.IdleTimeout.D(),
		ProxyProtocol: sc.ProxyProtocol,
		TLS:           backendTLS,
		Log:           log,
	})
	if err != nil {
		pool.Close()
		return nil, err
	}
	svc := &tcpService{cfg: sc, pool: pool, proxy: proxy, log: log}
	if sc.HealthInterval > 0 {
		svc.health = &upstream.HealthConfig{TCP: true, Interval: sc.HealthInterval.D()}
	}
	return svc, nil
}

// listenTCP opens the TCP services' listeners.
func (s *Server) listenTCP() error {
	for _, addr := range s.cfg.TCPListens() {
		ln, err := s.listen("tcp", addr)
		if err != nil {
			s.closeTCP()
			return fmt.Errorf("listen (TCP service) %s: %w", addr, err)
		}
		s.tcpLns = append(s.tcpLns, ln)
	}
	return nil
}

func (s *Server) closeTCP() {
	for _, ln := range s.tcpLns {
		ln.Close()
	}
}

// serveTCP accepts on every TCP listener until ctx ends, then closes the
// listeners and waits up to grace for connections to finish before
// cutting them.
func (s *Server) serveTCP(ctx context.Context, grace time.Duration) {
	if len(s.tcpLns) == 0 {
		return
	}
	connCtx, cut := context.WithCancel(context.Background())
	defer cut()
	var conns sync.WaitGroup
	var accepts sync.WaitGroup
	for i, ln := range s.tcpLns {
		addr := s.cfg.TCPListens()[i]
		accepts.Add(1)
		go func() {
			defer accepts.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					if errors.Is(err, net.ErrClosed) {
						return
					}
					time.Sleep(10 * time.Millisecond) // EMFILE and the like
					continue
				}
				conns.Add(1)
				go func() {
					defer conns.Done()
					s.serveTCPConn(connCtx, addr, c)
				}()
			}
		}()
	}
	<-ctx.Done()
	s.closeTCP()
	accepts.Wait()
	done := make(chan struct{})
	go func() { conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		cut()
		<-done
	}
}

// serveTCPConn terminates TLS (unless plain), routes and forwards one
// connection.
func (s *Server) serveTCPConn(ctx context.Context, listen string, c net.Conn) {
	routes := s.snap.Load().tcp[listen]
	if routes == nil {
		c.Close()
		return
	}
	cc, err := s.gate.admit(c)
	if err != nil {
		return
	}
	c = cc
	start := time.Now()
	var conn net.Conn = c
	sni := ""
	if !routes.plain {
		tc := tls.Server(c, s.tcpTLSConf)
		c.SetDeadline(time.Now().Add(s.gate.cur().handshakeTimeout)) //nolint:errcheck // a dead conn fails the handshake
		if !s.gate.startHandshake(cc) {
			c.Close()
			return
		}
		err := tc.Handshake()
		s.gate.endHandshake(cc)
		if err != nil {
			if s.log.Logger.IsLevelEnabled(debugLevel) {
				s.log.WithError(err).WithField("client", c.RemoteAddr().String()).Debug("TCP service: TLS handshake failed")
			}
			c.Close()
			return
		}
		c.SetDeadline(time.Time{}) //nolint:errcheck
		sni = tc.ConnectionState().ServerName
		conn = tc
	} else {
		// admit's wait for a PROXY header (trusted proxies) left the
		// handshake deadline on; there is no handshake to clear it.
		c.SetDeadline(time.Time{}) //nolint:errcheck // a dead conn fails the tunnel's first read
	}
	svc := routes.match(sni)
	if svc == nil {
		svc = routes.deflt
	}
	if svc == nil {
		s.log.WithFields(logrus.Fields{"listen": listen, "sni": sni}).Debug("TCP service: no service for this name")
		conn.Close()
		return
	}
	res, err := svc.proxy.Serve(ctx, conn)
	if err != nil {
		svc.log.WithError(err).WithField("client", c.RemoteAddr().String()).Error("TCP service: no backend reached")
	}
	if s.access != nil {
		e := accessEntry{Time: start, ClientIP: hostOnly(c.RemoteAddr().String()), Method: "TCP", Host: sni, Path: listen,
			Status: tcpStatus(res, err), Bytes: res.Sent, Duration: time.Since(start), App: svc.cfg.Name, Attempts: res.Attempts}
		if res.Backend != nil {
			e.Backend = res.Backend.ID()
		}
		s.access.Log(&e)
	}
}

// tcpStatus gives a TCP connection an HTTP-like status for the access log:
// 200 forwarded, 503 no backend available, 502 none could be reached.
func tcpStatus(res upstream.TCPResult, err error) int {
	switch {
	case err == nil:
		return 200
	case errors.Is(err, upstream.ErrNoBackend):
		return 503
	}
	return 502
}

func hostOnly(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
