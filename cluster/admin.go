package cluster

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// AdminChange is an operator's change of a backend, made on one instance
// and applied by all: an admin state ("ready", "drain", "maint"), or with
// Kind "weight" a weight (0 restores the configured one).
type AdminChange struct {
	// Version orders changes cluster-wide (a Redis counter); PublishAdmin
	// sets it.
	Version int64  `json:"version"`
	App     string `json:"app"`
	Backend string `json:"backend"`
	Kind    string `json:"kind"` // "state" or "weight"
	State   string `json:"state,omitempty"`
	Weight  int    `json:"weight,omitempty"`
	// Origin is the instance where the operator made it.
	Origin string `json:"origin"`
}

// field is the change's slot in the admin hash: the latest state and the
// latest weight of a backend are kept apart.
func (c AdminChange) field() string {
	return c.App + "\x00" + c.Backend + "\x00" + c.Kind
}

// Kinds of AdminChange.
const (
	AdminState  = "state"
	AdminWeight = "weight"
)

// PublishAdmin numbers c, stores it (so that instances starting later, or
// cut off when it was made, catch up) and announces it on the channel.
func (n *Node) PublishAdmin(ctx context.Context, c AdminChange) (AdminChange, error) {
	c.Origin = n.id
	err := n.call(ctx, func(ctx context.Context) error {
		v, err := n.rdb.Incr(ctx, n.key("admin", "version")).Result()
		if err != nil {
			return err
		}
		c.Version = v
		b, _ := json.Marshal(c) // plain fields
		_, err = n.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, n.key("admin"), c.field(), b)
			p.Publish(ctx, n.key("admin", "events"), b)
			return nil
		})
		return err
	})
	return c, n.note("publish admin change", err)
}

// AdminChanges returns the stored changes newer than after, oldest first.
func (n *Node) AdminChanges(ctx context.Context, after int64) ([]AdminChange, error) {
	var raw map[string]string
	err := n.call(ctx, func(ctx context.Context) (err error) {
		raw, err = n.rdb.HGetAll(ctx, n.key("admin")).Result()
		return err
	})
	if err != nil {
		return nil, n.note("read admin changes", errorf("read admin changes", err))
	}
	out := make([]AdminChange, 0, len(raw))
	for _, v := range raw {
		var c AdminChange
		if json.Unmarshal([]byte(v), &c) == nil && c.Version > after {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b AdminChange) int { return int(a.Version - b.Version) })
	return out, nil
}

// FollowAdmin hands every change newer than applied() to apply, in order,
// until ctx ends: at once through the channel, and by reading the stored
// changes every poll, which also catches up after an outage or a missed
// message. apply is called from one goroutine.
func (n *Node) FollowAdmin(ctx context.Context, applied func() int64, apply func(AdminChange)) {
	events := make(chan AdminChange, 64)
	go func() {
		sub := n.rdb.Subscribe(ctx, n.key("admin", "events"))
		defer sub.Close()
		ch := sub.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-ch:
				if !ok {
					return
				}
				var c AdminChange
				if json.Unmarshal([]byte(m.Payload), &c) == nil {
					select {
					case events <- c:
					default: // the poll catches up
					}
				}
			}
		}
	}()
	catchUp := func(ctx context.Context) error {
		changes, err := n.AdminChanges(ctx, applied())
		if err != nil {
			return err
		}
		for _, c := range changes {
			apply(c)
		}
		return nil
	}
	wait := n.poll
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-events:
			if c.Version == applied()+1 {
				apply(c)
			} else if c.Version > applied() {
				_ = catchUp(ctx) // a gap: read them all, in order
			}
		case <-t.C:
			if catchUp(ctx) != nil {
				wait = min(wait*2, n.backoff)
			} else {
				wait = n.poll
			}
			t.Reset(wait)
		}
	}
}
