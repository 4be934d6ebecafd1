package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/tlsedge/tlsedge/httpsyntax"
)

// serveH1 forwards r over the package's own HTTP/1.1 client: one goroutine,
// the caller's, does the whole exchange on a pooled connection (no
// writeLoop/readLoop hand-offs, no request clone, no intermediate header
// map). Retries, error pages and logging follow Serve's contract.
func (p *Proxy) serveH1(w http.ResponseWriter, r *http.Request, t *Target) {
	st := getAttempt(p, t)
	ctx := r.Context()
	var stop func() bool
	if af, ok := ctx.(afterFuncer); ok {
		// The server's own request context (HTTP/2 streams): registered
		// directly, without the afterFuncCtx, closure and child link
		// context.AfterFunc would make around it per request.
		stop = af.AfterFunc(st.onCancel)
	} else if ctx.Done() != nil {
		// The client leaving (context cancelled) unblocks whatever waits
		// on the backend; see cancel. A context that is never cancelled
		// (Done is nil) costs nothing.
		stop = context.AfterFunc(ctx, st.onCancel)
	}
	finished := false
	defer func() {
		if !finished {
			// w panicked: the connection is in an unknown state and the
			// attempt may still be referred to.
			if stop != nil {
				stop()
			}
			st.release(true)
		}
	}()
	err := st.forward(w, r)
	// After a successful stop the callback will never run; otherwise it
	// ran or is running, and the connection it may have touched must not
	// be reused, nor the attempt that it still refers to.
	fired := stop != nil && !stop()
	st.release(fired)
	finished = true
	abort := false
	if err != nil {
		if !st.wroteHeader {
			p.fail(w, r, st, err)
		} else {
			abort = p.bodyFailed(r, err)
		}
	}
	if !fired {
		putAttempt(st)
	}
	if abort {
		// The backend broke off a response whose head is already out: only
		// a broken connection tells the client it is incomplete (a chunked
		// response would otherwise end cleanly). Servers recover this
		// panic silently; ReverseProxy does the same.
		panic(http.ErrAbortHandler)
	}
}

// cancel is the context.AfterFunc callback: the client went away, so the
// backend connection in use is given a deadline in the past, which makes
// the blocked read or write return. The flag covers a connection that is
// installed, or a deadline that is reset, after this ran.
func (st *attempt) cancel() {
	st.cancelled.Store(true)
	if c := st.cur.Load(); c != nil {
		_ = c.nc.SetDeadline(aLongTimeAgo) // a closed conn fails; nothing to do
	}
}

var errClientGone = errors.New("upstream: client went away")

// afterFuncer is a context that runs a function, in its own goroutine,
// when it is done, with context.AfterFunc's contract for the function and
// for stop; the context package looks for the same method.
type afterFuncer interface {
	AfterFunc(f func()) (stop func() bool)
}

// forward is the retry loop. It is bounded by MaxAttempts and by the pool
// size: every iteration adds a backend to tried, and tried backends are
// never picked again. It moves to the next backend when the connection
// could not be made (nothing of the request was sent), or when it was
// made and failed in a way retryAfterSend allows; every move spends from
// the retry budget.
func (st *attempt) forward(w http.ResponseWriter, r *http.Request) error {
	var lastErr error
	var ps pickState
	limit := st.p.attemptLimit()
	for len(st.tried) < limit {
		b, err := st.pick(r, &ps)
		if err != nil {
			return err
		}
		if b == nil {
			break
		}
		st.tried = append(st.tried, b)
		st.t.Attempts = len(st.tried)
		err = st.try(w, r, b)
		if err == nil || st.active != nil {
			return err
		}
		st.p.releaseSlot(b)
		if r.Context().Err() != nil {
			// The client gave up: not the backend's fault, and nobody is
			// waiting for a retry.
			return err
		}
		var de *DialError
		switch {
		case errors.As(err, &de) && !st.bodyRead:
			if now := st.p.now(); b.MarkFailed(now) {
				st.p.ejected(b, now, err.Error())
			}
		case st.retryAfterSend(r, err):
			st.dropConn()
			st.p.failed(b, err)
		default:
			// Some of the request may have been acted on: it must not be
			// replayed anywhere.
			if isTimeout(err) {
				st.p.failed(b, err)
			}
			return err
		}
		lastErr = err
	}
	if lastErr != nil {
		return lastErr
	}
	return ErrNoBackend
}

