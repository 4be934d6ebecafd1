package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// A Ring is a set of secret keys every instance holds: one signs (or
// seals), all of them verify (or open). Sticky cookies and TLS session
// tickets each have one, so that any instance accepts what another issued.
//
// Rotation never makes an instance refuse what another issued:
//
//  1. one instance (the holder of the ring's lock) publishes a new key,
//     pending: every instance that reads it verifies with it at once, but
//     none signs with it;
//  2. each instance that holds the key says so (a set per key);
//  3. when every live instance (heartbeat within 3 polls) holds it, the
//     lock holder sets its activation time, Settle ahead (clock skew
//     between instances); from then on every instance signs with it.
//
// Keys older than the newest Keep are removed: what they signed is no
// longer accepted (Keep × Period after it was issued, a week by default).
// An instance cut off from Redis keeps its keys and misses rotations,
// which wait for it only while its heartbeat is fresh.
type Ring struct {
	n   *Node
	cfg RingConfig

	mu      sync.Mutex
	current [][]byte // what OnChange got last, signer first
	acked   map[string]bool
	cached  string // the ring (ids and activations) as last written to the cache
}

// RingConfig configures a ring. Name and Size are required.
type RingConfig struct {
	Name string // "sticky", "tickets": part of the Redis keys
	Size int    // bytes of secret per key
	// Period is how often a new key is made (default 24h); Keep how many
	// keys are kept, the signing one included (default 7).
	Period time.Duration
	Keep   int
	// Settle is how long after every live instance holds a new key it
	// starts signing (default 2s).
	Settle time.Duration
	// Seed are the keys the ring starts with when Redis has none, newest
	// first (the local key file), so that cookies issued before the
	// cluster existed stay valid. Without a seed a key is made.
	Seed [][]byte
	// Cache is a file that keeps the ring between starts, so that an
	// instance starts without Redis; "" keeps none.
	Cache string
	// OnChange receives the keys whenever they change: the signing key
	// first, then the others, newest first. It is called from NewRing and
	// from Run's goroutine, never concurrently.
	OnChange func(keys [][]byte)
}

// RingKey is one key of a ring as stored in Redis.
type RingKey struct {
	ID     string `json:"-"`
	Secret []byte `json:"secret"`
	// Published is when it was made; Active when it starts signing, zero
	// while it is pending.
	Published int64 `json:"published"`
	Active    int64 `json:"active,omitempty"`
}

// NewRing loads the cached keys (or the seed) and hands them to OnChange,
// so that the instance serves before Redis answers. Run follows Redis.
func (n *Node) NewRing(cfg RingConfig) (*Ring, error) {
	if cfg.Name == "" || cfg.Size < 16 || cfg.OnChange == nil {
		return nil, errors.New("cluster: a ring needs a name, a key size of at least 16 bytes and OnChange")
	}
	cfg.Period = orDuration(cfg.Period, 24*time.Hour)
	cfg.Settle = orDuration(cfg.Settle, 2*time.Second)
	if cfg.Keep < 2 {
		cfg.Keep = 7
	}
	r := &Ring{n: n, cfg: cfg, acked: map[string]bool{}}
	keys, err := loadRingCache(cfg.Cache, cfg.Size)
	switch {
	case err != nil:
		n.log.WithError(err).WithField("ring", cfg.Name).Warn("ignoring the ring's cache file")
	case len(keys) > 0:
		r.apply(keys, n.now())
		return r, nil
	}
	if len(cfg.Seed) == 0 {
		n.log.WithField("ring", cfg.Name).Info("no cached keys: using a key of this instance's own until redis hands out the cluster's")
		r.set([][]byte{randomKey(cfg.Size)})
	} else {
		r.set(cfg.Seed)
	}
	return r, nil
}

// Keys returns the keys in use, signer first.
func (r *Ring) Keys() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.current)
}

// Run follows the ring in Redis until ctx ends.
func (r *Ring) Run(ctx context.Context) {
	r.n.loop(ctx, func(ctx context.Context) error {
		return r.n.note("ring "+r.cfg.Name, r.step(ctx))
	})
}

