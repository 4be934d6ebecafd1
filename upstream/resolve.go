package upstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Backends named by DNS. With PoolConfig.Resolve set, a configured backend
// whose host is a name stands for one backend per address the name has
// (A and AAAA), and an SRV backend for one per address of each target,
// with the records' priorities (priority groups, lower first) and weights.
// The resolver looks the names up again every Resolve, ignoring TTLs, and
// swaps in a new membership when an answer changes.
//
// Each address is a backend of its own, named ID@IP (ID@IP:port for SRV,
// whose targets may share an IP on different ports), so its health and
// counters live in the Registry by address: an address that stays keeps
// its *Backend, its ejection and its idle connections; one that comes back
// before the next reload's Registry.Retain finds its old state.
//
// A name that fails to resolve, or resolves to nothing, keeps its last
// addresses: an empty answer is more often a DNS hiccup than a service
// with no servers, and a pool must not lose its backends to a DNS outage.

// Resolver looks up the names of a pool's backends; *net.Resolver is one.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupSRV(ctx context.Context, service, proto, name string) (cname string, addrs []*net.SRV, err error)
}

var _ Resolver = (*net.Resolver)(nil)

const (
	// initialResolveTimeout bounds NewPool's lookups: a pool whose DNS
	// does not answer starts dialling its names rather than waiting.
	initialResolveTimeout = 5 * time.Second
	// resolveTimeout bounds one pass of the resolver; a slower pass
	// delays the next (the ticker drops ticks).
	resolveTimeout = 5 * time.Second
)

// errNoAddresses is a lookup that succeeded with an empty answer.
var errNoAddresses = errors.New("no addresses")

// member is one configured backend, compiled by NewPool.
type member struct {
	cfg  BackendConfig // ID and Weight filled in
	kind memberKind
	host string // the name looked up: Addr's host, or the SRV name
	port string // of a host name
}

type memberKind uint8

const (
	fixed    memberKind = iota // dialled at Addr as configured
	hostName                   // A and AAAA, per address
	srvName                    // SRV, per target address
)

// endpoint is one backend a member stands for.
type endpoint struct {
	cfg     BackendConfig // ID, Addr dialled, Weight, Priority
	tlsHost string        // the name TLS verifies, when Addr is an IP it resolved to
	target  string        // the SRV target it comes from
}

// compileMembers validates the configured backends and fills in their
// defaults. resolve says whether host names are expanded to addresses.
func compileMembers(cfgs []BackendConfig, resolve bool) ([]member, error) {
	members := make([]member, len(cfgs))
	ids := make(map[string]bool, len(cfgs))
	for i, bc := range cfgs {
		m := &members[i]
		if bc.SRV {
			if err := validateSRVName(bc.Addr); err != nil {
				return nil, fmt.Errorf("upstream: backend %d: %w", i+1, err)
			}
			m.kind, m.host = srvName, bc.Addr
		} else {
			if err := validateAddr(bc.Addr); err != nil {
				return nil, fmt.Errorf("upstream: backend %d: %w", i+1, err)
			}
			host, port, _ := net.SplitHostPort(bc.Addr)
			if _, err := netip.ParseAddr(host); err != nil && resolve {
				m.kind, m.host, m.port = hostName, host, port
			}
		}
		if bc.ID == "" {
			bc.ID = bc.Addr
		}
		if bc.SRV && (bc.Weight != 0 || bc.Priority != 0) {
			return nil, fmt.Errorf("upstream: backend %q: weights and priorities of an SRV backend come from its records; leave Weight and Priority zero", bc.ID)
		}
		if bc.Weight == 0 {
			bc.Weight = 1
		}
		if bc.Weight < 1 || bc.Weight > MaxWeight {
			return nil, fmt.Errorf("upstream: backend %q: weight %d out of range 1..%d", bc.ID, bc.Weight, MaxWeight)
		}
		if ids[bc.ID] {
			return nil, fmt.Errorf("upstream: backend id %q used twice in one pool", bc.ID)
		}
		ids[bc.ID] = true
		m.cfg = bc
	}
	for _, m := range members {
		if m.kind == fixed {
			continue
		}
		for id := range ids {
			if strings.HasPrefix(id, m.cfg.ID+"@") {
				return nil, fmt.Errorf("upstream: backend id %q: the backends of %q are named %s@address", id, m.cfg.Addr, m.cfg.ID)
			}
		}
	}
	return members, nil
}