// failed counts a failed answer of b against its passive threshold.
func (p *Proxy) failed(b *Backend, err error) {
	if now := p.now(); b.Fail(now, p.passiveFails) {
		p.ejected(b, now, strconv.Itoa(p.passiveFails)+" failed answers in a row, the last: "+err.Error())
	}
}

// ejected logs an ejection by passive health and tells OnEject.
func (p *Proxy) ejected(b *Backend, now time.Time, why string) {
	logEjected(p.log, b, now, why)
	if p.onEject != nil {
		p.onEject(b)
	}
}

// try sends r to b on an idle or new connection. A reused connection that
// turns out dead before answering is replaced once by a new one (stale).
func (st *attempt) try(w http.ResponseWriter, r *http.Request, b *Backend) error {
	s := st.p.pool.stack(b)
	st.stack = s
	c, err := st.connect(r, s)
	if err != nil {
		return err
	}
	err = st.exchange(w, r, c, b)
	if err != nil && st.stale(r, err) {
		st.dropConn()
		if c, err = s.dial(r.Context()); err != nil {
			return err
		}
		err = st.exchange(w, r, c, b)
	}
	return err
}

// maxProbes bounds the idle connections examined per request before
// dialling a new one.
const maxProbes = 8

// connect takes the most recently used idle connection to s, or dials.
// Before a request that could not be replayed (a body, an unsafe method),
// an idle connection is probed: a backend that closed it while idle would
// otherwise turn the request into a 502.
func (st *attempt) connect(r *http.Request, s *connStack) (*h1Conn, error) {
	now := st.realNow()
	probe := !replayable(r)
	for range maxProbes {
		c := s.get(now)
		if c == nil {
			break
		}
		if !probe || c.alive() {
			return c, nil
		}
		c.close()
	}
	return s.dial(r.Context())
}

// stale reports whether a failed exchange on a reused connection may be
// repeated on a new one: the backend had closed the idle connection, so
// it never saw the request. That is the case when writing failed before a
// byte of the body was read, or when the connection ended (EOF or reset)
// before a byte of the response, for requests safe to replay.
func (st *attempt) stale(r *http.Request, err error) bool {
	c := st.conn
	if c == nil || !c.reused || st.active != nil || st.respRead > 0 || st.cancelled.Load() {
		return false
	}
	var be *backendError
	if !errors.As(err, &be) {
		return false // a client body error or a request we cannot send
	}
	if st.writeFailed {
		return !st.bodyRead
	}
	return replayable(r) && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET))
}

// setConn makes c the connection in use (and the one cancel cuts).
func (st *attempt) setConn(c *h1Conn) error {
	st.conn = c
	st.cur.Store(c)
	st.writeFailed, st.respRead = false, 0
	if st.cancelled.Load() {
		return errClientGone
	}
	return nil
}

// dropConn closes the connection in use.
func (st *attempt) dropConn() {
	if c := st.conn; c != nil {
		st.cur.Store(nil)
		st.conn = nil
		c.close()
	}
}

// release ends the request's hold on its connection and backend: the
// connection goes back to the idle stack if the exchange left it clean,
// else it is closed; the backend's in-flight count drops; the copy buffer
// goes back to its pool.
func (st *attempt) release(fired bool) {
	if c := st.conn; c != nil {
		if st.keep && !fired && !st.cancelled.Load() {
			st.cur.Store(nil)
			st.conn = nil
			done := st.doneAt
			if done.IsZero() {
				done = time.Now()
			}
			st.stack.put(c, done)
		} else {
			st.dropConn()
		}
	}
	if st.active != nil {
		st.p.releaseSlot(st.active)
	}
	if st.buf != nil {
		st.p.bufs.Put(st.buf)
		st.buf = nil
	}
}

