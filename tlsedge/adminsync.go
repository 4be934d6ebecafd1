package tlsedge

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tlsedge/tlsedge/cluster"
	"github.com/tlsedge/tlsedge/upstream"
)

// adminSync shares operators' backend changes (cluster.admin_sync): a
// change made through this instance's admin API is applied here at once
// and published; changes published by other instances are applied here in
// their cluster-wide order. A change made while Redis is away applies
// here and is published when Redis is back. Applied changes live on the
// backends in the registry, so they survive reloads like local ones.
type adminSync struct {
	s    *Server
	node *cluster.Node
	// version is the last cluster-wide change applied here, shown on the
	// status page and reported in the heartbeat.
	version atomic.Int64

	mu      sync.Mutex
	pending []cluster.AdminChange // made here, not yet published
	kick    chan struct{}
}

func newAdminSync(s *Server, node *cluster.Node) *adminSync {
	return &adminSync{s: s, node: node, kick: make(chan struct{}, 1)}
}

func (a *adminSync) applied() int64 { return a.version.Load() }

// share queues a change made through this instance's API for publication.
func (a *adminSync) share(c cluster.AdminChange) {
	a.mu.Lock()
	a.pending = append(a.pending, c)
	a.mu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// run publishes this instance's changes and applies everyone's until ctx
// ends.
func (a *adminSync) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { a.node.FollowAdmin(ctx, a.applied, a.apply) })
	wg.Go(func() { a.publishLoop(ctx) })
	wg.Wait()
}

func (a *adminSync) publishLoop(ctx context.Context) {
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.kick:
		case <-retry.C:
		}
		for {
			a.mu.Lock()
			if len(a.pending) == 0 {
				a.mu.Unlock()
				break
			}
			c := a.pending[0]
			a.mu.Unlock()
			if _, err := a.node.PublishAdmin(ctx, c); err != nil {
				break // logged by the node; retried on the next tick
			}
			a.mu.Lock()
			a.pending = a.pending[1:]
			a.mu.Unlock()
		}
	}
}

// apply makes a published change true here. Its own changes come back
// too; applying them again changes nothing.
func (a *adminSync) apply(c cluster.AdminChange) {
	defer a.version.Store(max(a.version.Load(), c.Version))
	log := a.s.log.WithField("admin_version", c.Version).WithField("app", c.App).WithField("backend", c.Backend).WithField("origin", c.Origin)
	var pool *upstream.Pool
	for _, h := range a.s.snap.Load().apps {
		if h.cfg.Name == c.App {
			pool = h.pool
		}
	}
	if pool == nil || pool.Backend(c.Backend) == nil {
		log.Warn("cluster admin change for a backend this instance does not have: skipped (configurations differ? tlsedge check --cluster)")
		return
	}
	var err error
	if c.Kind == cluster.AdminWeight {
		err = pool.SetWeight(c.Backend, c.Weight)
	} else {
		var st upstream.AdminState
		if st, err = upstream.ParseAdminState(c.State); err == nil {
			err = pool.SetAdminState(c.Backend, st)
		}
	}
	if err != nil {
		log.WithError(err).Warn("cluster admin change not applied")
		return
	}
	if c.Origin != a.node.ID() {
		log.Info("cluster admin change applied")
	}
}