// validateSRVName accepts the owner name of SRV records: a DNS name, no
// port, not an IP address.
func validateSRVName(name string) error {
	if name == "" || strings.ContainsAny(name, ":/ ") {
		return fmt.Errorf("SRV name %q: want a DNS name without a port, like _http._tcp.example.com", name)
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return fmt.Errorf("SRV name %q is an IP address", name)
	}
	return nil
}

// unresolved is what m stands for before its name was ever resolved: a
// host name is dialled as is, an SRV name stands for nothing.
func (m *member) unresolved() []endpoint {
	if m.kind == srvName {
		return nil
	}
	return []endpoint{{cfg: m.cfg}}
}

// hasNames reports whether p has names to look up.
func (p *Pool) hasNames() bool {
	for _, m := range p.members {
		if m.kind != fixed {
			return true
		}
	}
	return false
}

// lookup resolves the names of p, all at once, and returns what each
// member stands for now. A member whose lookup failed or found nothing
// keeps prev[i], and errs[i] says why; fixed members keep prev[i].
func (p *Pool) lookup(ctx context.Context, prev [][]endpoint) (next [][]endpoint, errs []error) {
	next = make([][]endpoint, len(prev))
	errs = make([]error, len(prev))
	var wg sync.WaitGroup
	for i := range p.members {
		m := &p.members[i]
		if m.kind == fixed {
			next[i] = prev[i]
			continue
		}
		wg.Go(func() { // bounded by ctx; lookup waits for it
			var set []endpoint
			var err error
			if m.kind == srvName {
				set, err = p.expandSRV(ctx, m, prev[i])
			} else {
				set, err = p.expandHost(ctx, m)
			}
			if len(set) == 0 {
				set = prev[i]
				if err == nil {
					err = fmt.Errorf("%s: %w", m.host, errNoAddresses)
				}
			}
			next[i], errs[i] = set, err
		})
	}
	wg.Wait()
	return next, errs
}

// expandHost looks up the addresses of a host name.
func (p *Pool) expandHost(ctx context.Context, m *member) ([]endpoint, error) {
	ips, err := p.cfg.Resolver.LookupIPAddr(ctx, m.host)
	if err != nil {
		return nil, err
	}
	set := make([]endpoint, 0, len(ips))
	for _, ip := range ips {
		a := ip.String()
		set = append(set, endpoint{
			cfg:     BackendConfig{ID: m.cfg.ID + "@" + a, Addr: net.JoinHostPort(a, m.port), Weight: m.cfg.Weight, Priority: m.cfg.Priority},
			tlsHost: m.host,
		})
	}
	return sortSet(set), nil
}

// expandSRV looks up an SRV name and, when the pool re-resolves, the
// addresses of its targets; without Resolve the targets are dialled by
// name. A target whose lookup fails keeps its endpoints of prev, and the
// first such failure is returned with the set of the others.
func (p *Pool) expandSRV(ctx context.Context, m *member, prev []endpoint) ([]endpoint, error) {
	_, recs, err := p.cfg.Resolver.LookupSRV(ctx, "", "", m.host)
	if err != nil {
		return nil, err
	}
	// RFC 2782: a single target "." means the service is not offered
	// there; a port 0 record is unusable.
	recs = slices.DeleteFunc(recs, func(r *net.SRV) bool { return r.Target == "." || r.Target == "" || r.Port == 0 })
	var maxW uint16
	for _, r := range recs {
		maxW = max(maxW, r.Weight)
	}
	var set []endpoint
	var firstErr error
	for _, r := range recs {
		target := strings.TrimSuffix(r.Target, ".")
		port := strconv.Itoa(int(r.Port))
		w, prio := srvWeight(r.Weight, maxW), int(r.Priority)
		if p.cfg.Resolve == 0 {
			addr := net.JoinHostPort(target, port)
			set = append(set, endpoint{cfg: BackendConfig{ID: m.cfg.ID + "@" + addr, Addr: addr, Weight: w, Priority: prio}, target: target})
			continue
		}
		ips, err := p.cfg.Resolver.LookupIPAddr(ctx, target)
		if err == nil && len(ips) == 0 {
			err = fmt.Errorf("%s: %w", target, errNoAddresses)
		}
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("SRV target %s: %w", target, err)
			}
			for _, e := range prev {
				if e.target == target {
					set = append(set, e)
				}
			}
			continue
		}
		for _, ip := range ips {
			addr := net.JoinHostPort(ip.String(), port)
			set = append(set, endpoint{
				cfg:     BackendConfig{ID: m.cfg.ID + "@" + addr, Addr: addr, Weight: w, Priority: prio},
				tlsHost: target, target: target,
			})
		}
	}
	return sortSet(set), firstErr
}

