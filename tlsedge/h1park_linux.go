package tlsedge

import (
	"container/heap"
	"crypto/tls"
	"errors"
	"os"
	"sync"
	"syscall"
	"time"
)

// idlePoller holds the parked HTTP/1.x connections (h1park.go): an epoll
// set over their sockets, one-shot (readable, or hung up), and their idle
// deadlines in a heap. One goroutine waits on the epoll descriptor
// through the runtime's own poller (an epoll descriptor is itself
// pollable), with the earliest idle deadline as its read deadline: no
// thread is blocked, and no goroutine per connection.
//
// A parked connection is the poller's until the poller gives it to wake
// (readable) or expire (idle timeout, shutdown): whoever takes it out of
// parked under mu owns it. Sockets are only touched through their
// RawConn, so a connection closed meanwhile (the shutdown's closeAll) is
// an error, never another connection's descriptor.
type idlePoller struct {
	file   *os.File // the epoll descriptor, waited on through the runtime's poller
	epfd   int
	wake   func(*h1Link) // must not block: it runs on the poller's goroutine
	expire func(*h1Link) // runs on a goroutine of its own (tls.Conn.Close writes)
	done   chan struct{} // closed when run returns

	mu     sync.Mutex
	closed bool
	parked map[uint64]*h1Link // by token, the data of its epoll event
	byEnd  idleHeap
	token  uint64 // the last one given
}

// newIdlePoller starts the poller's goroutine; shutdown ends it.
func newIdlePoller(wake, expire func(*h1Link)) (*idlePoller, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	// Non-blocking, so that os.NewFile hands it to the runtime's poller.
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	p := &idlePoller{file: os.NewFile(uintptr(fd), "idle-epoll"), epfd: fd, wake: wake, expire: expire,
		done: make(chan struct{}), parked: map[uint64]*h1Link{}}
	rc, err := p.file.SyscallConn()
	if err == nil {
		err = p.file.SetReadDeadline(time.Time{}) // fails unless the runtime polls it
	}
	if err != nil {
		p.file.Close()
		return nil, err
	}
	go p.run(rc)
	return p, nil
}

// canPark reports whether tc's socket can be handed to an idlePoller: a
// TCP connection, possibly behind the gate's clientConn, with nothing
// read ahead (the handshake took what a PROXY header left).
func canPark(tc *tls.Conn) bool {
	if cc, ok := tc.NetConn().(*clientConn); ok && len(cc.ahead) > 0 {
		return false
	}
	_, ok := socketOf(tc)
	return ok
}

func socketOf(tc *tls.Conn) (syscall.Conn, bool) {
	nc := tc.NetConn()
	if cc, ok := nc.(*clientConn); ok {
		nc = cc.Conn
	}
	sc, ok := nc.(syscall.Conn)
	return sc, ok
}

// park adds l, whose tls.Conn holds no whole record (a read just timed
// out), until its socket is readable or l.idleEnd passes; false when it
// cannot (shut down, socket closed), and the caller keeps l.
func (p *idlePoller) park(l *h1Link) bool {
	if p == nil {
		return false
	}
	sc, ok := socketOf(l.tc)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.token++
	l.token = p.token
	// Level-triggered: bytes that came before the registration are
	// reported at once. One-shot: the socket is re-armed (MOD) when the
	// connection parks again, and leaves the set when it is closed.
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
		Fd: int32(uint32(l.token)), Pad: int32(uint32(l.token >> 32))}
	var cerr error
	err = rc.Control(func(fd uintptr) {
		if l.registered {
			if cerr = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, int(fd), &ev); cerr != syscall.ENOENT {
				return
			}
		}
		cerr = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err != nil || cerr != nil {
		return false
	}
	l.registered = true
	p.parked[l.token] = l
	heap.Push(&p.byEnd, l)
	if l.heapIdx == 0 {
		p.file.SetReadDeadline(l.idleEnd) //nolint:errcheck // checked pollable in newIdlePoller
	}
	return true
}

// run waits for readable sockets and idle deadlines until shutdown.
func (p *idlePoller) run(rc syscall.RawConn) {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 64)
	for {
		var n int
		var werr error
		err := rc.Read(func(fd uintptr) bool {
			for {
				n, werr = syscall.EpollWait(int(fd), events, 0)
				if werr != syscall.EINTR {
					return n > 0 || werr != nil // false: wait until it is readable
				}
			}
		})
		switch {
		case err == nil && werr == nil:
			p.ready(events[:n])
		case errors.Is(err, os.ErrDeadlineExceeded):
			p.expireDue(time.Now())
		default: // closed by shutdown; or epoll_wait failed: nobody waits any more
			p.closeAll()
			return
		}
	}
}

// ready wakes the connections of events.
func (p *idlePoller) ready(events []syscall.EpollEvent) {
	for _, ev := range events {
		token := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
		p.mu.Lock()
		l := p.parked[token]
		if l != nil {
			delete(p.parked, token)
			heap.Remove(&p.byEnd, l.heapIdx)
		}
		p.mu.Unlock()
		if l != nil {
			p.wake(l)
		}
	}
}

// expireDue ends the connections whose idle time is over and sets the
// next deadline. (One that fires early, its connection woken, finds
// nothing due.)
func (p *idlePoller) expireDue(now time.Time) {
	var due []*h1Link
	p.mu.Lock()
	for len(p.byEnd) > 0 && !p.byEnd[0].idleEnd.After(now) {
		l := heap.Pop(&p.byEnd).(*h1Link)
		delete(p.parked, l.token)
		due = append(due, l)
	}
	var next time.Time
	if len(p.byEnd) > 0 {
		next = p.byEnd[0].idleEnd
	}
	p.file.SetReadDeadline(next) //nolint:errcheck // checked pollable in newIdlePoller
	p.mu.Unlock()
	p.expireAll(due)
}

func (p *idlePoller) expireAll(ls []*h1Link) {
	if len(ls) == 0 {
		return
	}
	go func() {
		for _, l := range ls {
			p.expire(l)
		}
	}()
}

// closeAll refuses further parking and expires every parked connection.
func (p *idlePoller) closeAll() {
	p.mu.Lock()
	p.closed = true
	all := make([]*h1Link, 0, len(p.parked))
	for _, l := range p.parked {
		all = append(all, l)
	}
	clear(p.parked)
	p.byEnd = nil
	p.mu.Unlock()
	p.expireAll(all)
}

// shutdown closes every parked connection and ends the poller's
// goroutine; parking is refused from then on. Safe to repeat, and on nil.
func (p *idlePoller) shutdown() {
	if p == nil {
		return
	}
	p.closeAll()
	p.file.Close() // ends run's wait
	<-p.done
}
