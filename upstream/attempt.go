package upstream

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// attempt is the forwarding state of one request: which backends it tried,
// which one answered, the backend connection in use and what has happened
// on it. Attempts of the HTTP/1.1 path come from a pool, so a request
// allocates none; the upgrade path allocates one.
type attempt struct {
	p        *Proxy
	t        *Target
	now      time.Time           // clock reading for the current pick
	doneAt   time.Time           // when the exchange on conn ended (idle since)
	skip     func(*Backend) bool // rejects, as a func value made once
	skipDown func(*Backend) bool // rejectsDown
	tried    []*Backend
	triedBuf [4]*Backend // backing array of tried for the usual 1-4 attempts
	active   *Backend    // answered; its in-flight count is held until release

	// The HTTP/1.1 exchange (forward.go).
	onCancel  func()      // st.cancel as a func value, made once per pooled attempt
	cancelled atomic.Bool // the client's context ended
	cur       atomic.Pointer[h1Conn]
	conn      *h1Conn    // connection in use; released after the response
	stack     *connStack // where conn goes back
	keep      bool       // conn may carry another request
	buf       []byte     // body copy buffer, from the proxy's BufferPool
	scratch   []byte     // response head lines, reused across requests

	bodyRead      bool // a Read of the client's body happened: never send it again
	writeFailed   bool // the backend refused bytes of the request
	writeDeadline bool // a body write deadline is set on conn
	respRead      int  // bytes of response head consumed
	wroteHeader   bool // the response head went to the client

	// The upgrade path (upgrade.go).
	body replayBody
}

// maxPooledScratch is the largest head buffer a pooled attempt keeps; one
// grown by a huge head is left to the collector.
const maxPooledScratch = 64 << 10

var attempts = sync.Pool{New: func() any { return newAttempt(nil, nil) }}

func newAttempt(p *Proxy, t *Target) *attempt {
	st := &attempt{p: p, t: t}
	st.tried = st.triedBuf[:0]
	st.skip = st.rejects
	st.skipDown = st.rejectsDown
	st.onCancel = st.cancel
	return st
}

// getAttempt returns a pooled attempt for p and t.
func getAttempt(p *Proxy, t *Target) *attempt {
	st := attempts.Get().(*attempt)
	st.p, st.t = p, t
	return st
}

// putAttempt resets st and returns it to the pool. The caller guarantees
// that nothing refers to st any more: in particular that the cancel
// callback never ran (it may still be running otherwise).
func putAttempt(st *attempt) {
	clear(st.triedBuf[:]) // do not pin retired pools' backends
	st.p, st.t, st.now, st.doneAt = nil, nil, time.Time{}, time.Time{}
	st.tried = st.triedBuf[:0]
	st.active = nil
	st.cancelled.Store(false)
	st.cur.Store(nil)
	st.conn, st.stack, st.keep, st.buf = nil, nil, false, nil
	if cap(st.scratch) > maxPooledScratch {
		st.scratch = nil
	}
	st.bodyRead, st.writeFailed, st.writeDeadline = false, false, false
	st.respRead, st.wroteHeader = 0, false
	attempts.Put(st)
}

// rejects is the balancer's skip function: backends this request already
// tried and backends in backoff.
func (st *attempt) rejects(b *Backend) bool {
	return st.wasTried(b) || !b.Up(st.now) || st.p.full(b)
}

// rejectsDown is rejects without the load limit.
func (st *attempt) rejectsDown(b *Backend) bool {
	return st.wasTried(b) || !b.Up(st.now)
}

// slotFree reports whether a backend could take the request now.
func (st *attempt) slotFree() bool {
	st.now = st.p.now()
	return st.p.pool.PickAt(st.now, st.skip) != nil
}

// saturated reports whether a backend is up but full: the request should
// wait for a slot rather than fail.
func (st *attempt) saturated() bool {
	return st.p.maxConns > 0 && st.p.pool.PickAt(st.now, st.skipDown) != nil
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
	if st.now.IsZero() && st.p.realClock && !st.t.Start.IsZero() {
		// The first pick, microseconds after the request arrived (the
		// filters ran since). A pick after a wait in the queue, or a
		// retry, reads the clock.
		st.now = st.t.Start
	} else {
		st.now = st.p.now()
	}
	if pref := st.t.Prefer; pref != nil && !st.rejects(pref) && st.p.pool.Active(pref, st.now) {
		return pref
	}
	if st.t.HasKey {
		return st.p.pool.PickKeyAt(st.now, st.t.Key, st.skip)
	}
	return st.p.pool.PickAt(st.now, st.skip)
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

// copyBuffer returns the request's body copy buffer, taken from the
// proxy's pool on first use and returned by release.
func (st *attempt) copyBuffer() []byte {
	if st.buf == nil {
		st.buf = st.p.bufs.Get()
	}
	return st.buf
}