// exchange sends r on c and copies the response to w.
func (st *attempt) exchange(w http.ResponseWriter, r *http.Request, c *h1Conn, b *Backend) error {
	if err := st.setConn(c); err != nil {
		return err
	}
	werr := st.writeRequest(c, r, b.addr)
	if werr != nil && (!st.writeFailed || !st.bodyRead) {
		return werr
	}
	var h respHead
	f, err := st.readHead(c, r, &h)
	if err != nil {
		if werr != nil {
			return werr
		}
		return err
	}
	// With werr set, the backend stopped taking the body and answered
	// early (413, 401 before reading a large upload): that answer is
	// worth more than a 502. The connection is not reused.
	if h.status >= 500 && st.p.passive5xx {
		st.p.failed(b, errors.New("status "+strconv.Itoa(h.status)))
	} else if b.MarkSucceeded(st.now) {
		logRecovered(st.p.log, b, "answered a request")
	}
	headAt := time.Now()
	b.ObserveLatency(headAt.Sub(st.now))
	st.t.HeadAt = headAt
	st.active = b
	st.t.Chosen = b
	// The head is in; the body may stream for as long as it likes. A
	// body already in the buffer needs no read, and the head's deadline
	// can stay for the next request (headDeadline).
	if !(f == bodyNone || f == bodySized && int64(c.br.Buffered()) >= h.length) {
		if err := c.noReadDeadline(); err != nil {
			return &backendError{op: "read response body", err: err}
		}
	}
	if st.cancelled.Load() {
		return errClientGone
	}
	o := bodyOut{w: w, stream: f == bodyChunked || f == bodyToEOF}
	if rf := httpsyntax.RawFieldsOf(w, true); rf != nil {
		// The writer sends the lines as they came unless a layer asks
		// for the map; the lines alias c.br, unread until WriteHeader.
		ok, stream := fillRaw(rf, &h, f)
		if !ok {
			rf.Reset(nil, -1)
			stream = copyFields(w.Header(), &h, f)
		}
		o.stream = o.stream || stream
	} else if copyFields(w.Header(), &h, f) {
		o.stream = true
	}
	w.WriteHeader(h.status)
	st.wroteHeader = true
	// The head counts as written: if the body makes us wait, the client
	// sees the head first (an event stream may be silent for minutes).
	o.dirty = true
	switch f {
	case bodySized:
		err = st.copyN(&o, c.br, h.length)
	case bodyChunked:
		err = st.copyChunked(&o, c.br, w.Header())
	case bodyToEOF:
		err = st.copyToEOF(&o, c.br)
	}
	if err != nil {
		return err
	}
	st.keep = werr == nil && h.reusable(f) && c.br.Buffered() == 0
	if f == bodySized && h.length <= smallBody {
		// Copied in one write: the head's time is when it ended, as far
		// as the idle timer of the connection can tell.
		st.doneAt = headAt
	} else {
		st.doneAt = time.Time{}
	}
	return nil
}

// smallBody is the largest body whose copy takes no time worth a clock
// reading of its own.
const smallBody = 16 << 10

// realNow is a reading of the real clock: the current pick's when the
// proxy picks by the real clock (microseconds old), else a new one.
func (st *attempt) realNow() time.Time {
	if st.p.realClock && !st.now.IsZero() {
		return st.now
	}
	return time.Now()
}

