// Package tlsedge is the server: listeners, the TLS configuration, the
// HTTP servers, the routing table and the immutable snapshot that a reload
// swaps. It composes certs, session and upstream, which know nothing of
// each other.
package tlsedge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"html"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/tlsedge/tlsedge/certs"
	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/logsink"
	"github.com/tlsedge/tlsedge/metrics"
	"github.com/tlsedge/tlsedge/upstream"
)

// Options are what a Server needs besides its configuration.
type Options struct {
	// Log receives the process log; required.
	Log *logrus.Logger
	// AccessLog receives one line per request; nil turns it off.
	AccessLog io.Writer
	// AccessJSON writes the access log as JSON lines instead of text.
	AccessJSON bool
	// AccessFormat, when set, formats the access log instead (common,
	// combined, a template); AccessLines writes each line on its own
	// (a syslog sink: one message per line).
	AccessFormat *logsink.AccessFormat
	AccessLines  bool
	// ProcessLogDropped, when set, reports how many process-log lines
	// (Log's) were lost because their sink fell behind: a logsink.Sink's
	// Dropped. It is read at scrape time, by the status page and at
	// shutdown, concurrently with logging, and must only grow. Nil when the
	// process log has no sink of its own (stderr).
	ProcessLogDropped func() uint64
	// TicketPeriod is how often session-ticket keys rotate (default 24h).
	TicketPeriod time.Duration
	// CertPollInterval is how often certificate files are checked for
	// changes (default 2s).
	CertPollInterval time.Duration
	// RenewCheckInterval is how often ACME certificates are checked for
	// renewal (default 10 minutes, certmagic's; tests shorten it).
	RenewCheckInterval time.Duration
	// Reread reads the configuration again (flags and file), for the
	// admin API's reload; nil: that reload is refused.
	Reread func() (*config.Config, error)
	// Version is shown on the status page.
	Version string
	// Listen opens the listening sockets (default net.Listen). A binary
	// upgrade passes one that hands over the old process's sockets.
	Listen func(network, addr string) (net.Listener, error)
	// Now is the clock for sticky-cookie lifetimes (default time.Now);
	// tests move it instead of sleeping.
	Now func() time.Time
}

// Server is one running tlsedge. Build it with New, open its sockets with
// Listen, then Serve until the context ends.
type Server struct {
	opts     Options
	log      *logrus.Entry
	cfg      *config.Config
	snap     atomic.Pointer[snapshot]
	registry *upstream.Registry
	tlsConf  *tls.Config
	// serving is set once every listener serves; draining from the moment
	// a stop begins (/healthz).
	serving, draining atomic.Bool
	tickets           *ticketRotator // nil in a cluster: the ticket ring rotates
	cluster           *clusterState  // nil unless the storage is redis://
	access            *accessLog

	tlsLn, httpLn net.Listener
	adminLn       net.Listener // nil when the admin listener is off
	adminSrv      *http.Server
	tcpLns        []net.Listener // TCP services, in cfg.TCPListens order
	tcpTLSConf    *tls.Config    // TLS of TCP services: no ALPN
	listening     bool           // Listen ran
	tlsSrv        *http.Server   // HTTP/2 only; HTTP/1.1 is served by serveH1
	h2srv         *h2Server      // serves the connections that chose "h2" (h2srv*.go)
	h2conns       h2Conns        // HTTP/2 connections being served
	httpSrv       *http.Server
	handler       http.Handler // routes a request to its app

	gate         *frontGate                 // PROXY headers, per-client limits, timeouts
	idle         atomic.Pointer[idlePoller] // parked idle HTTP/1.x connections; nil: they do not park
	metrics      *metrics.Metrics
	runner       snapRunner // the running snapshot's background work
	shuttingDown atomic.Bool
	conns        connTracker
	dates        dateCache
}

const debugLevel = logrus.DebugLevel

