// Package redisstore is a certmagic.Storage on Redis, so that several
// tlsedge instances share certificates, ACME accounts and locks.
//
// # Layout
//
// Under Options.KeyPrefix (default DefaultKeyPrefix) a Storage keeps:
//
//	<prefix>file:<key>   hash {value, modified}: one stored file; modified is
//	                     the Redis server's clock in Unix microseconds
//	<prefix>index        sorted set of every file key, all with score 0, so
//	                     that ZRANGE BYLEX finds the keys under a directory
//	                     in O(log n + m) without scanning the database
//	<prefix>lock:<name>  string: the random token of a lock's holder, with a
//	                     TTL that the holder keeps extending
//
// Directories are implicit, as the certmagic.Storage contract describes them:
// a directory exists while some file key lies under it. Writes that touch the
// hash and the index run as Lua scripts, so other clients never see one
// without the other.
//
// It needs Redis 6.2 or later (ZRANGE BYLEX). The scripts address file
// hashes derived from the prefix, not only the keys passed to them, so a
// Storage needs a single Redis server, not Redis Cluster.
package redisstore

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"
)

// Defaults for the zero values of Options.
const (
	DefaultKeyPrefix = "tlsedge:certs:"
	DefaultLockTTL   = 60 * time.Second
	DefaultLockPoll  = time.Second
)

// MinLockTTL is the shortest Options.LockTTL New accepts: the holder extends
// its lock every third of the TTL, and each extension is a round trip to
// Redis that must fit in that time.
const MinLockTTL = 100 * time.Millisecond

// pingTimeout bounds New's check that the server answers (the caller's
// context may bound it further).
const pingTimeout = 5 * time.Second

var (
	// ErrIsDirectory: Load or Store of a key that is a directory (other keys
	// lie under it). FileStorage fails the same way (EISDIR).
	ErrIsDirectory = errors.New("key is a directory")

	// ErrNotDirectory: Store of a key below a key that is a file.
	// FileStorage fails the same way (ENOTDIR).
	ErrNotDirectory = errors.New("a parent of the key is a file")

	// ErrLockNotHeld: Unlock of a lock that this Storage does not hold.
	ErrLockNotHeld = errors.New("lock not held by this storage")

	// ErrLockLost: Unlock found that the lock had expired (its holder could
	// not extend it in time) and may have been taken by someone else, so
	// mutual exclusion was not guaranteed while it was "held".
	ErrLockLost = errors.New("lock expired before it was released")
)

// Options configures New. The zero value of every field means its default.
// New copies what it needs; the caller may reuse the struct.
type Options struct {
	// KeyPrefix is put before every Redis key the Storage uses; default
	// DefaultKeyPrefix. Instances that share certificates must use the same
	// URL (server and database) and the same prefix.
	KeyPrefix string

	// LockTTL is how long a lock outlives its holder: while the lock is
	// held, its TTL is extended every LockTTL/3, so a crashed holder's lock
	// frees itself at most LockTTL later. Default DefaultLockTTL, at least
	// MinLockTTL.
	LockTTL time.Duration

	// LockPoll is how often Lock retries while someone else holds the lock;
	// default DefaultLockPoll.
	LockPoll time.Duration

	// TLSRootCAs, if not nil, replaces the system roots for verifying the
	// server of a rediss:// URL. It is an error with a redis:// URL.
	TLSRootCAs *x509.CertPool

	// Unreachable makes New return a usable Storage together with the
	// ping error when the server does not answer: a gateway starting while
	// Redis is away keeps serving what it can, and the Storage works once
	// Redis answers (go-redis reconnects by itself).
	Unreachable bool

	// Log receives lock maintenance problems; default
	// logrus.StandardLogger().
	Log *logrus.Entry
}

func (o *Options) keyPrefix() string {
	if o.KeyPrefix == "" {
		return DefaultKeyPrefix
	}
	return o.KeyPrefix
}

func (o *Options) lockTTL() time.Duration {
	if o.LockTTL == 0 {
		return DefaultLockTTL
	}
	return o.LockTTL
}

