package tlsedge

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	"github.com/tlsedge/tlsedge/cluster"
	"github.com/tlsedge/tlsedge/filter"
	"github.com/tlsedge/tlsedge/session"
)

// An instance whose storage is redis:// shares its sticky-cookie and
// session-ticket keys with the other instances on that Redis (cluster
// rings, rotated without ever refusing what another instance issued),
// reports itself with its configuration's hash, and, with
// cluster.admin_sync, applies operators' backend admin states everywhere.
// See package cluster; docs/scale-out.md says how to run it.

// clusterState is the server's share of the cluster.
type clusterState struct {
	node    *cluster.Node
	sticky  *cluster.Ring
	tickets *cluster.Ring
	admin   *adminSync // nil without cluster.admin_sync
	started time.Time

	mu         sync.Mutex
	stickyKeys []session.Key // the sticky ring's keys, signer first
}

// stickySecretLen is a sticky key in the ring: a 32-byte HMAC key and a
// 32-byte AES key, what session.GenerateKey makes.
const stickySecretLen = 64

// openCluster joins the cluster when the storage is Redis. Redis need not
// answer: the rings start from their caches (or the local key file) and
// follow Redis once it does.
func (s *Server) openCluster() error {
	cfg := s.cfg
	if !cfg.Clustered() {
		return nil
	}
	log := s.opts.Log.WithField("component", "cluster")
	node, err := cluster.Open(cluster.Options{
		URL: cfg.Storage, InstanceID: cfg.Cluster.InstanceID, Poll: cfg.Cluster.Poll.D(), Log: log,
	})
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	c := &clusterState{node: node, started: time.Now()}
	seed, err := stickySeed(cfg.StickyKeyFile)
	if err != nil {
		node.Close()
		return fmt.Errorf("sticky_key_file: %w", err)
	}
	if seed == nil {
		log.Warn("the sticky key file's keys are not 32+32-byte keys: the cluster's ring starts from a new key, and cookies signed with the file's keys are not accepted once it takes over")
	}
	dir := filepath.Join(cfg.StateDir, "cluster")
	c.sticky, err = node.NewRing(cluster.RingConfig{
		Name: "sticky", Size: stickySecretLen, Period: cfg.Cluster.StickyKeyRotation.D(), Keep: cfg.Cluster.KeysKept,
		Seed: seed, Cache: filepath.Join(dir, "sticky.ring"),
		OnChange: func(keys [][]byte) { s.setStickyKeys(c, keys) },
	})
	if err != nil {
		node.Close()
		return err
	}
	c.tickets, err = node.NewRing(cluster.RingConfig{
		Name: "tickets", Size: 32, Period: cfg.Cluster.TicketKeyRotation.D(), Keep: cfg.Cluster.KeysKept,
		Cache:    filepath.Join(dir, "tickets.ring"),
		OnChange: func(keys [][]byte) { s.setTicketKeys(keys) },
	})
	if err != nil {
		node.Close()
		return err
	}
	if cfg.Cluster.AdminSync {
		c.admin = newAdminSync(s, node)
	}
	s.cluster = c
	log.WithField("instance", node.ID()).WithField("redis", node.Where()).Info("cluster: sharing sticky and ticket keys through redis")
	return nil
}

// stickySeed reads the local key file as ring secrets, newest first; nil
// when a key is not of the 32+32-byte kind the ring holds.
func stickySeed(path string) ([][]byte, error) {
	keys, err := session.LoadOrCreateKeyFile(path)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, 0, len(keys))
	for _, k := range keys {
		if len(k.Hash) != 32 || len(k.Block) != 32 {
			return nil, nil
		}
		out = append(out, append(append([]byte(nil), k.Hash...), k.Block...))
	}
	return out, nil
}

// setStickyKeys is the sticky ring's OnChange: snapshots compiled from now
// on use keys, and the running one's apps switch at once.
func (s *Server) setStickyKeys(c *clusterState, secrets [][]byte) {
	keys := make([]session.Key, len(secrets))
	for i, b := range secrets {
		keys[i] = session.Key{Hash: b[:32:32], Block: b[32:64:64]}
	}
	c.mu.Lock()
	c.stickyKeys = keys
	c.mu.Unlock()
	if snap := s.snap.Load(); snap != nil {
		s.applyStickyKeys(snap)
	}
}

// applyStickyKeys gives snap's sticky apps the ring's keys. Reload calls
// it after storing a snapshot, in case the keys changed while it compiled.
func (s *Server) applyStickyKeys(snap *snapshot) {
	if s.cluster == nil {
		return
	}
	keys := s.cluster.currentStickyKeys()
	for _, h := range snap.apps {
		if h.sticky == nil {
			continue
		}
		if err := h.sticky.setKeys(keys); err != nil {
			h.log.WithError(err).Error("sticky keys from the cluster refused; keeping the current ones")
		}
	}
}

func (c *clusterState) currentStickyKeys() []session.Key {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stickyKeys
}

// loadStickyKeys is compileDeps.stickyKeys in a cluster: the ring's keys,
// whatever the key file says (it seeded the ring).
func (c *clusterState) loadStickyKeys(string) ([]session.Key, error) {
	return c.currentStickyKeys(), nil
}

// setTicketKeys is the ticket ring's OnChange.
func (s *Server) setTicketKeys(secrets [][]byte) {
	keys := make([][32]byte, len(secrets))
	for i, b := range secrets {
		copy(keys[i][:], b)
	}
	if s.tlsConf != nil {
		s.tlsConf.SetSessionTicketKeys(keys)
	}
	if s.tcpTLSConf != nil {
		s.tcpTLSConf.SetSessionTicketKeys(keys)
	}
}

// run follows the cluster until ctx ends.
func (c *clusterState) run(ctx context.Context, s *Server) {
	var wg sync.WaitGroup
	wg.Go(func() { c.sticky.Run(ctx) })
	wg.Go(func() { c.tickets.Run(ctx) })
	wg.Go(func() {
		c.node.RunHeartbeat(ctx, func() cluster.Instance {
			in := cluster.Instance{ConfigHash: configHash(s.snap.Load().cfg), Version: s.opts.Version, Started: c.started}
			if c.admin != nil {
				in.AdminVersion = c.admin.applied()
			}
			return in
		})
	})
	if c.admin != nil {
		wg.Go(func() { c.admin.run(ctx) })
	}
	wg.Go(func() { c.shareRates(ctx, s) })
	wg.Wait()
	c.node.Close()
}

// shareRates exchanges the counts of the running snapshot's shared rate
// limits every poll (cluster.rate_limits; nothing to do without them).
// Counts are per limit name, so they carry across reloads.
func (c *clusterState) shareRates(ctx context.Context, s *Server) {
	shares := map[string]*cluster.RateShare{}
	c.node.Every(ctx, func(ctx context.Context) error {
		var firstErr error
		for name, l := range s.snap.Load().limiters {
			rs := shares[name]
			if rs == nil {
				rs = c.node.NewRateShare(name)
				shares[name] = rs
			}
			taken := l.TakeCounts()
			mine := make([]cluster.RateCount, len(taken))
			for i, t := range taken {
				mine[i] = cluster.RateCount{Client: t.Client.String(), N: t.N}
			}
			others, err := rs.Exchange(ctx, mine)
			if err != nil {
				firstErr = cmp.Or(firstErr, err)
				continue // this poll's counts are lost; the local limit still holds
			}
			now := time.Now()
			for _, o := range others {
				if a, err := netip.ParseAddr(o.Client); err == nil {
					l.Consume(filter.ClientCount{Client: a, N: o.N}, now)
				}
			}
		}
		return firstErr
	})
}