// step is one poll: read, acknowledge, apply, and rotate if this instance
// holds the lock.
func (r *Ring) step(ctx context.Context) error {
	n := r.n
	ringKey := n.key("ring", r.cfg.Name)
	var raw map[string]string
	if err := n.call(ctx, func(ctx context.Context) (err error) {
		raw, err = n.rdb.HGetAll(ctx, ringKey).Result()
		return err
	}); err != nil {
		return errorf("read ring "+r.cfg.Name, err)
	}
	keys := parseRing(raw, r.cfg.Size)
	now := n.now()
	if len(keys) > 0 {
		if err := r.acknowledge(ctx, keys); err != nil {
			return err
		}
		r.apply(keys, now)
	}
	leader, err := r.lock(ctx)
	if err != nil || !leader {
		return err
	}
	return r.rotate(ctx, keys, now)
}

// acknowledge records that this instance holds the keys it has not said so
// for yet.
func (r *Ring) acknowledge(ctx context.Context, keys []RingKey) error {
	n := r.n
	ttl := r.cfg.Period*time.Duration(r.cfg.Keep) + time.Hour
	for _, k := range keys {
		if r.acked[k.ID] {
			continue
		}
		has := n.key("ring", r.cfg.Name, "has", k.ID)
		if err := n.call(ctx, func(ctx context.Context) error {
			_, err := n.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.SAdd(ctx, has, n.id)
				p.Expire(ctx, has, ttl)
				return nil
			})
			return err
		}); err != nil {
			return errorf("acknowledge key of ring "+r.cfg.Name, err)
		}
		r.acked[k.ID] = true
	}
	return nil
}

// apply makes keys (as read from Redis or the cache) the ones in use: the
// newest key active by this instance's clock signs; pending ones only
// verify. (A ring with no active key at all, which a leader never
// writes, signs with its oldest.)
func (r *Ring) apply(keys []RingKey, now time.Time) {
	signer := len(keys) - 1
	for i, k := range keys { // newest first
		if k.Active != 0 && k.Active <= ms(now) {
			signer = i
			break
		}
	}
	out := [][]byte{keys[signer].Secret}
	for i, k := range keys {
		if i != signer {
			out = append(out, k.Secret)
		}
	}
	r.set(out)
	var sig strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&sig, "%s/%d,", k.ID, k.Active)
	}
	if sig.String() != r.cached {
		if err := saveRingCache(r.cfg.Cache, keys); err != nil {
			r.n.log.WithError(err).WithField("ring", r.cfg.Name).Warn("could not cache the ring's keys")
			return
		}
		r.cached = sig.String()
	}
}

// set hands keys to OnChange when they differ from the current ones.
func (r *Ring) set(keys [][]byte) bool {
	r.mu.Lock()
	same := slices.EqualFunc(keys, r.current, func(a, b []byte) bool { return string(a) == string(b) })
	if !same {
		r.current = keys
	}
	r.mu.Unlock()
	if !same {
		r.cfg.OnChange(slices.Clone(keys))
	}
	return !same
}

// parseRing decodes the ring's hash, newest first; malformed entries are
// skipped (another version of tlsedge may have written them).
func parseRing(raw map[string]string, size int) []RingKey {
	keys := make([]RingKey, 0, len(raw))
	for id, v := range raw {
		var k RingKey
		if json.Unmarshal([]byte(v), &k) != nil || len(k.Secret) != size || k.Published == 0 {
			continue
		}
		k.ID = id
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b RingKey) int {
		if a.Published != b.Published {
			return int(b.Published - a.Published)
		}
		if a.ID > b.ID {
			return -1
		}
		return 1
	})
	return keys
}

func randomKey(size int) []byte {
	b := make([]byte, size)
	_, _ = rand.Read(b)
	return b
}

func newKeyID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (k RingKey) marshal() string {
	b, err := json.Marshal(k)
	if err != nil {
		panic(fmt.Sprintf("cluster: marshal ring key: %v", err)) // a struct of plain fields
	}
	return string(b)
}