// New compiles the configuration completely — certificates, keys, routes,
// pools — and opens nothing. Any error names what is wrong; a Server is
// only returned when everything is ready to serve.
func New(cfg *config.Config, opts Options) (*Server, error) {
	if opts.Log == nil {
		return nil, errors.New("tlsedge: Options.Log is required")
	}
	s := &Server{
		opts:     opts,
		log:      opts.Log.WithField("component", "server"),
		cfg:      cfg,
		registry: upstream.NewRegistry(),
	}
	gate, err := newFrontGate(&cfg.Frontend)
	if err != nil {
		return nil, err
	}
	s.gate = gate
	if err := s.openCluster(); err != nil {
		return nil, err
	}
	s.metrics = metrics.New()
	if opts.AccessLog != nil {
		s.access = newAccessLog(opts.AccessLog, opts.AccessJSON)
		s.access.custom, s.access.lines = opts.AccessFormat, opts.AccessLines
	}
	snap, err := compile(cfg, s.compileDeps())
	if err != nil {
		return nil, err
	}
	s.snap.Store(snap)
	s.scrapeSources()
	s.handler = http.HandlerFunc(s.serveHTTPS)
	s.tlsConf = s.newTLSConfig()
	// TCP services speak whatever protocol the client does: no ALPN, so a
	// client offering one (xmpp-client, postgresql) is not refused.
	s.tcpTLSConf = s.tlsConf.Clone()
	s.tcpTLSConf.NextProtos = nil
	s.tcpTLSConf.GetConfigForClient = nil // client certificates are asked for by apps only
	if s.cluster != nil {
		s.setTicketKeys(s.cluster.tickets.Keys()) // the cluster's, rotated by it
		return s, nil
	}
	s.tickets, err = newTicketRotator(s.tlsConf, opts.TicketPeriod, opts.Log.WithField("component", "tls"))
	if err != nil {
		return nil, err
	}
	return s, nil
}

// newTLSConfig is the frontend's TLS policy: TLS 1.2 and 1.3 only, AEAD
// suites with forward secrecy only, X25519 then P-256, ALPN h2 then
// http/1.1. The certificate comes from the current snapshot, so a reload
// changes certificates without touching this config.
func (s *Server) newTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// TLS 1.3 suites are all AEAD and not configurable; these are the
		// TLS 1.2 ones worth keeping (Mozilla "intermediate").
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256},
		// acme-tls/1 last: only an ACME CA validating a TLS-ALPN-01
		// challenge offers it, and such a connection is closed after the
		// handshake (RFC 8737).
		NextProtos: []string{"h2", "http/1.1", certs.ACMETLS1},
		// Hosts whose apps ask for client certificates get their own
		// config; every other handshake uses this one as it is.
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			if p := s.snap.Load().clientAuth.lookup(hello.ServerName); p != nil {
				return p.tlsConfig(s.tlsConf, hello), nil
			}
			return nil, nil
		},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			snap := s.snap.Load()
			if certs.IsChallengeHello(hello) {
				if snap.acme == nil {
					return nil, errors.New("TLS-ALPN-01 challenge, but ACME is not configured")
				}
				return snap.acme.ChallengeCert(hello)
			}
			cert, err := snap.certs.GetCertificate(hello)
			// Built with -tags openssl, RSA keys sign through libcrypto
			// (4x faster than crypto/rsa); otherwise cert as it is.
			return certs.FastSigner(cert), err
		},
	}
}

// Listen opens the TLS and plain-HTTP sockets, so that "address in use"
// is reported before anything is announced as serving.
//
// A configuration of TCP services only (no apps) opens no HTTP(S)
// listener: a stunnel replacement does not take ports 443 and 80.
func (s *Server) Listen() error {
	if len(s.cfg.Apps) == 0 {
		if err := s.listenTCP(); err != nil {
			return err
		}
		if err := s.listenAdmin(); err != nil {
			return err
		}
		s.listening = true
		return nil
	}
	ln, err := s.listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen (HTTPS) %s: %w", s.cfg.Listen, err)
	}
	s.tlsLn = ln
	if s.cfg.HTTPListen != config.Off {
		hl, err := s.listen("tcp", s.cfg.HTTPListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen (HTTP) %s: %w", s.cfg.HTTPListen, err)
		}
		s.httpLn = hl
	}
	if err := s.listenTCP(); err != nil {
		ln.Close()
		if s.httpLn != nil {
			s.httpLn.Close()
		}
		return err
	}
	if err := s.listenAdmin(); err != nil {
		return err
	}
	s.listening = true
	return nil
}

