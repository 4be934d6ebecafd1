package upstream

// Explain says which backend a request with target t would be sent to
// first, and why, without sending anything (`tlsedge explain`). It makes
// the decision the first attempt of Serve makes: the sticky backend when
// it is up, has a free slot and is in an active priority group (not in
// maintenance), else the balancer (or the consistent hash of t.Key). A
// round-robin pick advances the rotation by one, as a request would.
func (p *Proxy) Explain(t *Target) (*Backend, string) {
	now := p.now()
	why := ""
	if pref := t.Prefer; pref != nil {
		switch {
		case !pref.Up(now):
			why = "sticky backend " + pref.id + " is down; "
		case p.full(pref):
			why = "sticky backend " + pref.id + " has no free slot (max_conns); "
		case !p.pool.Active(pref, now):
			why = "sticky backend " + pref.id + " is in maintenance or in an inactive priority group; "
		default:
			return pref, "sticky: the cookie names " + pref.id + ", which is up (" + pref.AdminState().String() + ")"
		}
	}
	skip := func(b *Backend) bool { return !b.Up(now) || p.full(b) }
	var b *Backend
	if t.HasKey {
		b = p.pool.PickKeyAt(now, t.Key, skip)
		why += "consistent hash of the request's key"
	} else {
		name := p.pool.cfg.Balancer
		if name == "" {
			name = "roundrobin"
		}
		b = p.pool.PickAt(now, skip)
		why += "balancer " + name
	}
	if b == nil {
		return nil, why + ": no backend is up with a free slot (503, or the queue with max_conns)"
	}
	return b, why
}
