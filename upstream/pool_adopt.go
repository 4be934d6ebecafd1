package upstream

import "slices"

// Keep-alive connections across a reload. A reload builds new pools; the
// backends an app keeps would otherwise lose their idle connections with
// the old pool and dial (and handshake) them again under the first load
// after the reload. Adopt lets the new pool take them over instead.
//
// Sharing is by ownership, not by copying: an adopted connection stack
// (and an h2 pool's transport) is the same object in both pools, and its
// owner field says whose Close closes it. Requests still running on the
// old pool keep using it and put their connections back into it, where
// the new pool finds them; the old pool's Close leaves it open. Only the
// owner hands a stack on, under its own mutex and only while it is open,
// so a Close racing an Adopt either closes the stack before it changed
// hands or not at all.

// stackKey is what a connection stack is adopted by: the backend's ID,
// the address dialled and the TLS name sent and verified.
type stackKey struct{ id, addr, tlsHost string }

func keyOf(e endpoint) stackKey { return stackKey{e.cfg.ID, e.cfg.Addr, e.tlsHost} }

// Adopt hands prev's idle keep-alive connections over to p for the
// backends both pools have with the same ID, address and TLS name, and
// returns how many backends p took them for. A reload calls it on the
// new pool of an app whose transport did not change, before the pool
// serves its first request. The stacks p built for those backends are
// closed; they are empty unless p served meanwhile.
//
// Adopt takes nothing when a setting it can compare differs: protocol,
// TLS on or off, dial, response header and idle timeouts, idle
// connections per backend. Whether prev's *tls.Config makes the same
// connections as p's (roots, certificates, server name) it cannot tell;
// that is the caller's promise, and a wrong one lets p reuse connections
// verified under settings it does not have.
//
// What p adopts is p's to close from then on (see Close); prev's other
// stacks stay prev's. An h2 or h2c pool adopts prev's transport with
// every connection in it, when at least one backend matches and no
// address shared by the pools has another TLS name in p: the transport
// keys connections by address alone. Its idle connections to backends p
// does not have go after IdleConnTimeout. The WebSocket transport is
// never adopted: it keeps no connections.
//
// A closed prev or p adopts nothing, nor does prev == p. Adopt may run
// concurrently with requests, a resolver and Close on either pool, and
// prev may itself have adopted from an older pool.
func (p *Pool) Adopt(prev *Pool) int {
	if prev == nil || prev == p || !p.cfg.sameTransport(&prev.cfg) {
		return 0
	}
	stacks, tr := prev.handOver(p, p.state.Load())
	if len(stacks) == 0 {
		return 0
	}
	return p.take(stacks, tr)
}

// sameTransport reports whether the pools of c and o dial, time out and
// keep connections alike, as far as that can be compared: the TLS
// settings only by their presence.
func (c *PoolConfig) sameTransport(o *PoolConfig) bool {
	return c.protocol() == o.protocol() &&
		(c.TLS == nil) == (o.TLS == nil) &&
		c.dialTimeout() == o.dialTimeout() &&
		c.responseHeaderTimeout() == o.responseHeaderTimeout() &&
		c.idleConnTimeout() == o.idleConnTimeout() &&
		c.maxIdleConnsPerHost() == o.maxIdleConnsPerHost()
}

// handOver makes to the owner of prev's stacks whose keys the membership
// want has, and of prev's h2 transport if it may go too (see Adopt), and
// returns them. Only what prev owns moves: a stack prev adopted and a
// newer pool took already stays with that pool.
func (prev *Pool) handOver(to *Pool, want *poolState) (map[stackKey]*connStack, *h2Transport) {
	keys := make(map[stackKey]bool, len(want.eps))
	names := make(map[string]string, len(want.eps)) // address -> TLS name in to
	for _, e := range want.eps {
		keys[keyOf(e)] = true
		names[e.cfg.Addr] = e.tlsHost
	}
	prev.mu.Lock()
	defer prev.mu.Unlock()
	if prev.closed {
		return nil, nil
	}
	st := prev.state.Load()
	got := make(map[stackKey]*connStack)
	sameNames := true
	for i, s := range st.stacks {
		k := keyOf(st.eps[i])
		if name, ok := names[k.addr]; ok && name != k.tlsHost {
			sameNames = false
		}
		if keys[k] && s.owner.CompareAndSwap(prev, to) {
			got[k] = s
		}
	}
	var tr *h2Transport
	if t := prev.h2.Load(); t != nil && len(got) > 0 && sameNames && t.owner.CompareAndSwap(prev, to) {
		tr = t
	}
	return got, tr
}

// take puts the stacks handOver gave p into p's membership, and tr, if
// not nil, in place of p's h2 transport. The stacks and the transport
// they replace are closed (if p still owns them), and so are adopted
// stacks whose backend p's resolver dropped since, and all of them if p
// was closed meanwhile: p owns them, and nobody else would close them.
func (p *Pool) take(stacks map[stackKey]*connStack, tr *h2Transport) int {
	var (
		closing []*connStack
		oldTr   *h2Transport
		n       int
	)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		for _, s := range stacks {
			s.close()
		}
		if tr != nil {
			tr.CloseIdleConnections()
		}
		return 0
	}
	cur := p.state.Load()
	next := *cur
	next.stacks = slices.Clone(cur.stacks)
	for i, e := range cur.eps {
		k := keyOf(e)
		if s := stacks[k]; s != nil {
			if own := next.stacks[i]; own.owner.Load() == p {
				closing = append(closing, own)
			}
			next.stacks[i] = s
			delete(stacks, k)
			n++
		}
	}
	p.state.Store(p.withWeights(&next))
	if tr != nil {
		if oldTr = p.h2.Swap(tr); oldTr.owner.Load() != p {
			oldTr = nil // handed on to a newer pool: not p's to close
		}
	}
	p.mu.Unlock()
	for _, s := range stacks { // no longer p's members
		closing = append(closing, s)
	}
	for _, s := range closing {
		s.close()
	}
	if oldTr != nil {
		oldTr.CloseIdleConnections()
	}
	return n
}