// srvWeight maps an SRV weight (0..65535) to ours (1..MaxWeight). A set
// whose largest weight maxW fits is taken as is; a larger one is scaled
// down so that the ratios hold (clamping would make 1000 and 500 equal).
// 0, "a very small chance" in RFC 2782, becomes 1.
func srvWeight(w, maxW uint16) int {
	v := int(w)
	if maxW > MaxWeight {
		v = (v*MaxWeight + int(maxW)/2) / int(maxW)
	}
	return max(1, min(MaxWeight, v))
}

// sortSet orders set by priority and address, the order of Backends(),
// and drops repeated IDs (an address twice in an answer, or an SRV
// address:port reached through two targets: the lower priority wins).
func sortSet(set []endpoint) []endpoint {
	slices.SortFunc(set, func(a, b endpoint) int {
		return cmp.Or(cmp.Compare(a.cfg.Priority, b.cfg.Priority), strings.Compare(a.cfg.Addr, b.cfg.Addr), strings.Compare(a.cfg.ID, b.cfg.ID))
	})
	seen := make(map[string]bool, len(set))
	return slices.DeleteFunc(set, func(e endpoint) bool {
		dup := seen[e.cfg.ID]
		seen[e.cfg.ID] = true
		return dup
	})
}

// resolverRun is a running resolver goroutine.
type resolverRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// StartResolver re-resolves the pool's names every PoolConfig.Resolve, the
// first pass at once, until ctx ends, stop is called or the pool is
// closed; stop waits for the resolver's goroutine to return. A changed
// answer swaps in the new membership, logged through log (nil: nowhere)
// as one line per name that changed; a name that fails to resolve keeps
// its last addresses, logged once when it starts failing and once when it
// resolves again.
//
// Without Resolve, without names or on a closed pool it starts nothing.
// A pool runs one resolver: while one runs, StartResolver returns its stop.
func (p *Pool) StartResolver(ctx context.Context, log *logrus.Entry) (stop func()) {
	if p.cfg.Resolve <= 0 || !p.hasNames() {
		return func() {}
	}
	if log == nil {
		l := logrus.New()
		l.Out = io.Discard
		log = logrus.NewEntry(l)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return func() {}
	}
	run := p.resolving
	if run == nil {
		ctx, cancel := context.WithCancel(ctx)
		run = &resolverRun{cancel: cancel, done: make(chan struct{})}
		p.resolving = run
		r := newResolver(p, log)
		go func() {
			defer close(run.done)
			r.run(ctx, p.cfg.Resolve)
		}()
	}
	return func() { p.stopResolver(run) }
}

// stopResolver ends run and waits for it.
func (p *Pool) stopResolver(run *resolverRun) {
	run.cancel()
	<-run.done
	p.mu.Lock()
	if p.resolving == run {
		p.resolving = nil
	}
	p.mu.Unlock()
}

// resolver is the state of one pool's re-resolution; only its goroutine
// touches it, and it is the only writer of the pool's state.
type resolver struct {
	p       *Pool
	log     *logrus.Entry
	failing []bool // per member: its last lookup failed (and was logged)
}

func newResolver(p *Pool, log *logrus.Entry) *resolver {
	return &resolver{p: p, log: log, failing: make([]bool, len(p.members))}
}