// listenAdmin opens the admin listener unless it is off.
func (s *Server) listenAdmin() error {
	if s.cfg.Admin == config.Off || s.cfg.Admin == "" {
		return nil
	}
	al, err := s.listen("tcp", s.cfg.Admin)
	if err != nil {
		s.closeListeners()
		return fmt.Errorf("listen (admin) %s: %w", s.cfg.Admin, err)
	}
	s.adminLn = al
	return nil
}

// closeListeners closes what Listen opened, after a later one failed.
func (s *Server) closeListeners() {
	for _, ln := range append([]net.Listener{s.tlsLn, s.httpLn}, s.tcpLns...) {
		if ln != nil {
			ln.Close()
		}
	}
}

// AdminAddr is the bound admin address, nil when off.
func (s *Server) AdminAddr() net.Addr {
	if s.adminLn == nil {
		return nil
	}
	return s.adminLn.Addr()
}

func (s *Server) listen(network, addr string) (net.Listener, error) {
	if s.opts.Listen != nil {
		return s.opts.Listen(network, addr)
	}
	return net.Listen(network, addr)
}

// TLSAddr is the bound HTTPS address (useful with port 0).
func (s *Server) TLSAddr() net.Addr { return s.tlsLn.Addr() }

// TCPAddrs are the bound addresses of the TCP services' listeners, in
// the order of the configuration's listen addresses.
func (s *Server) TCPAddrs() []net.Addr {
	var out []net.Addr
	for _, ln := range s.tcpLns {
		out = append(out, ln.Addr())
	}
	return out
}

// HTTPAddr is the bound plain-HTTP address, nil when off.
func (s *Server) HTTPAddr() net.Addr {
	if s.httpLn == nil {
		return nil
	}
	return s.httpLn.Addr()
}

// Shutdown timeouts: in-flight requests get this long to finish.
const shutdownGrace = config.DefaultShutdownTimeout

// grace is how long in-flight requests get at a shutdown.
func (s *Server) grace() time.Duration {
	if d := s.cfg.ShutdownTimeout.D(); d > 0 {
		return d
	}
	return shutdownGrace
}

