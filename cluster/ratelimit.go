package cluster

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Rate-limit counts shared between instances (cluster.rate_limits). Each
// limit is a hash per 10-second window, client -> requests let through by
// all instances in the window. An instance adds what it let through since
// its last exchange and learns, for the clients it serves, how many
// requests the others let through meanwhile. Approximate by design: a
// client's requests on other instances reach this one's bucket a poll
// later, and a window boundary forgets what was counted before it.

// RateCount is a number of requests of one client (an opaque key).
type RateCount struct {
	Client string
	N      uint32
}

// RateShare is the exchange state of one named limit on this instance.
// Exchange is called from one goroutine.
type RateShare struct {
	n      *Node
	name   string
	window int64
	seen   map[string]int64 // this window: the total after our last exchange, per client
}

// rateWindow is the length of a counting window.
const rateWindow = 10 * time.Second

// NewRateShare prepares the exchange of the limit called name ("frontend",
// "app:NAME").
func (n *Node) NewRateShare(name string) *RateShare {
	return &RateShare{n: n, name: name, seen: map[string]int64{}}
}

// Exchange adds mine to the shared counts and returns the requests other
// instances let through for the clients this instance has served in the
// current window, since the last exchange.
func (rs *RateShare) Exchange(ctx context.Context, mine []RateCount) ([]RateCount, error) {
	n := rs.n
	now := n.now()
	w := now.UnixNano() / int64(rateWindow)
	if w != rs.window {
		rs.window, rs.seen = w, map[string]int64{}
	}
	if len(mine) == 0 && len(rs.seen) == 0 {
		return nil, nil
	}
	key := n.key("rl", rs.name, strconv.FormatInt(w, 10))
	added := make(map[string]int64, len(mine))
	for _, c := range mine {
		added[c.Client] += int64(c.N)
	}
	var others []string
	for c := range rs.seen {
		if added[c] == 0 {
			others = append(others, c)
		}
	}
	incr := make(map[string]*redis.IntCmd, len(added))
	var get *redis.SliceCmd
	err := n.call(ctx, func(ctx context.Context) error {
		_, err := n.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for c, k := range added {
				incr[c] = p.HIncrBy(ctx, key, c, k)
			}
			if len(others) > 0 {
				get = p.HMGet(ctx, key, others...)
			}
			p.Expire(ctx, key, 3*rateWindow)
			return nil
		})
		return err
	})
	if err := n.note("share rate limits", err); err != nil {
		return nil, errorf("share rate limit "+rs.name, err)
	}
	var out []RateCount
	learn := func(c string, total, mineNow int64) {
		if d := total - rs.seen[c] - mineNow; d > 0 {
			out = append(out, RateCount{Client: c, N: uint32(min(d, 1<<31))})
		}
		rs.seen[c] = total
	}
	for c, cmd := range incr {
		learn(c, cmd.Val(), added[c])
	}
	if get != nil {
		for i, v := range get.Val() {
			if s, ok := v.(string); ok {
				total, _ := strconv.ParseInt(s, 10, 64)
				learn(others[i], total, 0)
			}
		}
	}
	return out, nil
}