// run does a pass at once and then one every interval until ctx ends.
func (r *resolver) run(ctx context.Context, interval time.Duration) {
	defer func() {
		if v := recover(); v != nil {
			r.log.WithFields(logrus.Fields{"panic": v, "stack": string(debug.Stack())}).
				Error("upstream: resolver stopped by a panic; names keep their last addresses")
		}
	}()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		r.pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pass looks every name up once, swaps in the new membership if an
// answer changed, and logs the changes and the failures.
func (r *resolver) pass(ctx context.Context) {
	cur := r.p.state.Load()
	lctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	next, errs := r.p.lookup(lctx, cur.sets)
	cancel()
	if ctx.Err() != nil {
		return // stopping: the lookups were cut short, not failed
	}
	var changes []change
	for i := range r.p.members {
		m := &r.p.members[i]
		if m.kind == fixed {
			continue
		}
		r.logHealth(m, i, errs[i], len(next[i]))
		if c, ok := diff(m, cur.sets[i], next[i]); ok {
			changes = append(changes, c)
		}
	}
	if len(changes) == 0 {
		return
	}
	st, err := r.p.newState(next, cur)
	if err != nil {
		r.log.WithError(err).Error("upstream: resolver: new addresses rejected; keeping the last ones")
		return
	}
	if !r.p.swap(st) {
		return // closed meanwhile
	}
	for _, c := range changes {
		r.log.WithFields(c.fields).Info(c.msg)
	}
}

// logHealth logs the first failure of a streak and the recovery after one.
func (r *resolver) logHealth(m *member, i int, err error, kept int) {
	switch {
	case err != nil && !r.failing[i]:
		r.failing[i] = true
		r.log.WithFields(logrus.Fields{"backend": m.cfg.ID, "name": m.host, "kept": kept}).WithError(err).
			Warn("backend " + m.cfg.ID + ": cannot resolve " + m.host + "; keeping its last " + strconv.Itoa(kept) + " addresses")
	case err == nil && r.failing[i]:
		r.failing[i] = false
		r.log.WithFields(logrus.Fields{"backend": m.cfg.ID, "name": m.host}).
			Info("backend " + m.cfg.ID + ": " + m.host + " resolves again")
	}
}

// change is the log line of a name whose answer changed.
type change struct {
	fields logrus.Fields
	msg    string
}

// diff compares what m stood for and stands for now, and reports the
// change, if any.
func diff(m *member, prev, next []endpoint) (change, bool) {
	type key struct{ id, addr string }
	old := make(map[key]BackendConfig, len(prev))
	for _, e := range prev {
		old[key{e.cfg.ID, e.cfg.Addr}] = e.cfg
	}
	var added, removed, changed []string
	for _, e := range next {
		k := key{e.cfg.ID, e.cfg.Addr}
		was, ok := old[k]
		switch {
		case !ok:
			added = append(added, e.cfg.Addr)
		case was.Weight != e.cfg.Weight || was.Priority != e.cfg.Priority:
			changed = append(changed, e.cfg.Addr+" weight "+strconv.Itoa(e.cfg.Weight)+" priority "+strconv.Itoa(e.cfg.Priority))
		}
		delete(old, k)
	}
	for _, e := range prev {
		if _, gone := old[key{e.cfg.ID, e.cfg.Addr}]; gone {
			removed = append(removed, e.cfg.Addr)
		}
	}
	if len(added)+len(removed)+len(changed) == 0 {
		return change{}, false
	}
	f := logrus.Fields{"backend": m.cfg.ID, "name": m.host, "addrs": len(next)}
	if len(added) > 0 {
		f["added"] = strings.Join(added, ",")
	}
	if len(removed) > 0 {
		f["removed"] = strings.Join(removed, ",")
	}
	if len(changed) > 0 {
		f["changed"] = strings.Join(changed, ",")
	}
	msg := "backend " + m.cfg.ID + ": " + m.host + " now resolves to " + strconv.Itoa(len(next)) +
		" addresses (" + strconv.Itoa(len(added)) + " added, " + strconv.Itoa(len(removed)) + " removed, " +
		strconv.Itoa(len(changed)) + " changed)"
	return change{f, msg}, true
}
