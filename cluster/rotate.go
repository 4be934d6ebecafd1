package cluster

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// lockHold is how long a ring's lock outlives its holder's last poll: a
// holder that stops (or loses Redis) hands rotation to another instance
// after it.
func (r *Ring) lockHold() time.Duration { return 3 * r.n.poll }

// renewLock extends the lock only for its holder (compare and extend).
var renewLock = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0`)

// lock takes or keeps the ring's lock; true when this instance holds it.
func (r *Ring) lock(ctx context.Context) (bool, error) {
	n := r.n
	lockKey := n.key("ring", r.cfg.Name, "lock")
	hold := r.lockHold()
	var held bool
	err := n.call(ctx, func(ctx context.Context) error {
		ok, err := n.rdb.SetNX(ctx, lockKey, n.id, hold).Result()
		if err != nil || ok {
			held = ok
			return err
		}
		v, err := renewLock.Run(ctx, n.rdb, []string{lockKey}, n.id, hold.Milliseconds()).Int()
		held = v == 1
		return err
	})
	if err != nil {
		return false, errorf("lock ring "+r.cfg.Name, err)
	}
	return held, nil
}

// rotate is the lock holder's work: publish the first keys of an empty
// ring, activate a pending key once every live instance holds it, make a
// new key when the newest is a Period old, and drop keys beyond Keep.
func (r *Ring) rotate(ctx context.Context, keys []RingKey, now time.Time) error {
	n := r.n
	ringKey := n.key("ring", r.cfg.Name)
	if len(keys) == 0 {
		// The first instance of a cluster: its keys (the local key file,
		// or what it made) become the cluster's, active at once.
		cur := r.Keys()
		fields := make([]any, 0, 2*len(cur))
		for i, secret := range cur {
			// Newest first, one millisecond apart, so the order holds.
			k := RingKey{Secret: secret, Published: ms(now) - int64(i), Active: ms(now) - int64(i)}
			fields = append(fields, newKeyID(), k.marshal())
		}
		err := n.call(ctx, func(ctx context.Context) error { return n.rdb.HSet(ctx, ringKey, fields...).Err() })
		if err != nil {
			return errorf("publish ring "+r.cfg.Name, err)
		}
		n.log.WithField("ring", r.cfg.Name).WithField("keys", len(cur)).Info("published this instance's keys as the cluster's first")
		return nil
	}
	// Old keys go first, whatever else this poll does: with a pending key
	// or a new one due at every poll, pruning would otherwise wait. Keep is
	// at least 2, and at most one key is pending, so the signing key is
	// never among those dropped.
	if err := r.prune(ctx, keys); err != nil {
		return err
	}
	for _, k := range keys {
		if k.Active == 0 {
			return r.activate(ctx, k, now)
		}
	}
	if now.Sub(fromMS(keys[0].Published)) >= r.cfg.Period {
		k := RingKey{ID: newKeyID(), Secret: randomKey(r.cfg.Size), Published: ms(now)}
		err := n.call(ctx, func(ctx context.Context) error { return n.rdb.HSet(ctx, ringKey, k.ID, k.marshal()).Err() })
		if err != nil {
			return errorf("publish a new key of ring "+r.cfg.Name, err)
		}
		n.log.WithField("ring", r.cfg.Name).WithField("key", k.ID).Info("new key published; it signs once every instance holds it")
	}
	return nil
}

// activate sets k's activation time once every live instance holds it.
func (r *Ring) activate(ctx context.Context, k RingKey, now time.Time) error {
	n := r.n
	live, err := n.liveInstances(ctx, now)
	if err != nil {
		return err
	}
	var holders []string
	err = n.call(ctx, func(ctx context.Context) (err error) {
		holders, err = n.rdb.SMembers(ctx, n.key("ring", r.cfg.Name, "has", k.ID)).Result()
		return err
	})
	if err != nil {
		return errorf("read the holders of a key of ring "+r.cfg.Name, err)
	}
	has := make(map[string]bool, len(holders))
	for _, h := range holders {
		has[h] = true
	}
	var missing []string
	for _, id := range live {
		if !has[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 || !has[n.id] {
		return nil // next poll
	}
	k.Active = ms(now.Add(r.cfg.Settle))
	err = n.call(ctx, func(ctx context.Context) error {
		return n.rdb.HSet(ctx, n.key("ring", r.cfg.Name), k.ID, k.marshal()).Err()
	})
	if err != nil {
		return errorf("activate a key of ring "+r.cfg.Name, err)
	}
	n.log.WithField("ring", r.cfg.Name).WithField("key", k.ID).WithField("instances", len(live)).
		Info("every live instance holds the new key: it signs from " + fromMS(k.Active).UTC().Format(time.RFC3339Nano))
	return nil
}

// prune drops the keys beyond the newest Keep.
func (r *Ring) prune(ctx context.Context, keys []RingKey) error {
	if len(keys) <= r.cfg.Keep {
		return nil
	}
	n := r.n
	old := keys[r.cfg.Keep:]
	err := n.call(ctx, func(ctx context.Context) error {
		_, err := n.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range old {
				p.HDel(ctx, n.key("ring", r.cfg.Name), k.ID)
				p.Del(ctx, n.key("ring", r.cfg.Name, "has", k.ID))
			}
			return nil
		})
		return err
	})
	if err != nil {
		return errorf("prune ring "+r.cfg.Name, err)
	}
	n.log.WithField("ring", r.cfg.Name).WithField("dropped", len(old)).Info("old keys dropped: what they signed is no longer accepted")
	return nil
}
