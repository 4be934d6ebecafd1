package tlsedge

import (
	"context"
	"sync"
	"time"
)

// h2Ctx is the context of an HTTP/2 request: done when its stream is
// reset, or its connection ends, so that the proxy lets go of the backend
// at once. Values and deadline are the connection's. Unlike net/http's, it
// is not cancelled when the handler returns, as HTTP/1.1's (Background) is
// not: nothing of the chain needs it.
//
// It is reused with its stream (h2StreamPool), as the request it belongs
// to is, where context.WithCancel and Request.WithContext cost every
// stream four allocations and the parent's child map (a third of the
// bytes allocated per request in the S4 profile). Whoever keeps a
// request's context after its handler returned may see it done for a
// later request of the same pooled stream; nothing of the gateway does
// (the proxy stops its AfterFunc before returning).
//
// context.AfterFunc, which the proxy uses, finds the AfterFunc method
// (otherwise it would start a goroutine per request to watch Done).
type h2Ctx struct {
	conn context.Context

	mu     sync.Mutex
	done   chan struct{} // made on first use
	err    error
	fns    []h2AfterFn
	nextID uint64 // never reset: a stale stop finds nothing
}

type h2AfterFn struct {
	id uint64
	f  func()
}

var _ context.Context = (*h2Ctx)(nil)

func (x *h2Ctx) Deadline() (time.Time, bool) { return x.conn.Deadline() }

func (x *h2Ctx) Value(key any) any { return x.conn.Value(key) }

func (x *h2Ctx) Done() <-chan struct{} {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.done == nil {
		x.done = make(chan struct{})
		if x.err != nil {
			close(x.done)
		}
	}
	return x.done
}

func (x *h2Ctx) Err() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.err
}

// AfterFunc arranges for f to run in its own goroutine when x is done
// (for context.AfterFunc and the contexts derived from x).
func (x *h2Ctx) AfterFunc(f func()) (stop func() bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.err != nil {
		go f()
		return func() bool { return false }
	}
	x.nextID++
	id := x.nextID
	x.fns = append(x.fns, h2AfterFn{id: id, f: f})
	return func() bool {
		x.mu.Lock()
		defer x.mu.Unlock()
		for i, a := range x.fns {
			if a.id == id {
				x.fns = append(x.fns[:i], x.fns[i+1:]...)
				return true
			}
		}
		return false
	}
}

// cancel makes x done with err and runs the AfterFunc functions.
func (x *h2Ctx) cancel(err error) {
	x.mu.Lock()
	if x.err != nil {
		x.mu.Unlock()
		return
	}
	x.err = err
	if x.done != nil {
		close(x.done)
	}
	fns := x.fns
	x.fns = nil
	x.mu.Unlock()
	for _, a := range fns {
		go a.f()
	}
}

// reuse readies x for the stream's next request. A context that was
// cancelled is never reused (it reports false): the goroutines its cancel
// started may not have run yet, and the context package's own (those of
// contexts derived from x) read x.Err() when they do and panic on nil.
// Cancels are rare (a reset stream, a connection that ends with streams
// open); the pool keeps the contexts of requests that completed.
func (x *h2Ctx) reuse(conn context.Context) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.err != nil {
		return false
	}
	x.conn = conn
	clear(x.fns)
	x.fns = x.fns[:0]
	return true
}