func (o *Options) lockPoll() time.Duration {
	if o.LockPoll == 0 {
		return DefaultLockPoll
	}
	return o.LockPoll
}

func (o *Options) log() *logrus.Entry {
	if o.Log == nil {
		return logrus.NewEntry(logrus.StandardLogger())
	}
	return o.Log
}

// Storage is a certmagic.Storage and certmagic.TryLocker on Redis. It is safe
// for concurrent use. Create it with New; Close it when done.
type Storage struct {
	rdb      *redis.Client
	where    string // redis://host:port/db, no credentials: for String and errors
	prefix   string
	lockTTL  time.Duration
	lockPoll time.Duration
	log      *logrus.Entry

	// background is the parent of the goroutines that keep locks fresh;
	// Close cancels it.
	background context.Context
	stopAll    context.CancelFunc

	mu   sync.Mutex
	held map[string]*heldLock // lock name -> this Storage's hold on it
}

var (
	_ certmagic.Storage   = (*Storage)(nil)
	_ certmagic.TryLocker = (*Storage)(nil)
	_ fmt.Stringer        = (*Storage)(nil)
)

// New connects to the Redis server at rawURL,
// redis://[user:password@]host[:port][/db] or rediss://... for TLS (go-redis
// URL query options such as ?dial_timeout=3s are accepted), and checks that
// it answers PING. Errors name the URL with the password hidden.
func New(ctx context.Context, rawURL string, opts Options) (*Storage, error) {
	ropts, where, err := parseURL(rawURL, opts.TLSRootCAs)
	if err != nil {
		return nil, err
	}
	switch ttl := opts.lockTTL(); {
	case ttl < MinLockTTL:
		return nil, fmt.Errorf("redis storage %s: LockTTL %s is shorter than %s", where, ttl, MinLockTTL)
	case opts.lockPoll() < 0:
		return nil, fmt.Errorf("redis storage %s: LockPoll %s is negative", where, opts.LockPoll)
	}

	rdb := redis.NewClient(ropts)
	background, stopAll := context.WithCancel(context.Background())
	s := &Storage{
		rdb:        rdb,
		where:      where,
		prefix:     opts.keyPrefix(),
		lockTTL:    opts.lockTTL(),
		lockPoll:   opts.lockPoll(),
		log:        opts.log().WithField("storage", where),
		background: background,
		stopAll:    stopAll,
		held:       make(map[string]*heldLock),
	}
	if opts.Unreachable {
		if err := s.Ping(ctx); err != nil {
			return s, err
		}
		return s, nil
	}
	if err := s.Ping(ctx); err != nil {
		_ = s.Close() // the ping error is the one worth reporting
		return nil, err
	}
	return s, nil
}

// Ping checks that the server answers, within a bounded time.
func (s *Storage) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis storage %s: ping: %w", s.where, err)
	}
	return nil
}

// Close stops extending the locks this Storage holds and closes its
// connections. It does not release the locks: they expire within LockTTL.
// Unlock them first (certmagic.CleanUpOwnLocks does) to free them at once.
func (s *Storage) Close() error {
	s.stopAll()
	s.mu.Lock()
	held := s.held
	s.held = make(map[string]*heldLock)
	s.mu.Unlock()
	for _, h := range held {
		<-h.done
	}
	if err := s.rdb.Close(); err != nil {
		return fmt.Errorf("redis storage %s: close: %w", s.where, err)
	}
	return nil
}

// String is where the certificates live, e.g. "redis://127.0.0.1:6379/0",
// without credentials.
func (s *Storage) String() string {
	return s.where
}

// fail wraps err from operation op on key with where it happened.
func (s *Storage) fail(op, key string, err error) error {
	return fmt.Errorf("redis storage %s: %s %q: %w", s.where, op, key, err)
}

// Redis key names; see the package documentation.
func (s *Storage) filePrefix() string         { return s.prefix + "file:" }
func (s *Storage) fileKey(key string) string  { return s.filePrefix() + key }
func (s *Storage) indexKey() string           { return s.prefix + "index" }
func (s *Storage) lockKey(name string) string { return s.prefix + "lock:" + name }
