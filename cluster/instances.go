package cluster

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Instance is one tlsedge instance as it last reported itself.
type Instance struct {
	ID         string    `json:"id"`
	ConfigHash string    `json:"config_hash"`
	Version    string    `json:"version"`
	Started    time.Time `json:"started"`
	Seen       time.Time `json:"seen"`
	// AdminVersion is the last cluster-wide admin change it applied.
	AdminVersion int64 `json:"admin_version"`
}

// Heartbeat is what this instance reports every poll.
type Heartbeat func() Instance

// liveWindow is how recent a heartbeat must be for an instance to count
// as live (rotations wait for live instances).
func (n *Node) liveWindow() time.Duration { return 3*n.poll + n.timeout }

// instanceTTL keeps a stopped instance's record for a while, so that
// `tlsedge check --cluster` can still name it.
const instanceTTL = 10 * time.Minute

// RunHeartbeat reports this instance every poll until ctx ends, and
// removes it from the live set when ctx ends (a clean stop).
func (n *Node) RunHeartbeat(ctx context.Context, beat Heartbeat) {
	n.loop(ctx, func(ctx context.Context) error {
		return n.note("heartbeat", n.beat(ctx, beat()))
	})
	ctx, cancel := context.WithTimeout(context.Background(), n.timeout)
	defer cancel()
	_ = n.rdb.ZRem(ctx, n.key("instances"), n.id).Err() // a failed goodbye expires anyway
}

func (n *Node) beat(ctx context.Context, in Instance) error {
	now := n.now()
	return n.call(ctx, func(ctx context.Context) error {
		_, err := n.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			key := n.key("instance", n.id)
			p.HSet(ctx, key, "config_hash", in.ConfigHash, "version", in.Version,
				"started", ms(in.Started), "seen", ms(now), "admin_version", in.AdminVersion)
			p.Expire(ctx, key, instanceTTL)
			p.ZAdd(ctx, n.key("instances"), redis.Z{Score: float64(ms(now)), Member: n.id})
			p.ZRemRangeByScore(ctx, n.key("instances"), "-inf", strconv.FormatInt(ms(now.Add(-instanceTTL)), 10))
			return nil
		})
		return err
	})
}

// liveInstances are the ids of the instances whose heartbeat is recent.
func (n *Node) liveInstances(ctx context.Context, now time.Time) ([]string, error) {
	var ids []string
	err := n.call(ctx, func(ctx context.Context) (err error) {
		ids, err = n.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
			Key: n.key("instances"), ByScore: true,
			Start: strconv.FormatInt(ms(now.Add(-n.liveWindow())), 10), Stop: "+inf",
		}).Result()
		return err
	})
	if err != nil {
		return nil, errorf("list live instances", err)
	}
	return ids, nil
}

// Instances lists every instance seen in the last 10 minutes, by id.
func (n *Node) Instances(ctx context.Context) ([]Instance, error) {
	var ids []string
	err := n.call(ctx, func(ctx context.Context) (err error) {
		ids, err = n.rdb.ZRange(ctx, n.key("instances"), 0, -1).Result()
		return err
	})
	if err != nil {
		return nil, n.note("list instances", errorf("list instances", err))
	}
	out := make([]Instance, 0, len(ids))
	for _, id := range ids {
		var f map[string]string
		err := n.call(ctx, func(ctx context.Context) (err error) {
			f, err = n.rdb.HGetAll(ctx, n.key("instance", id)).Result()
			return err
		})
		if err != nil {
			return nil, n.note("list instances", errorf("read instance "+id, err))
		}
		if len(f) == 0 {
			continue // expired
		}
		in := Instance{ID: id, ConfigHash: f["config_hash"], Version: f["version"]}
		in.Started = fromMS(atoi64(f["started"]))
		in.Seen = fromMS(atoi64(f["seen"]))
		in.AdminVersion = atoi64(f["admin_version"])
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b Instance) int {
		if a.ID < b.ID {
			return -1
		}
		return 1
	})
	return out, nil
}

// Live reports whether in's heartbeat is recent by now.
func (n *Node) Live(in Instance, now time.Time) bool { return now.Sub(in.Seen) <= n.liveWindow() }

func atoi64(s string) int64 {
	v, _ := strconv.ParseInt(s, 10, 64)
	return v
}
