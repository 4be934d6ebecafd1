package upstream

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// connStack is the keep-alive pool of one backend within one Pool: a LIFO
// stack of idle connections. LIFO keeps the busy few connections warm and
// lets the rest age out at the bottom, where IdleConnTimeout closes them.
//
// The mutex belongs to this backend alone and is held for a push or a pop,
// never across I/O: connections are closed after unlocking.
type connStack struct {
	addr        string
	dialer      *net.Dialer
	tls         *tls.Config // nil: plain HTTP to the backend
	maxIdle     int
	idleTimeout time.Duration

	// owner is the pool whose Close closes the stack: the pool that built
	// it, or the one that adopted it since (Pool.Adopt). It changes only
	// under the mutex of the pool that owns it then, and never after that
	// pool is closed. Other pools may still hold the stack in their state
	// and use it; they just do not close it.
	owner atomic.Pointer[Pool]

	// dials and reuses count the connections requests got: new ones and
	// idle ones taken again (ConnStats). reuses is counted under mu, which
	// get holds anyway.
	dials  atomic.Uint64
	reuses uint64

	mu     sync.Mutex
	idle   []*h1Conn // bottom (oldest) first
	closed bool      // Pool.Close ran: returned connections are closed
	reaper *time.Timer
	armed  bool // reaper is scheduled
}

func newConnStack(addr string, cfg *PoolConfig) *connStack {
	s := &connStack{
		addr:        addr,
		dialer:      &net.Dialer{Timeout: cfg.dialTimeout()},
		tls:         backendTLS(cfg.TLS, addr),
		maxIdle:     cfg.maxIdleConnsPerHost(),
		idleTimeout: cfg.idleConnTimeout(),
	}
	// Created stopped: put arms it when the first connection goes idle.
	s.reaper = time.AfterFunc(time.Hour, s.reap)
	s.reaper.Stop()
	return s
}

// backendTLS returns the client configuration for the backend at addr: a
// copy of c with ServerName set to the backend's host unless c names one,
// and HTTP/1.1 as the only ALPN protocol. nil for plain HTTP.
func backendTLS(c *tls.Config, addr string) *tls.Config {
	if c == nil {
		return nil
	}
	c = c.Clone()
	if c.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			c.ServerName = host
		}
	}
	c.NextProtos = []string{"http/1.1"}
	if c.ClientSessionCache == nil {
		// Resumed handshakes when a pooled connection is replaced.
		c.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	}
	return c
}

// get pops the most recently used idle connection, or returns nil. The
// connection has its buffers attached.
//
// The stack is ordered by idle time, so if the top has outlived
// IdleConnTimeout (the reaper has not run yet) every connection has, and
// all of them are closed.
func (s *connStack) get(now time.Time) *h1Conn {
	s.mu.Lock()
	n := len(s.idle)
	if n == 0 {
		s.mu.Unlock()
		return nil
	}
	c := s.idle[n-1]
	if now.Sub(c.idleAt) >= s.idleTimeout {
		expired := s.idle
		s.idle = nil
		s.mu.Unlock()
		for _, e := range expired {
			e.close()
		}
		return nil
	}
	s.idle[n-1] = nil
	s.idle = s.idle[:n-1]
	s.reuses++
	s.mu.Unlock()
	c.reused = true
	c.attach()
	return c
}

// dial connects a new connection. A failure is a *DialError: nothing of
// the request was sent, so it may go to another backend.
func (s *connStack) dial(ctx context.Context) (*h1Conn, error) {
	s.dials.Add(1)
	nc, err := s.dialer.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, &DialError{Addr: s.addr, Err: err}
	}
	if s.tls == nil {
		return newH1Conn(nc), nil
	}
	// Re-encryption: the handshake is part of connecting, bounded by the
	// dial timeout, and a failure (a wrong certificate) means nothing of
	// the request was sent, so another backend may take it.
	tc := tls.Client(nc, s.tls)
	hctx, cancel := context.WithTimeout(ctx, s.dialer.Timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		nc.Close()
		return nil, &DialError{Addr: s.addr, Err: fmt.Errorf("TLS handshake: %w", err)}
	}
	// A tls.Conn has no raw socket to probe: a TLS 1.3 server's session
	// tickets would look like unsolicited bytes anyway.
	return newH1Conn(tc), nil
}

// stats returns the connections dialled and the idle ones reused so far.
func (s *connStack) stats() (dials, reuses uint64) {
	s.mu.Lock()
	reuses = s.reuses
	s.mu.Unlock()
	return s.dials.Load(), reuses
}

// ConnStats returns how many connections to b requests of this pool have
// dialled (attempts, failed ones included) and how many idle keep-alive
// connections they took again: the backend connection reuse ratio. The
// counts live with b's keep-alive stack, so they carry over a reload that
// keeps it (Adopt) and start again with a new one. HTTP/2 pools, whose
// connections net/http's transport keeps, report zeros.
func (p *Pool) ConnStats(b *Backend) (dials, reuses uint64) {
	st := p.state.Load()
	i, ok := st.index[b]
	if !ok || p.cfg.usesH2() {
		return 0, 0
	}
	return st.stacks[i].stats()
}

// put makes c idle. The caller guarantees that c is between two requests:
// both bodies were transferred whole, nobody asked to close, and nothing
// is left in its read buffer. When the stack is full, the oldest
// connection goes (the one most likely to be closed by the backend soon).
func (s *connStack) put(c *h1Conn, now time.Time) {
	c.detach()
	c.idleAt = now
	var evict *h1Conn
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.close()
		return
	}
	if len(s.idle) >= s.maxIdle {
		evict = s.idle[0]
		copy(s.idle, s.idle[1:])
		s.idle[len(s.idle)-1] = nil
		s.idle = s.idle[:len(s.idle)-1]
	}
	s.idle = append(s.idle, c)
	if !s.armed {
		s.armed = true
		s.reaper.Reset(s.idleTimeout)
	}
	s.mu.Unlock()
	if evict != nil {
		evict.close()
	}
}

// reap is the reaper timer's function: it closes the connections at the
// bottom that outlived IdleConnTimeout and schedules itself for the next
// one to expire. It runs at most once per IdleConnTimeout per backend
// while connections are idle, and not at all otherwise.
func (s *connStack) reap() {
	now := time.Now()
	s.mu.Lock()
	i := 0
	for i < len(s.idle) && now.Sub(s.idle[i].idleAt) >= s.idleTimeout {
		i++
	}
	expired := append([]*h1Conn(nil), s.idle[:i]...)
	n := copy(s.idle, s.idle[i:])
	clear(s.idle[n:])
	s.idle = s.idle[:n]
	if n > 0 && !s.closed {
		s.reaper.Reset(s.idle[0].idleAt.Add(s.idleTimeout).Sub(now))
	} else {
		s.armed = false
	}
	s.mu.Unlock()
	for _, c := range expired {
		c.close()
	}
}

// close closes every idle connection and makes put close the ones still
// in use when their request ends.
func (s *connStack) close() {
	s.mu.Lock()
	s.closed = true
	s.reaper.Stop()
	s.armed = false
	idle := s.idle
	s.idle = nil
	s.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// idleLen returns the number of idle connections (tests).
func (s *connStack) idleLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.idle)
}
