package logsink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// line is one queued log line. Lines come from linePool so that a Write
// costs a copy, not an allocation.
type line struct {
	sev Severity
	t   time.Time // when it was written; syslog's TIMESTAMP
	b   []byte    // the text, without its trailing newline
	// n is how many lines b holds: a writer that buffers (the access log
	// to a file) hands over many at once, and Dropped counts lines.
	n int
	// ack marks a Flush: the line has no text and ack is closed when the
	// writer reaches it.
	ack chan struct{}
}

// maxPooled keeps an occasional huge line from pinning its buffer.
const maxPooled = 64 << 10

var linePool = sync.Pool{New: func() any { return &line{b: make([]byte, 0, 512)} }}

func putLine(l *line) {
	if cap(l.b) <= maxPooled {
		l.b = l.b[:0]
		linePool.Put(l)
	}
}

// transport is a destination as the writer goroutine sees it. Only that
// goroutine calls write, flush, reopen and close; interrupt may be called
// from any goroutine.
type transport interface {
	// write hands one line on, or buffers it. An error means the line was
	// not delivered (a *batchError says how many more were lost).
	write(l *line) error
	// flush writes out what write buffered.
	flush() error
	// retryAt says whether a failed line should be written again, and not
	// before when: true for stream sockets, which reconnect.
	retryAt() (time.Time, bool)
	// reopen reopens a file by path or drops a connection.
	reopen() error
	// interrupt makes a blocked write return and refuses new connections.
	interrupt()
	close() error
	// stamped reports whether lines need their write time.
	stamped() bool
}

// batchError is a write or flush error that also lost Lines lines that
// earlier writes had buffered (not counting the line being written).
type batchError struct {
	Lines int
	Err   error
}

func (e *batchError) Error() string { return e.Err.Error() }
func (e *batchError) Unwrap() error { return e.Err }

// errBackoff is a datagram transport refusing to redial yet; the line is
// dropped without a report, the dial failure has been reported.
var errBackoff = errors.New("logsink: waiting to reconnect")

// queued puts a bounded queue and one writer goroutine in front of a
// transport. Write and WriteSeverity only copy and try to send; the
// goroutine, owned by the sink and ended by Close, does all I/O.
type queued struct {
	t       transport
	opts    Options
	sev     Severity
	stamp   bool
	ch      chan *line
	ctrl    chan chan error // Reopen requests
	quit    chan struct{}   // closed by Close
	done    chan struct{}   // closed when run returns
	closed  atomic.Bool
	dropped atomic.Uint64
	// queuedBytes is the text waiting in ch, bounded by
	// Options.QueueBytes: 4096 entries of a buffering writer's 64 KiB
	// would otherwise hold 256 MiB while the destination stalls.
	queuedBytes atomic.Int64
	// deadline is when Close stops writing; set before quit is closed.
	deadline time.Time

	lastReport time.Time // run's goroutine only
}

var (
	_ Sink           = (*queued)(nil)
	_ SeverityWriter = (*queued)(nil)
	_ Flusher        = (*queued)(nil)
)

