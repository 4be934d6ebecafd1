// Package cluster is the state several tlsedge instances share through one
// Redis server (--storage redis://...): the sticky-cookie and
// session-ticket key rings, the list of instances with the hash of their
// configuration, and operators' backend admin states.
//
// Redis is a dependency, not a single point of failure. Nothing on a
// request's path waits on it: every exchange with Redis runs in a
// background loop, and what an instance holds (keys, admin states) keeps
// serving while Redis is away. The loops retry with back-off; the link
// going down and coming back are one log line each; a ring's keys are
// cached in a local file, so that an instance can start without Redis
// when it has run once before.
//
// Layout, under the prefix (default "tlsedge:"):
//
//	instances            sorted set: instance id -> last heartbeat (unix ms)
//	instance:ID          hash: config hash, version, started; expires
//	ring:NAME            hash: key id -> JSON {secret, published, active}
//	ring:NAME:has:KEYID  set: instances that hold the key; expires
//	ring:NAME:lock       the rotating instance (SET NX PX)
//	admin                hash: "app\x00backend" -> JSON admin change
//	admin:version        counter of admin changes
//	admin:events         pub/sub channel of admin changes
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"

	"github.com/tlsedge/tlsedge/certs/redisstore"
)

// Options configures Open. URL is required; the rest have defaults.
type Options struct {
	// URL is the Redis server, redis://[user:password@]host[:port][/db] or
	// rediss://...
	URL string
	// InstanceID names this instance in Redis and on status pages.
	// Default: host name, process id and 4 random hex digits.
	InstanceID string
	// Prefix starts every key (default "tlsedge:"), so that several
	// clusters can share a Redis database.
	Prefix string
	// Poll is how often the loops read Redis (default 1s). Failed calls
	// back off from it to MaxBackoff (default 5s, or 10 polls if less).
	Poll, MaxBackoff time.Duration
	// Timeout bounds every Redis call (default 1s).
	Timeout time.Duration
	Log     *logrus.Entry
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Node is this instance's handle on the shared state. Its methods are
// safe for concurrent use.
type Node struct {
	rdb     *redis.Client
	where   string
	id      string
	prefix  string
	poll    time.Duration
	backoff time.Duration
	timeout time.Duration
	log     *logrus.Entry
	now     func() time.Time

	mu   sync.Mutex
	down bool // the last Redis call failed; logged once per outage
}

// Open prepares the connection to Redis. It does not need Redis to answer:
// an instance starts without it and catches up when it comes.
func Open(opts Options) (*Node, error) {
	ropts, where, err := redisstore.ClientOptions(opts.URL)
	if err != nil {
		return nil, err
	}
	n := &Node{
		where:   where,
		id:      opts.InstanceID,
		prefix:  opts.Prefix,
		poll:    orDuration(opts.Poll, time.Second),
		timeout: orDuration(opts.Timeout, time.Second),
		log:     opts.Log,
		now:     opts.Now,
	}
	// Back off to 5 s, or 10 polls when polls are short (tests): a cluster
	// that polls fast should also notice Redis's return fast.
	n.backoff = orDuration(opts.MaxBackoff, min(5*time.Second, 10*n.poll))
	if n.id == "" {
		n.id = defaultInstanceID()
	}
	if n.prefix == "" {
		n.prefix = "tlsedge:"
	}
	if n.log == nil {
		l := logrus.New()
		l.Out = nopWriter{}
		n.log = logrus.NewEntry(l)
	}
	n.log = n.log.WithField("redis", where)
	if n.now == nil {
		n.now = time.Now
	}
	// Fail fast and let the loops retry: go-redis's own retries would hold
	// a loop for seconds while Redis is away.
	ropts.MaxRetries = -1
	ropts.DialTimeout, ropts.ReadTimeout, ropts.WriteTimeout = n.timeout, n.timeout, n.timeout
	n.rdb = redis.NewClient(ropts)
	return n, nil
}

// ID is this instance's name in the cluster.
func (n *Node) ID() string { return n.id }

// Where is the Redis server, without credentials.
func (n *Node) Where() string { return n.where }

// Close closes the connections to Redis.
func (n *Node) Close() error { return n.rdb.Close() }

func (n *Node) key(parts ...string) string {
	k := n.prefix
	for i, p := range parts {
		if i > 0 {
			k += ":"
		}
		k += p
	}
	return k
}

// call runs f with the call timeout.
func (n *Node) call(ctx context.Context, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	return f(ctx)
}

// note records the outcome of a round of Redis calls: the first failure
// of an outage is logged as a warning, the first success after it as
// back. It returns err.
func (n *Node) note(what string, err error) error {
	if errors.Is(err, redis.Nil) {
		err = nil
	}
	n.mu.Lock()
	was := n.down
	n.down = err != nil
	n.mu.Unlock()
	switch {
	case err != nil && !was:
		n.log.WithError(err).WithField("during", what).Warn("redis unreachable: serving with the state held here, retrying")
	case err == nil && was:
		n.log.Info("redis reachable again: catching up")
	}
	return err
}

// Down reports whether the last exchange with Redis failed.
func (n *Node) Down() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.down
}

// Every runs step every Poll until ctx ends, backing off while it fails:
// the instance's own loops over shared state (rate-limit exchanges).
func (n *Node) Every(ctx context.Context, step func(ctx context.Context) error) { n.loop(ctx, step) }

// loop runs step every Poll until ctx ends, backing off while it fails.
func (n *Node) loop(ctx context.Context, step func(ctx context.Context) error) {
	wait := n.poll
	for {
		if err := step(ctx); err != nil {
			wait = min(wait*2, n.backoff)
		} else {
			wait = n.poll
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func defaultInstanceID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "tlsedge"
	}
	var b [2]byte
	_, _ = rand.Read(b[:])
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
}

func orDuration(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

// errorf wraps a Redis failure with what was being done.
func errorf(what string, err error) error { return fmt.Errorf("cluster: %s: %w", what, err) }
