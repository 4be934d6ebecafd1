package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// attemptKey is the context key under which Serve leaves the request's
// attempt state for the ReverseProxy hooks (Rewrite, RoundTrip,
// ModifyResponse, ErrorHandler), which only see the request.
type attemptKey struct{}

// attempt is the forwarding state of one request: which backends it tried,
// which one answered, and the guarded request body. One allocation per
// request holds all of it.
type attempt struct {
	p        *Proxy
	t        *Target
	now      time.Time // clock reading for the current pick
	skip     func(*Backend) bool
	tried    []*Backend
	triedBuf [4]*Backend // backing array of tried for the usual 1-4 attempts
	active   *Backend    // answered; its in-flight count is held until finish
	body     replayBody
}

func newAttempt(p *Proxy, t *Target) *attempt {
	st := &attempt{p: p, t: t}
	st.tried = st.triedBuf[:0]
	st.skip = st.rejects
	return st
}

// attemptFrom returns the state Serve stored in ctx, or nil.
func attemptFrom(ctx context.Context) *attempt {
	st, _ := ctx.Value(attemptKey{}).(*attempt)
	return st
}

// finish runs when Serve returns: the response body or the upgraded
// connection is done, so the backend's in-flight count drops, and the body
// guard refuses reads from any transport goroutine that outlives the handler
// (reading a server request body after the handler returned is not allowed).
func (st *attempt) finish() {
	st.body.done.Store(true)
	if st.active != nil {
		st.active.inflight.Add(-1)
	}
}

// rejects is the balancer's skip function: backends this request already
// tried and backends in backoff.
func (st *attempt) rejects(b *Backend) bool {
	return st.wasTried(b) || !b.Up(st.now)
}

func (st *attempt) wasTried(b *Backend) bool {
	for _, t := range st.tried {
		if t == b {
			return true
		}
	}
	return false
}

// next returns the backend for the next attempt, or nil when none is left:
// the preferred one if it is usable, else the balancer's choice.
func (st *attempt) next() *Backend {
	st.now = st.p.now()
	if pref := st.t.Prefer; pref != nil && !st.rejects(pref) && st.p.pool.Contains(pref) {
		return pref
	}
	return st.p.pool.Pick(st.skip)
}

// triedString lists the tried backends as id@addr for the error log line.
func (st *attempt) triedString() string {
	var sb strings.Builder
	for i, b := range st.tried {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(b.id)
		sb.WriteByte('@')
		sb.WriteString(b.addr)
	}
	return sb.String()
}

// retryTransport is the ReverseProxy's Transport: it picks a backend per
// attempt and moves to the next one when, and only when, the connection could
// not be made and no byte of the body was read.
type retryTransport struct{ p *Proxy }

func (rt retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	st := attemptFrom(req.Context())
	if st == nil {
		return nil, errors.New("upstream: request did not come through Proxy.Serve")
	}
	return st.roundTrip(req)
}

// roundTrip is the retry loop. It is bounded by MaxAttempts and by the pool
// size: every iteration adds a backend to tried, and tried backends are never
// picked again.
//
// req is the outbound request ReverseProxy cloned for us, so changing its URL
// host and body between attempts touches no one else's data.
func (st *attempt) roundTrip(req *http.Request) (*http.Response, error) {
	var lastErr error
	for len(st.tried) < st.p.maxAttempts {
		b := st.next()
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
		b.inflight.Add(1)
		resp, err := st.p.pool.transport.RoundTrip(req)
		if err == nil {
			b.MarkSucceeded()
			st.active = b
			st.t.Chosen = b
			return resp, nil
		}
		b.inflight.Add(-1)
		lastErr = err
		var de *DialError
		if !errors.As(err, &de) {
			// A connection was made: some of the request may have been
			// sent, so it must not be replayed anywhere.
			return nil, err
		}
		if req.Context().Err() != nil {
			// The client gave up while we were connecting: not the
			// backend's fault, and nobody is waiting for a retry.
			return nil, err
		}
		b.MarkFailed(st.p.now())
		if st.body.touched.Load() {
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