func newQueued(t transport, opts Options) *queued {
	q := &queued{
		t:     t,
		opts:  opts,
		sev:   opts.Severity.orDefault(),
		stamp: t.stamped(),
		ch:    make(chan *line, opts.queue()),
		ctrl:  make(chan chan error),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go q.run()
	return q
}

func (q *queued) Write(p []byte) (int, error) { return q.WriteSeverity(q.sev, p) }

// WriteSeverity queues p with severity sev, or drops and counts it when
// the queue is full. It never blocks.
func (q *queued) WriteSeverity(sev Severity, p []byte) (int, error) {
	if q.closed.Load() {
		return 0, ErrClosed
	}
	text := trimNewline(p)
	n := bytes.Count(text, newline) + 1
	if q.queuedBytes.Add(int64(len(text))) > int64(q.opts.queueBytes()) {
		q.queuedBytes.Add(-int64(len(text)))
		q.dropped.Add(uint64(n))
		return len(p), nil
	}
	l := linePool.Get().(*line)
	l.sev = sev.orDefault()
	if q.stamp {
		l.t = time.Now()
	}
	l.b = append(l.b[:0], text...)
	l.n = n
	select {
	case q.ch <- l:
	default:
		q.drop(l)
	}
	return len(p), nil
}

var newline = []byte{'\n'}

// drop counts l's lines as dropped and recycles it.
func (q *queued) drop(l *line) {
	q.dropped.Add(uint64(l.n))
	q.release(l)
}

// release gives l's bytes back to the queue's budget and l to the pool.
func (q *queued) release(l *line) {
	q.queuedBytes.Add(-int64(len(l.b)))
	putLine(l)
}

// trimNewline removes one trailing "\n" or "\r\n": the sink adds its own
// line end, or none (syslog).
func trimNewline(p []byte) []byte {
	if n := len(p); n > 0 && p[n-1] == '\n' {
		p = p[:n-1]
		if n > 1 && p[n-2] == '\r' {
			p = p[:n-2]
		}
	}
	return p
}

func (q *queued) Dropped() uint64 { return q.dropped.Load() }

// Reopen asks the writer goroutine to reopen between two lines and waits
// for the result (so it waits for a write in progress).
func (q *queued) Reopen() error {
	if q.closed.Load() {
		return ErrClosed
	}
	reply := make(chan error, 1)
	select {
	case q.ctrl <- reply:
	case <-q.done:
		return ErrClosed
	}
	err := <-reply // run always answers a request it took
	q.opts.report(err)
	return err
}

// Flush implements Flusher.
func (q *queued) Flush(ctx context.Context) error {
	if q.closed.Load() {
		return ErrClosed
	}
	ack := make(chan struct{})
	select {
	case q.ch <- &line{ack: ack}:
	case <-ctx.Done():
		return ctx.Err()
	case <-q.done:
		return ErrClosed
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-q.done:
		select {
		case <-ack:
			return nil
		default:
			return ErrClosed
		}
	}
}

// Close stops accepting lines, lets the writer write what is queued for at
// most Options.CloseTimeout, then interrupts it, counts what is left as
// dropped and closes the destination. A Write racing with Close may lose
// its line uncounted. Closing twice returns nil.
func (q *queued) Close() error {
	if !q.closed.CompareAndSwap(false, true) {
		return nil
	}
	q.deadline = time.Now().Add(q.opts.closeTimeout())
	close(q.quit)
	timer := time.NewTimer(time.Until(q.deadline))
	defer timer.Stop()
	select {
	case <-q.done:
	case <-timer.C:
		q.t.interrupt()
		<-q.done
	}
	for {
		select {
		case l := <-q.ch:
			q.discard(l)
		default:
			return q.t.close()
		}
	}
}

// discard drops a line that will not be written.
func (q *queued) discard(l *line) {
	if l.ack != nil {
		close(l.ack)
		return
	}
	q.drop(l)
}

// run is the writer goroutine.
func (q *queued) run() {
	defer close(q.done)
	defer func() {
		if r := recover(); r != nil {
			q.opts.report(fmt.Errorf("logsink: writer goroutine panicked: %v\n%s", r, debug.Stack()))
		}
	}()
	for {
		select {
		case l := <-q.ch:
			q.handle(l, time.Time{})
		case reply := <-q.ctrl:
			q.flush()
			reply <- q.t.reopen()
		case <-q.quit:
			for {
				select {
				case l := <-q.ch:
					q.handle(l, q.deadline)
				default:
					q.flush()
					return
				}
			}
		}
	}
}

// handle writes one line; a zero deadline means the sink is open.
func (q *queued) handle(l *line, deadline time.Time) {
	if l.ack != nil {
		q.flush()
		close(l.ack)
		return
	}
	if !q.deliver(l, deadline) {
		q.dropped.Add(uint64(l.n))
	}
	q.release(l)
	if len(q.ch) == 0 {
		q.flush()
	}
}

// deliver writes l, waiting and writing again while a stream transport
// reconnects. It gives up, returning false, when the sink closes past its
// deadline or the transport will not retry.
func (q *queued) deliver(l *line, deadline time.Time) bool {
	for {
		if !deadline.IsZero() && time.Now().After(deadline) {
			return false
		}
		err := q.t.write(l)
		if err == nil {
			return true
		}
		if errors.Is(err, ErrClosed) { // interrupted by Close
			return false
		}
		q.lost(err)
		at, retry := q.t.retryAt()
		if !retry || !q.sleepUntil(at, deadline) {
			return false
		}
	}
}

func (q *queued) flush() {
	if err := q.t.flush(); err != nil {
		q.lost(err)
	}
}

// lost counts the buffered lines a batchError lost (a failed write's own
// line is counted by deliver) and reports err, at most once a second.
func (q *queued) lost(err error) {
	var be *batchError
	if errors.As(err, &be) {
		q.dropped.Add(uint64(be.Lines))
	}
	if err == errBackoff {
		return
	}
	if now := time.Now(); now.Sub(q.lastReport) >= time.Second {
		q.lastReport = now
		q.opts.report(err)
	}
}

// sleepUntil waits until at. It returns false when the sink closes first
// (while open) or when at is past the closing deadline.
func (q *queued) sleepUntil(at, deadline time.Time) bool {
	closing := !deadline.IsZero()
	if closing && at.After(deadline) {
		return false
	}
	d := time.Until(at)
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	if closing {
		<-timer.C
		return true
	}
	select {
	case <-timer.C:
		return true
	case <-q.quit:
		return false
	}
}
