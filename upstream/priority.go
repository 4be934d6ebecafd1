package upstream

import (
	"sort"
	"time"
)

// Priority activation (backup groups): backends carry a priority, lower
// first. The first group takes all traffic while at least MinActive of its
// members are up; below that, the next group is activated alongside it
// (and the next, until MinActive up backends are reached or the groups run
// out), and released when the first group recovers. HAProxy's "backup"
// servers with "option allbackups", generalised to several levels. The
// priorities of SRV records are groups like configured ones (resolve.go).
//
// Admin states (adminstate.go) count as follows: a backend in Maint is
// not counted up; one in Drain is, so that draining one server of a group
// does not pull the next group in (the group's other servers take its new
// sessions) — but a group only suffices if at least one of the up backends
// counted so far is Ready: when all of them drain, the next group joins
// to take the new sessions, while the draining ones keep their sticky
// users (they stay in the union).

// level is the set of backends that take traffic when the groups up to it
// are active, with its own balancer over their union.
type level struct {
	priority int        // the priority of the group this level adds
	members  []*Backend // this group's backends (for counting them up)
	balancer Balancer   // over the union of this group and all before it
	union    map[*Backend]bool
	all      []*Backend // union as a slice, for the admin check of a pick
}

// buildLevels groups backends by priority and builds a balancer per
// activation level. newBalancer builds one over a union.
func buildLevels(backends []*Backend, cfgs []BackendConfig, newBalancer func([]*Backend, []int) (Balancer, error)) ([]level, error) {
	prios := map[int][]int{} // priority -> indexes
	var order []int
	for i, c := range cfgs {
		if _, ok := prios[c.Priority]; !ok {
			order = append(order, c.Priority)
		}
		prios[c.Priority] = append(prios[c.Priority], i)
	}
	sort.Ints(order)
	var levels []level
	var unionB []*Backend
	var unionW []int
	union := map[*Backend]bool{}
	for _, prio := range order {
		lv := level{priority: prio}
		for _, i := range prios[prio] {
			lv.members = append(lv.members, backends[i])
			unionB = append(unionB, backends[i])
			unionW = append(unionW, cfgs[i].Weight)
			union[backends[i]] = true
		}
		bal, err := newBalancer(append([]*Backend(nil), unionB...), append([]int(nil), unionW...))
		if err != nil {
			return nil, err
		}
		lv.balancer = bal
		lv.all = append([]*Backend(nil), unionB...)
		lv.union = make(map[*Backend]bool, len(union))
		for b := range union {
			lv.union[b] = true
		}
		levels = append(levels, lv)
	}
	return levels, nil
}

// activeLevel returns the level that takes traffic at now: the first whose
// cumulative up count reaches minActive, or the last. It is the level
// while no backend is held out by an operator; levelAt in general.
func (st *poolState) activeLevel(now time.Time, minActive int) *level {
	if len(st.levels) == 1 {
		return &st.levels[0]
	}
	up := 0
	for i := range st.levels {
		lv := &st.levels[i]
		for _, b := range lv.members {
			if b.Up(now) {
				up++
			}
		}
		if up >= minActive {
			return lv
		}
	}
	return &st.levels[len(st.levels)-1]
}

// levelAt is activeLevel with admin states (see the top of the file) when
// held says some backend may be held out: a backend in Maint does not
// count, one in Drain does, and a level is taken only once a Ready
// backend is up in it or before it.
func (st *poolState) levelAt(now time.Time, minActive int, held bool) *level {
	if !held || len(st.levels) == 1 {
		return st.activeLevel(now, minActive)
	}
	up, ready := 0, 0
	for i := range st.levels {
		lv := &st.levels[i]
		for _, b := range lv.members {
			if !b.Up(now) {
				continue
			}
			switch b.AdminState() {
			case Ready:
				ready++
			case Maint:
				continue
			}
			up++
		}
		if up >= minActive && ready > 0 {
			return lv
		}
	}
	return &st.levels[len(st.levels)-1]
}

// anyHeld reports whether a backend of the level is not Ready.
func (lv *level) anyHeld() bool {
	for _, b := range lv.all {
		if b.AdminState() != Ready {
			return true
		}
	}
	return false
}

// Active reports whether b may take a request that names it (a sticky
// session) at now: it is not in Maint, and it belongs to the backends
// taking traffic. A sticky session pinned to a backup backend stays on it
// while the backups serve, and moves back once they are released; one
// pinned to a draining backend stays on it. Whether b is up is the
// caller's to check.
func (p *Pool) Active(b *Backend, now time.Time) bool {
	if b.AdminState() == Maint {
		return false
	}
	st := p.state.Load()
	if len(st.levels) == 1 {
		_, ok := st.index[b]
		return ok
	}
	return st.levelAt(now, p.cfg.MinActive, p.reg.held.Load() != 0).union[b]
}

// PickAt asks the balancer of the level active at now; see Balancer.
// Backends that are not Ready (AdminState) are never picked: a request a
// draining backend should take comes with its sticky hint, which the
// caller checks with Active.
//
// The check costs one atomic load, of the registry's count of held
// backends: while it is 0, the pick is what it was without admin states.
func (p *Pool) PickAt(now time.Time, skip func(*Backend) bool) *Backend {
	if p.reg.held.Load() != 0 {
		return p.pickAdmin(now, false, 0, skip)
	}
	return p.state.Load().activeLevel(now, p.cfg.MinActive).balancer.Pick(skip)
}

// PickKeyAt is PickAt for a hash key: a KeyBalancer maps it to its
// backend; other balancers ignore it.
func (p *Pool) PickKeyAt(now time.Time, key uint64, skip func(*Backend) bool) *Backend {
	if p.reg.held.Load() != 0 {
		return p.pickAdmin(now, true, key, skip)
	}
	bal := p.state.Load().activeLevel(now, p.cfg.MinActive).balancer
	if kb, ok := bal.(KeyBalancer); ok {
		return kb.PickKey(key, skip)
	}
	return bal.Pick(skip)
}

// pickAdmin is a pick while a backend of the registry is held out: the
// level is chosen with admin states, and if a backend of it is held out
// the skip function is wrapped to reject it.
func (p *Pool) pickAdmin(now time.Time, keyed bool, key uint64, skip func(*Backend) bool) *Backend {
	lv := p.state.Load().levelAt(now, p.cfg.MinActive, true)
	if lv.anyHeld() {
		return pickReady(lv.balancer, keyed, key, skip)
	}
	if keyed {
		if kb, ok := lv.balancer.(KeyBalancer); ok {
			return kb.PickKey(key, skip)
		}
	}
	return lv.balancer.Pick(skip)
}
