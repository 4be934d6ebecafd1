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
// cumulative up count reaches minActive, or the last. held says whether
// admin states must be looked at (see the top of the file); without them
// every up backend counts and is Ready.
func (st *poolState) activeLevel(now time.Time, minActive int, held bool) *level {
	if len(st.levels) == 1 {
		return &st.levels[0]
	}
	up, ready := 0, 0
	for i := range st.levels {
		lv := &st.levels[i]
		for _, b := range lv.members {
			if !b.Up(now) {
				continue
			}
			if held {
				switch b.AdminState() {
				case Maint:
					continue
				case Drain:
					up++
					continue
				}
			}
			up++
			ready++
		}
		// minActive >= 1, so without admin states ready > 0 holds here.
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
	st, held := p.loadState()
	if len(st.levels) == 1 {
		_, ok := st.index[b]
		return ok
	}
	return st.activeLevel(now, p.cfg.MinActive, held).union[b]
}

// PickAt asks the balancer of the level active at now; see Balancer.
// Backends that are not Ready (AdminState) are never picked: a request a
// draining backend should take comes with its sticky hint, which the
// caller checks with Active.
func (p *Pool) PickAt(now time.Time, skip func(*Backend) bool) *Backend {
	return p.pickAt(now, false, 0, skip)
}

// PickKeyAt is PickAt for a hash key: a KeyBalancer maps it to its
// backend; other balancers ignore it.
func (p *Pool) PickKeyAt(now time.Time, key uint64, skip func(*Backend) bool) *Backend {
	return p.pickAt(now, true, key, skip)
}

func (p *Pool) pickAt(now time.Time, keyed bool, key uint64, skip func(*Backend) bool) *Backend {
	st, held := p.loadState()
	lv := st.activeLevel(now, p.cfg.MinActive, held)
	if held && lv.anyHeld() {
		return pickReady(lv.balancer, keyed, key, skip)
	}
	if kb, ok := lv.balancer.(KeyBalancer); ok && keyed {
		return kb.PickKey(key, skip)
	}
	return lv.balancer.Pick(skip)
}
