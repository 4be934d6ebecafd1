package upstream

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"time"
)

// Which requests go to another backend after a failure:
//
//   - never sent (connect refused or timed out): always, to the next backend;
//   - sent, and the backend failed before a byte of the response (the
//     connection was reset or closed): only when the request is idempotent
//     (GET, HEAD, OPTIONS, TRACE, PUT, DELETE, or any method with an
//     Idempotency-Key header) and has no body. Bodies are streamed, not
//     buffered, so one that started to flow cannot be sent again; a POST
//     that reached a backend is never sent again;
//   - a response timeout is not retried: the backend may still be working
//     on the request, and a retry would double the load of a slow backend.
//
// Every retry spends from the app's retry budget.

// idempotent reports whether r may be applied twice with the effect of
// once (RFC 9110 section 9.2.2), or the client says so with an
// Idempotency-Key (draft-ietf-httpapi-idempotency-key-header).
func idempotent(r *http.Request) bool {
	switch r.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return r.Header.Get("Idempotency-Key") != ""
}

// retryAfterSend reports whether a request that reached backend b may go
// to another one after err: see the rules above.
func (st *attempt) retryAfterSend(r *http.Request, err error) bool {
	if st.respRead > 0 || st.wroteHeader || st.bodyRead || st.cancelled.Load() || hasBody(r) || !idempotent(r) {
		return false
	}
	var be *backendError
	return errors.As(err, &be) && connectionDropped(err)
}

// connectionDropped reports a connection the backend closed or reset.
func connectionDropped(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// isTimeout reports a backend that did not answer in time.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// RetryBudget bounds retries per app: over the last Window, retries may
// add at most Ratio of the requests, plus Min (so a quiet app can still
// retry). Finagle's and Linkerd's retry budget; the defaults are theirs
// too: 20 % over 10 s, at least 10 retries.
type RetryBudget struct {
	Ratio  float64
	Window time.Duration
	Min    int
}

// Defaults of RetryBudget.
const (
	DefaultRetryRatio  = 0.2
	DefaultRetryWindow = 10 * time.Second
	DefaultRetryMin    = 10
)

// budgetBuckets is the number of slots the window is cut into.
const budgetBuckets = 10

// retryBudget counts requests and retries in budgetBuckets time slots of a
// ring. It takes no lock: counters are atomics, and a slot that starts a
// new period is reset by whoever wins a compare-and-swap (a count racing
// the reset may be lost, which only makes the budget approximate).
type retryBudget struct {
	ratio  float64
	min    int64
	slotNs int64
	slots  [budgetBuckets]budgetSlot
}

type budgetSlot struct {
	period  atomic.Int64 // which slotNs-long period the counts belong to
	reqs    atomic.Int64
	retries atomic.Int64
}

func newRetryBudget(c RetryBudget) *retryBudget {
	if c.Ratio == 0 {
		c.Ratio = DefaultRetryRatio
	}
	if c.Window <= 0 {
		c.Window = DefaultRetryWindow
	}
	if c.Min == 0 {
		c.Min = DefaultRetryMin
	}
	return &retryBudget{ratio: c.Ratio, min: int64(c.Min), slotNs: int64(c.Window) / budgetBuckets}
}

func (rb *retryBudget) slot(now time.Time) *budgetSlot {
	period := now.UnixNano() / rb.slotNs
	s := &rb.slots[period%budgetBuckets]
	if old := s.period.Load(); old != period && s.period.CompareAndSwap(old, period) {
		s.reqs.Store(0)
		s.retries.Store(0)
	}
	return s
}

// request counts one request.
func (rb *retryBudget) request(now time.Time) { rb.slot(now).reqs.Add(1) }

// allowRetry reports whether one more retry fits the budget, and counts
// it if so.
func (rb *retryBudget) allowRetry(now time.Time) bool {
	period := now.UnixNano() / rb.slotNs
	var reqs, retries int64
	for i := range rb.slots {
		s := &rb.slots[i]
		if p := s.period.Load(); p > period-budgetBuckets && p <= period {
			reqs += s.reqs.Load()
			retries += s.retries.Load()
		}
	}
	if float64(retries) >= float64(rb.min)+rb.ratio*float64(reqs) {
		return false
	}
	rb.slot(now).retries.Add(1)
	return true
}