// readHead waits, up to ResponseHeaderTimeout, for the final response
// head, skipping 1xx interim responses (100 Continue is answered to the
// client by its own server; 103 Early Hints are dropped).
func (st *attempt) readHead(c *h1Conn, r *http.Request, h *respHead) (framing, error) {
	// The timeout counts from the end of the request. A request without
	// a body on a connection that was idle was written microseconds after
	// the pick: its clock reading will do. A dial or a body may have
	// taken long.
	now := st.realNow()
	if !c.reused || r.ContentLength != 0 || st.bodyRead {
		now = time.Now()
	}
	rht := st.p.pool.cfg.ResponseHeaderTimeout
	if err := c.headDeadline(now.Add(rht), headSlack(rht)); err != nil {
		return 0, &backendError{op: "read response head", err: err}
	}
	if st.cancelled.Load() {
		return 0, errClientGone
	}
	var err error
	if c.br.Buffered() == 0 {
		// The request has just been written: a read now almost always
		// finds nothing (EAGAIN: a wasted system call, then a park and a
		// wake-up through the poller). Letting the other runnable
		// goroutines go first, as an event loop serves every ready
		// connection before polling again, gives the backend that time:
		// S1 +8 %, S4 +18 % on one core, p99 no worse (docs/performance.md).
		// With nothing else runnable it returns at once.
		runtime.Gosched()
	}
	for i := 0; ; i++ {
		st.scratch, err = readResponseHead(c.br, h, st.scratch, maxResponseHeaderBytes-st.respRead)
		st.respRead += h.read
		if err != nil {
			return 0, &backendError{op: "read response head", err: err}
		}
		if h.status >= 200 {
			break
		}
		if h.status == http.StatusSwitchingProtocols {
			return 0, &backendError{op: "read response head", err: errUnexpected101}
		}
		if i == maxInterim {
			return 0, &backendError{op: "read response head", err: errTooManyInterim}
		}
	}
	return h.framing(r.Method), nil
}

// fail answers a request that got no response: 499 (logged at debug
// level) when the client went away, else the error page and one log line.
func (p *Proxy) fail(w http.ResponseWriter, r *http.Request, st *attempt, err error) {
	if r.Context().Err() != nil || errors.Is(err, errClientGone) {
		// Nobody reads an answer and it is not a backend problem. 499
		// (nginx's "client closed request") is what the access log
		// records, so 5xx alerts stay about backends.
		if p.log.Logger.IsLevelEnabled(logrus.DebugLevel) {
			p.log.WithError(err).Debug("upstream: client gone before the response")
		}
		w.WriteHeader(StatusClientClosedRequest)
		return
	}
	code := StatusCode(err)
	var qe *QueueError
	if errors.As(err, &qe) {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(qe.RetryAfter/time.Second))))
	}
	if code == http.StatusBadRequest {
		// The client's body broke off: the client's problem.
		if p.log.Logger.IsLevelEnabled(logrus.DebugLevel) {
			p.log.WithError(err).Debug("upstream: request body failed")
		}
	} else {
		p.log.WithFields(p.logFields(r, st, code)).WithError(err).Error("upstream: request failed")
	}
	p.pages.write(w, code)
}

// bodyFailed logs a failure after the response head went out and reports
// whether the client's response must be aborted: yes when the backend
// broke off, no when the client is the one gone.
func (p *Proxy) bodyFailed(r *http.Request, err error) bool {
	var ce *clientWriteError
	if errors.As(err, &ce) || r.Context().Err() != nil || errors.Is(err, errClientGone) {
		if p.log.Logger.IsLevelEnabled(logrus.DebugLevel) {
			p.log.WithError(err).Debug("upstream: client gone during the response")
		}
		return false
	}
	p.log.WithError(err).Warn("upstream: response body broken off")
	return true
}

// logFields is what the error log line of a failed request says.
func (p *Proxy) logFields(r *http.Request, st *attempt, code int) logrus.Fields {
	f := logrus.Fields{
		"status": code,
		"method": r.Method,
		"host":   r.Host,
		"path":   r.URL.Path,
	}
	if st != nil {
		f["attempts"] = len(st.tried)
		f["backends"] = st.triedString()
	}
	return f
}
