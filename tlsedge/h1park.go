package tlsedge

import (
	"container/heap"
	"time"
)

// Parking. An idle HTTP/1.x connection would otherwise hold, until its
// next request or its idle timeout, the goroutine that did its handshake
// and served its requests (a stack of 8 KiB or more, which the GC halves
// at most once per cycle, and the runtime's g) and its serving state
// (h1Conn: request, header maps, writer scratch, ~4.5 KiB). Most
// connections of a busy gateway are idle. So after parkAfter without a
// request, a connection gives both back: its h1Conn goes to connPool, its
// goroutine ends, and the connection waits in the server's idlePoller (one
// goroutine and an epoll set, h1park_linux.go) until its socket is
// readable or its idle timeout passes. Nothing is read meanwhile, so no
// read buffer is needed and crypto/tls's state is not touched. The next
// request is served on a new goroutine with an h1Conn from the pool. That
// costs CPU once per wake-up of a connection silent for parkAfter (the
// timer that ends the wait, an epoll_ctl, the poller's wake-up, a new
// goroutine whose stack grows again: 15-20 µs here), never between the
// requests of a busy connection. Figures: docs/performance.md, issue 7.

// parkAfter is how long an idle connection keeps its goroutine and state
// before it parks: short, so that connections opened in a burst do not
// all hold both at once; long next to the gaps between a client's
// requests in quick succession (a page and its resources).
const parkAfter = 100 * time.Millisecond

// parkH1 hands an idle connection to the poller (runH1, when parkAfter
// passed without a request). When the poller refuses it, the connection
// closes if the server is shutting down, else it waits in a goroutine
// again, as it would without a poller (epoll's limit of watches, say).
func (s *Server) parkH1(l *h1Link) {
	switch {
	case s.idle.Load().park(l):
	case s.shuttingDown.Load():
		s.closeParked(l)
	default:
		l.parkable = false
		go s.runH1(l)
	}
}

// wakeH1 serves a parked connection whose socket became readable, on a
// goroutine of its own: the poller's must not block.
func (s *Server) wakeH1(l *h1Link) { go s.runH1(l) }

// closeParked closes a parked connection: its idle timeout passed, or the
// server is shutting down.
func (s *Server) closeParked(l *h1Link) {
	s.trackConn(l, false)
	l.tc.Close()
	s.metrics.ConnClosed("h1")
}

// idleHeap orders parked connections by the end of their idle time.
type idleHeap []*h1Link

var _ heap.Interface = (*idleHeap)(nil)

func (h idleHeap) Len() int           { return len(h) }
func (h idleHeap) Less(i, j int) bool { return h[i].idleEnd.Before(h[j].idleEnd) }
func (h idleHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}

func (h *idleHeap) Push(x any) {
	l := x.(*h1Link)
	l.heapIdx = len(*h)
	*h = append(*h, l)
}

func (h *idleHeap) Pop() any {
	old := *h
	l := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	l.heapIdx = -1
	return l
}
