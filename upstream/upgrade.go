package upstream

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync/atomic"

	"github.com/sirupsen/logrus"
)

// WebSocket upgrades go through httputil.ReverseProxy and the pool's
// net/http transport: the handshake is rare next to plain requests, and
// ReverseProxy's tunnel (hijack, two copy goroutines, cancellation) is
// worth keeping rather than rewriting.

// isWebSocket reports whether r asks to switch to WebSocket. Only
// WebSocket may switch protocols through us: ReverseProxy tunnels any
// Upgrade the backend accepts, and an "Upgrade: h2c" tunnel would let a
// client speak HTTP/2 straight to the backend, past every filter and
// route in front of it (h2c smuggling). Every other request takes the
// HTTP/1.1 path, which never forwards Upgrade.
func isWebSocket(h http.Header) bool {
	up := h["Upgrade"]
	return len(up) == 1 && strings.EqualFold(up[0], "websocket") && hasToken(h["Connection"], "upgrade")
}

// attemptKey is the context key under which serveUpgrade leaves the
// request's attempt for the ReverseProxy hooks (Rewrite, RoundTrip,
// ErrorHandler), which only see the request.
type attemptKey struct{}

// attemptFrom returns the state serveUpgrade stored in ctx, or nil.
func attemptFrom(ctx context.Context) *attempt {
	st, _ := ctx.Value(attemptKey{}).(*attempt)
	return st
}

// newReverseProxy builds the ReverseProxy of the upgrade path.
func (p *Proxy) newReverseProxy(bufs httputil.BufferPool) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite:      p.rewrite,
		Transport:    retryTransport{p},
		BufferPool:   bufs,
		ErrorHandler: p.handleError,
		ErrorLog:     log.New(logWriter{p.log}, "", 0),
	}
}

// serveUpgrade forwards a WebSocket handshake and, once the backend
// switched protocols, tunnels the connection until either side closes.
func (p *Proxy) serveUpgrade(w http.ResponseWriter, r *http.Request, t *Target) {
	st := newAttempt(p, t)
	defer st.finishUpgrade()
	out := r.WithContext(context.WithValue(r.Context(), attemptKey{}, st))
	if hasBody(r) {
		st.body.rc = r.Body
		out.Body = &st.body
	}
	p.rp.ServeHTTP(w, out)
}

// finishUpgrade runs when serveUpgrade returns: the tunnel is closed, so
// the backend's in-flight count drops, and the body guard refuses reads
// from any transport goroutine that outlives the handler (reading a server
// request body after the handler returned is not allowed).
func (st *attempt) finishUpgrade() {
	st.body.done.Store(true)
	if st.active != nil {
		st.p.releaseSlot(st.active)
	}
}

// rewrite prepares the outbound request; the backend address is filled in
// per attempt by retryTransport.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	// ReverseProxy has already removed hop-by-hop headers (and put back
	// Connection and Upgrade for the handshake) and every client-supplied
	// Forwarded/X-Forwarded-* header.
	pr.SetXForwarded()
	pr.Out.Header["Forwarded"] = []string{forwarded(pr.In)}
	pr.Out.URL.Scheme = "http"
	if p.pool.cfg.TLS != nil {
		pr.Out.URL.Scheme = "https"
	}
	if p.pool.cfg.usesH2() && !isWebSocket(pr.In.Header) {
		// HTTP/2 has no Connection-specific fields; ReverseProxy removed
		// the hop-by-hop ones already. The Host becomes :authority.
		pr.Out.Proto, pr.Out.ProtoMajor, pr.Out.ProtoMinor = "HTTP/2.0", 2, 0
	}
	pr.Out.Host = pr.In.Host
	if st := attemptFrom(pr.In.Context()); st != nil && st.body.rc != nil {
		// Lets the transport replay the body on a stale keep-alive
		// connection, and only while nothing of it was read.
		pr.Out.GetBody = st.body.getBody
	}
}

// handleError is the ReverseProxy's ErrorHandler.
func (p *Proxy) handleError(w http.ResponseWriter, r *http.Request, err error) {
	p.fail(w, r, attemptFrom(r.Context()), err)
}

// transport returns the transport for req: WebSocket handshakes always
// go over HTTP/1.1, everything else of an h2 pool over HTTP/2.
func (p *Pool) transport(req *http.Request) http.RoundTripper {
	if p.cfg.usesH2() && !isWebSocket(req.Header) {
		// Loaded per request: Adopt may have replaced it.
		return p.h2.Load().Transport
	}
	return p.upgrades
}