// Serve serves until ctx ends, then stops accepting, lets in-flight
// requests finish (up to shutdownGrace), flushes the access log and returns.
func (s *Server) Serve(ctx context.Context) error {
	if !s.listening {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	var err error
	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	var wg sync.WaitGroup
	goRun := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	if s.access != nil {
		goRun(func() { s.access.Run(bg) })
	}
	if s.tickets != nil {
		tick := time.NewTicker(s.tickets.period)
		defer tick.Stop()
		goRun(func() { s.tickets.Run(bg, tick.C) })
	}
	if s.cluster != nil {
		goRun(func() { s.cluster.run(bg, s) })
	}
	snap := s.snap.Load()
	s.runner.mu.Lock()
	s.runner.bg = bg
	s.runner.start(snap)
	s.runner.mu.Unlock()
	defer func() {
		s.runner.mu.Lock()
		s.runner.stop()
		s.runner.bg = nil // no reload after the end
		s.runner.mu.Unlock()
	}()

	errLog, closeErrLog := newStdLogger(s.opts.Log.WithField("component", "http"))
	// Its pipe has a reader goroutine that holds the logger: end it.
	defer closeErrLog()
	s.tlsSrv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.gate.cur().headerTimeout,
		IdleTimeout:       s.gate.cur().idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          errLog,
		// No TLSConfig: connections arrive handshaken, and
		// http2.ConfigureServer (in newH2Server) would write to it.
	}
	s.tlsSrv.SetKeepAlivesEnabled(true)
	if s.h2srv, err = newH2Server(s.tlsSrv); err != nil {
		return err
	}
	if s.tlsLn != nil {
		idle, err := newIdlePoller(s.wakeH1, s.closeParked)
		if err != nil {
			s.log.WithError(err).Warn("idle HTTP/1.1 connections will keep their goroutine and state (more memory each)")
		}
		s.idle.Store(idle)
		defer idle.shutdown() // waitConns ended it, unless Serve returns early
	}
	errc := make(chan error, 4)
	if s.tlsLn != nil {
		go func() { errc <- s.acceptLoop(bg, s.tlsLn) }()
	}
	if s.httpLn != nil {
		s.httpSrv = &http.Server{
			Handler:           s.withHealthz(http.HandlerFunc(s.serveRedirect)),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       30 * time.Second,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          errLog,
		}
		go func() { errc <- serveErr(s.httpSrv.Serve(s.httpLn)) }()
	}
	if s.adminLn != nil {
		h, err := s.adminHandler()
		if err != nil {
			return err
		}
		s.adminSrv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog}
		go func() { errc <- serveErr(s.adminSrv.Serve(s.adminLn)) }()
	}
	tcpDone := make(chan struct{})
	go func() { defer close(tcpDone); s.serveTCP(bg, s.grace()) }()
	s.logStartup(snap)
	s.serving.Store(true)

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.draining.Store(true)
	if d := s.cfg.ShutdownDelay.D(); d > 0 && err == nil {
		// /healthz says 503 from now on; the layer in front takes this
		// instance out while it still serves everything.
		s.log.WithField("delay", d.String()).Info("draining: /healthz answers 503, serving on until the layer in front has taken this instance out")
		time.Sleep(d)
	}
	s.log.Info("shutting down: no new connections, finishing requests in flight")
	s.shuttingDown.Store(true)
	if s.tlsLn != nil {
		s.tlsLn.Close()
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.grace())
	defer cancel()
	var wg2 sync.WaitGroup
	wg2.Add(1)
	go func() {
		defer wg2.Done()
		if e := s.h2conns.shutdown(sctx); e != nil {
			s.log.WithError(e).Warn("HTTP/2 requests still in flight at the shutdown deadline were cut")
		}
	}()
	if e := s.waitConns(sctx); e != nil {
		s.log.WithError(e).Warn("HTTP/1.1 requests still in flight at the shutdown deadline were cut")
	}
	wg2.Wait()
	if s.httpSrv != nil {
		s.httpSrv.Shutdown(sctx) //nolint:errcheck // redirects are instant
	}
	if s.adminSrv != nil {
		s.adminSrv.Shutdown(sctx) //nolint:errcheck // status reads are instant
	}
	stopBG()
	<-tcpDone
	wg.Wait()
	if s.access != nil && s.access.Dropped() > 0 {
		s.log.WithField("dropped", s.access.Dropped()).Warn("access log lines were dropped because the sink was slow")
	}
	// This goes through the process log itself: a sink still stalled drops
	// the warning too, but one that has recovered gets it before the
	// caller's Close, which waits for the queue, returns.
	if n := s.processLogDropped(); n > 0 {
		s.log.WithField("dropped", n).Warn("process log lines were dropped because the sink was slow")
	}
	return err
}

