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

// level is the set of backends that take traffic when the groups up to it
// are active, with its own balancer over their union.
type level struct {
	priority int        // the priority of the group this level adds
	members  []*Backend // this group's backends (for counting them up)
	balancer Balancer   // over the union of this group and all before it
	union    map[*Backend]bool
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
		lv.union = make(map[*Backend]bool, len(union))
		for b := range union {
			lv.union[b] = true
		}
		levels = append(levels, lv)
	}
	return levels, nil
}

// activeLevel returns the level that takes traffic at now: the first whose
// cumulative up count reaches minActive, or the last.
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

// Active reports whether b belongs to the backends taking traffic at now:
// a sticky session pinned to a backup backend stays on it while the
// backups serve, and moves back once they are released.
func (p *Pool) Active(b *Backend, now time.Time) bool {
	st := p.state.Load()
	if len(st.levels) == 1 {
		_, ok := st.index[b]
		return ok
	}
	return st.activeLevel(now, p.cfg.MinActive).union[b]
}

// PickAt asks the balancer of the level active at now; see Balancer.
func (p *Pool) PickAt(now time.Time, skip func(*Backend) bool) *Backend {
	return p.state.Load().activeLevel(now, p.cfg.MinActive).balancer.Pick(skip)
}

// PickKeyAt is PickAt for a hash key: a KeyBalancer maps it to its
// backend; other balancers ignore it.
func (p *Pool) PickKeyAt(now time.Time, key uint64, skip func(*Backend) bool) *Backend {
	bal := p.state.Load().activeLevel(now, p.cfg.MinActive).balancer
	if kb, ok := bal.(KeyBalancer); ok {
		return kb.PickKey(key, skip)
	}
	return bal.Pick(skip)
}