// retryTransport is the ReverseProxy's Transport: it picks a backend per
// attempt and moves to the next one when, and only when, the connection
// could not be made and no byte of the body was read.
type retryTransport struct{ p *Proxy }

var _ http.RoundTripper = retryTransport{}

func (rt retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	st := attemptFrom(req.Context())
	if st == nil {
		return nil, errors.New("upstream: request did not come through Proxy.Serve")
	}
	return st.roundTrip(req)
}

// roundTrip is the retry loop of the upgrade path, bounded like forward.
//
// req is the outbound request ReverseProxy cloned for us, so changing its
// URL host and body between attempts touches no one else's data.
func (st *attempt) roundTrip(req *http.Request) (*http.Response, error) {
	var lastErr error
	var ps pickState
	limit := st.p.attemptLimit()
	for len(st.tried) < limit {
		b, err := st.pick(req, &ps)
		if err != nil {
			return nil, err
		}
		if b == nil {
			break
		}
		st.tried = append(st.tried, b)
		st.t.Attempts = len(st.tried)
		if len(st.tried) > 1 && req.Body != nil {
			// The failed attempt's transport closed the body it was given
			// (ReverseProxy's wrapper, which then refuses reads); hand the
			// next one our guard, which ignores Close.
			req.Body = &st.body
		}
		req.URL.Host = b.addr
		resp, err := st.p.pool.transport(req).RoundTrip(req)
		if err == nil {
			if b.MarkSucceeded(st.p.now()) {
				logRecovered(st.p.log, b, "answered a request")
			}
			st.active = b
			st.t.Chosen = b
			return resp, nil
		}
		st.p.releaseSlot(b)
		lastErr = err
		if req.Context().Err() != nil {
			return nil, err
		}
		var de *DialError
		switch {
		case errors.As(err, &de) || h2NotEstablished(err):
			if now := st.p.now(); b.MarkFailed(now) {
				st.p.ejected(b, now, err.Error())
			}
			if st.body.touched.Load() {
				return nil, err
			}
		case !isWebSocket(req.Header) && !hasBody(req) && idempotent(req) && connectionDropped(err):
			// Sent, but the backend dropped the connection before any
			// answer: an idempotent request without a body may go on (the
			// same rule as the HTTP/1.1 path's retryAfterSend).
			st.p.failed(b, err)
		default:
			if isTimeout(err) {
				st.p.failed(b, err)
			}
			return nil, err
		}
	}
	if lastErr != nil {
		return nil, lastErr
	}
	return nil, ErrNoBackend
}

// errBodyConsumed stops the transport from replaying a body that is partly
// gone.
var errBodyConsumed = errors.New("upstream: request body already read, cannot replay")

// replayBody wraps the client's request body so that a request can move to
// another backend after a failed connect: Close is ignored (the transport
// closes the body of a failed request, and the server closes the real one
// after the handler), and touched records whether a Read ever happened, in
// which case the request is never sent again.
//
// touched is set on entry to Read, before any byte moves, so a Read still
// blocked in a transport goroutine counts as consumed.
type replayBody struct {
	rc      io.ReadCloser
	touched atomic.Bool
	done    atomic.Bool // Serve returned
}

var errBodyAfterServe = errors.New("upstream: request body read after the handler returned")

func (b *replayBody) Read(p []byte) (int, error) {
	if b.done.Load() {
		return 0, errBodyAfterServe
	}
	if !b.touched.Load() {
		b.touched.Store(true)
	}
	return b.rc.Read(p)
}

// Close is a no-op; see the type doc. The http.Server closes the real body.
func (b *replayBody) Close() error { return nil }

// getBody is the outbound request's GetBody: the same body again, as long as
// nothing was read from it.
func (b *replayBody) getBody() (io.ReadCloser, error) {
	if b.touched.Load() {
		return nil, errBodyConsumed
	}
	return b, nil
}

// logWriter turns the ReverseProxy's ErrorLog lines (tunnel copy errors)
// into warnings on the proxy's entry, without the goroutine logrus.Writer
// needs.
type logWriter struct{ e *logrus.Entry }

func (w logWriter) Write(p []byte) (int, error) {
	w.e.Warn(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
