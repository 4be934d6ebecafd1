package upstream

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Load limits: a backend takes at most MaxConns requests at once. When
// every backend that is up is full, a request waits in the app's queue,
// bounded in length and time, instead of piling onto the backends; a slot
// that frees up goes to the longest-waiting request of the highest class.
// Requests of users in the middle of a session (a valid sticky cookie) and
// those matching the configured priority paths or header are the high
// class; everything else waits behind them.

// QueueConfig configures the queue of an app whose backends have MaxConns.
type QueueConfig struct {
	// Len bounds the number of waiting requests; one more is answered
	// 503 at once. Default 256.
	Len int
	// Timeout bounds the wait; then the answer is 503. Default 5s.
	Timeout time.Duration
	// PriorityPaths are path prefixes of high-class requests (e.g. the
	// checkout), besides those with a valid sticky cookie.
	PriorityPaths []string
	// PriorityHeader names a header whose presence makes a request high
	// class (e.g. set by an earlier filter for logged-in users).
	PriorityHeader string
}

// Defaults of QueueConfig.
const (
	DefaultQueueLen     = 256
	DefaultQueueTimeout = 5 * time.Second
)

// QueueError is a request the queue turned away: full, or waited too long.
// It is answered 503 with Retry-After.
type QueueError struct {
	Reason     string
	RetryAfter time.Duration
}

func (e *QueueError) Error() string { return "upstream: " + e.Reason }

type waiter struct {
	ch   chan struct{} // closed or sent to when a slot may be free
	high bool
}

// queue holds the waiting requests of one app. Its mutex is taken only by
// requests that wait and by releases while someone waits: an app whose
// backends are not full never touches it.
type queue struct {
	cfg     QueueConfig
	waiting atomic.Int32
	mu      sync.Mutex
	classes [2][]*waiter // 0 high, 1 low; FIFO each
}

func newQueue(c QueueConfig) *queue {
	if c.Len <= 0 {
		c.Len = DefaultQueueLen
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultQueueTimeout
	}
	return &queue{cfg: c}
}

// Queued is the number of requests waiting for a backend slot, and the
// queue's bound (0, 0 without max_conns).
func (p *Proxy) Queued() (waiting, capacity int) {
	if p.queue == nil {
		return 0, 0
	}
	return p.queue.Waiting(), p.queue.cfg.Len
}

// high reports whether r is of the high class.
func (q *queue) high(r *http.Request, t *Target) bool {
	if t.Prefer != nil {
		return true
	}
	for _, p := range q.cfg.PriorityPaths {
		if strings.HasPrefix(r.URL.Path, p) {
			return true
		}
	}
	return q.cfg.PriorityHeader != "" && r.Header.Get(q.cfg.PriorityHeader) != ""
}

// wait parks the request until a slot may be free (true), or fails with a
// *QueueError or the context's error. first puts it at the head of its
// class: a woken request that lost the race for the slot keeps its turn.
//
// slotFree is asked once the request is queued: a slot freed between the
// caller's look and the queueing woke nobody, so it wakes the head now.
func (q *queue) wait(ctx context.Context, deadline time.Time, high, first bool, slotFree func() bool) error {
	w := &waiter{ch: make(chan struct{}, 1), high: high}
	q.mu.Lock()
	if int(q.waiting.Load()) >= q.cfg.Len {
		q.mu.Unlock()
		return &QueueError{Reason: "queue full (" + strconv.Itoa(q.cfg.Len) + " waiting)", RetryAfter: q.cfg.Timeout}
	}
	c := 1
	if high {
		c = 0
	}
	if first {
		q.classes[c] = append([]*waiter{w}, q.classes[c]...)
	} else {
		q.classes[c] = append(q.classes[c], w)
	}
	q.waiting.Add(1)
	q.mu.Unlock()
	if slotFree() {
		q.release()
	}

	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-w.ch:
		return nil
	case <-timer.C:
	case <-ctx.Done():
	}
	if !q.remove(w) {
		// Woken at the same moment: take the slot rather than waste it.
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return &QueueError{Reason: "queue timeout after " + q.cfg.Timeout.String(), RetryAfter: q.cfg.Timeout}
}

// remove takes w out of the queue; false if a release already did.
func (q *queue) remove(w *waiter) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for c := range q.classes {
		for i, x := range q.classes[c] {
			if x == w {
				q.classes[c] = append(q.classes[c][:i], q.classes[c][i+1:]...)
				q.waiting.Add(-1)
				return true
			}
		}
	}
	return false
}

// release wakes the first waiter, if any: a backend slot was freed.
func (q *queue) release() {
	if q.waiting.Load() == 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for c := range q.classes {
		if len(q.classes[c]) > 0 {
			w := q.classes[c][0]
			q.classes[c][0] = nil
			q.classes[c] = q.classes[c][1:]
			q.waiting.Add(-1)
			w.ch <- struct{}{}
			return
		}
	}
}

// Waiting is the number of requests in the queue.
func (q *queue) Waiting() int { return int(q.waiting.Load()) }

// tryAcquire takes one of b's max request slots; max 0 means unlimited.
func (b *Backend) tryAcquire(max int64) bool {
	if max <= 0 {
		b.inflight.Add(1)
		return true
	}
	for {
		n := b.inflight.Load()
		if n >= max {
			return false
		}
		if b.inflight.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// full reports whether b has no free slot.
func (p *Proxy) full(b *Backend) bool {
	return p.maxConns > 0 && b.inflight.Load() >= p.maxConns
}

// releaseSlot gives back b's request slot and wakes a waiting request.
func (p *Proxy) releaseSlot(b *Backend) {
	b.inflight.Add(-1)
	if p.queue != nil {
		p.queue.release()
	}
}

// pickState is what pick remembers across the attempts of one request.
type pickState struct {
	deadline time.Time // of the queue wait, from the first wait
	picked   bool      // waited or picked before: keeps its turn, never a newcomer
}

// pick returns the next backend for r with one of its request slots held
// and the attempt counted against the retry budget, or nil when no
// backend is left (or the budget is spent). When every backend that is up
// is full, or others already wait (a newcomer does not overtake them), it
// waits in the queue first; a *QueueError or the context's error ends
// the wait.
func (st *attempt) pick(r *http.Request, ps *pickState) (*Backend, error) {
	for {
		b := st.next()
		if q := st.p.queue; q != nil && (b == nil && st.saturated() || !ps.picked && b != nil && q.Waiting() > 0) {
			if ps.deadline.IsZero() {
				ps.deadline = time.Now().Add(q.cfg.Timeout)
			}
			err := q.wait(r.Context(), ps.deadline, q.high(r, st.t), ps.picked, st.slotFree)
			ps.picked = true
			if err != nil {
				return nil, err
			}
			continue
		}
		if b == nil {
			return nil, nil
		}
		if !b.tryAcquire(st.p.maxConns) {
			continue // another request took the last slot: pick again
		}
		ps.picked = true
		if len(st.tried) == 0 {
			st.p.budget.request(st.now)
		} else if !st.p.budget.allowRetry(st.now) {
			st.p.releaseSlot(b)
			st.p.log.WithField("backends", st.triedString()).Warn("upstream: retry budget spent; not retrying")
			return nil, nil
		}
		return b, nil
	}
}