func serveErr(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// serveHTTPS hands a request to the current snapshot: the frontend
// filters, then routing to an app.
func (s *Server) serveHTTPS(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 2 {
		s.metrics.StreamOpened()
		defer s.metrics.StreamClosed()
	}
	snap := s.snap.Load()
	if snap.access == nil {
		snap.front.ServeHTTP(w, r)
		return
	}
	rw := newRefusalWriter(w, time.Now())
	snap.front.ServeHTTP(rw, r)
	if !rw.logged {
		snap.logFront(rw, r)
	}
	rw.release()
}

// serveRedirect answers every plain-HTTP request with a permanent redirect
// to the same URL over HTTPS. 308 (not 301) keeps the method and body.
func (s *Server) serveRedirect(w http.ResponseWriter, r *http.Request) {
	if a := s.snap.Load().acme; a != nil && a.HandleHTTPChallenge(w, r) {
		return
	}
	host := canonicalHost(r.Host)
	if host == "" {
		writePage(w, http.StatusBadRequest, "Bad request", "A Host header is required.")
		return
	}
	if strings.IndexByte(host, ':') >= 0 { // an IPv6 literal
		host = "[" + host + "]"
	}
	if _, port, err := net.SplitHostPort(s.tlsLn.Addr().String()); err == nil && port != "443" {
		host += ":" + port
	}
	target := "https://" + host + r.URL.RequestURI()
	w.Header().Set("Location", target)
	w.Header().Set("Connection", "close")
	w.WriteHeader(http.StatusPermanentRedirect)
}

func (s *Server) logStartup(snap *snapshot) {
	if s.tlsLn != nil {
		s.log.WithField("address", s.tlsLn.Addr().String()).Info("listening for HTTPS (HTTP/2, HTTP/1.1)")
	}
	if s.httpLn != nil {
		s.log.WithField("address", s.httpLn.Addr().String()).Info("listening for plain HTTP (redirects to HTTPS)")
	}
	if s.adminLn != nil {
		s.log.WithField("address", s.adminLn.Addr().String()).Info("admin listening: status page, API, /metrics")
	}
	for i, ln := range s.tcpLns {
		r := snap.tcp[s.cfg.TCPListens()[i]]
		kind := "TLS"
		if r.plain {
			kind = "plain"
		}
		s.log.WithFields(logrus.Fields{"address": ln.Addr().String(), "listener": kind}).Info("listening for TCP services")
	}
	for _, t := range snap.tcpServices {
		ids := make([]string, 0, len(t.cfg.Backends))
		for _, b := range t.cfg.Backends {
			ids = append(ids, b.Addr)
		}
		s.log.WithFields(logrus.Fields{"tcp": t.cfg.Name, "listen": t.cfg.Listen, "hosts": t.cfg.Hosts, "backends": ids,
			"backend_tls": t.cfg.BackendTLS != nil, "proxy_protocol": t.cfg.ProxyProtocol}).Info("TCP service")
	}
	for _, a := range snap.apps {
		ids := make([]string, 0, len(a.cfg.Backends))
		for _, b := range a.cfg.Backends {
			ids = append(ids, b.Addr+"*"+strconv.Itoa(b.Weight)+"("+b.ID+")")
		}
		sticky := "off"
		if a.cfg.Sticky != nil {
			sticky = "cookie " + a.cfg.Sticky.CookieName()
		}
		s.log.WithFields(logrus.Fields{
			"app": a.cfg.Name, "hosts": a.cfg.Hosts, "path": a.cfg.Path,
			"backends": ids, "sticky": sticky,
		}).Info("app")
		for _, h := range a.cfg.Hosts {
			s.log.WithFields(logrus.Fields{"host": h, "source": snap.describeCert(h)}).Info("certificate")
		}
	}
}

// writePage answers with a small self-contained HTML page. Nothing about
// the gateway's internals goes into it.
func writePage(w http.ResponseWriter, status int, title, msg string) {
	body := "<!doctype html><html><head><meta charset=utf-8><title>" + strconv.Itoa(status) + " " + html.EscapeString(title) +
		"</title><style>body{font:16px system-ui,sans-serif;margin:4em auto;max-width:36em;color:#333}</style></head><body><h1>" +
		html.EscapeString(title) + "</h1><p>" + html.EscapeString(msg) + "</p></body></html>\n"
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write([]byte(body)) //nolint:errcheck // the client went away
}

// newStdLogger routes net/http's internal messages (TLS handshake errors
// from scanners, mostly) into logrus at debug level: useful when chasing a
// problem, noise otherwise.
func newStdLogger(e *logrus.Entry) (*log.Logger, func()) {
	w := e.WriterLevel(logrus.DebugLevel)
	return log.New(w, "", 0), func() { w.Close() }
}
