package redisstore_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/certs/redisstore"
	"github.com/tlsedge/tlsedge/internal/redistest"
)

const lockName = "issue_cert_example.com"

// fastLocks keeps lock tests quick: Lock retries every 5 ms.
var fastLocks = redisstore.Options{KeyPrefix: "locks:", LockPoll: 5 * time.Millisecond}

// twoInstances is two Storage values on one Redis, as two gateways would be.
func twoInstances(t *testing.T, opts redisstore.Options) (*redistest.Server, *redisstore.Storage, *redisstore.Storage) {
	t.Helper()
	srv := redistest.Start(t)
	return srv, newStorage(t, srv.URL(), opts), newStorage(t, srv.URL(), opts)
}

func TestLockBlocksOtherInstanceUntilUnlock(t *testing.T) {
	srv, a, b := twoInstances(t, fastLocks)
	ctx := testContext(t)
	raw := rawClient(t, srv.Addr())

	if err := a.Lock(ctx, lockName); err != nil {
		t.Fatalf("a.Lock: %v", err)
	}
	setsBefore := commandCalls(t, raw, "set")
	got := make(chan error, 1)
	go func() { got <- b.Lock(ctx, lockName) }()

	// b has tried (SET NX) and failed at least twice: it is waiting.
	waitFor(t, "b to try the lock twice", func() bool {
		return commandCalls(t, raw, "set") >= setsBefore+2
	})
	select {
	case err := <-got:
		t.Fatalf("b.Lock returned (%v) while a holds the lock", err)
	default:
	}

	if err := a.Unlock(ctx, lockName); err != nil {
		t.Fatalf("a.Unlock: %v", err)
	}
	if err := <-got; err != nil {
		t.Fatalf("b.Lock after a.Unlock: %v", err)
	}
	if err := b.Unlock(ctx, lockName); err != nil {
		t.Fatalf("b.Unlock: %v", err)
	}
}

func TestTryLock(t *testing.T) {
	_, a, b := twoInstances(t, fastLocks)
	ctx := testContext(t)

	tryLock := func(s *redisstore.Storage, who string, want bool) {
		t.Helper()
		ok, err := s.TryLock(ctx, lockName)
		if err != nil || ok != want {
			t.Fatalf("%s.TryLock = %v, %v; want %v, nil", who, ok, err, want)
		}
	}
	tryLock(a, "a", true)
	tryLock(b, "b", false)
	tryLock(a, "a", false) // not reentrant: a second hold would be a second holder
	if err := a.Unlock(ctx, lockName); err != nil {
		t.Fatalf("a.Unlock: %v", err)
	}
	tryLock(b, "b", true)
	if err := b.Unlock(ctx, lockName); err != nil {
		t.Fatalf("b.Unlock: %v", err)
	}
}

// TestLockExtendedWhileHeld holds a lock for several TTLs: its TTL goes back
// up each time the holder extends it, and nobody else gets it meanwhile.
func TestLockExtendedWhileHeld(t *testing.T) {
	opts := fastLocks
	opts.LockTTL = time.Second
	srv, a, b := twoInstances(t, opts)
	ctx := testContext(t)
	raw := rawClient(t, srv.Addr())
	key := opts.KeyPrefix + "lock:" + lockName

	if err := a.Lock(ctx, lockName); err != nil {
		t.Fatalf("a.Lock: %v", err)
	}
	// Each extension resets the TTL; 4 of them span more than one TTL.
	last, extensions := opts.LockTTL, 0
	waitFor(t, "4 extensions of the lock", func() bool {
		ttl, err := raw.PTTL(ctx, key).Result()
		if err != nil || ttl <= 0 {
			t.Fatalf("PTTL %s = %v, %v: the lock is gone while held", key, ttl, err)
		}
		if ttl > last {
			extensions++
		}
		last = ttl
		return extensions >= 4
	})
	if ok, err := b.TryLock(ctx, lockName); ok || err != nil {
		t.Fatalf("b.TryLock after %d extensions = %v, %v; want false, nil", extensions, ok, err)
	}
	if err := a.Unlock(ctx, lockName); err != nil {
		t.Fatalf("a.Unlock: %v", err)
	}
}

// TestLockOfDeadHolderExpires: a holder that goes away without Unlock
// (here: Close, which stops extending) blocks others for at most LockTTL.
func TestLockOfDeadHolderExpires(t *testing.T) {
	opts := fastLocks
	opts.LockTTL = 500 * time.Millisecond
	srv := redistest.Start(t)
	ctx := testContext(t)
	b := newStorage(t, srv.URL(), opts)
	a, err := redisstore.New(ctx, srv.URL(), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := a.Lock(ctx, lockName); err != nil {
		t.Fatalf("a.Lock: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("a.Close: %v", err)
	}
	// The lock is still there, but with a TTL (-1 would mean forever,
	// -2 that it has already expired).
	raw := rawClient(t, srv.Addr())
	if ttl := raw.PTTL(ctx, opts.KeyPrefix+"lock:"+lockName).Val(); ttl == -1 || ttl > opts.LockTTL {
		t.Fatalf("PTTL of the abandoned lock = %v, want at most %v", ttl, opts.LockTTL)
	}
	if err := b.Lock(ctx, lockName); err != nil {
		t.Fatalf("b.Lock after the holder went away: %v", err)
	}
	if err := b.Unlock(ctx, lockName); err != nil {
		t.Fatalf("b.Unlock: %v", err)
	}
}

func TestUnlockByNonHolderKeepsTheLock(t *testing.T) {
	_, a, b := twoInstances(t, fastLocks)
	ctx := testContext(t)
	if err := a.Lock(ctx, lockName); err != nil {
		t.Fatalf("a.Lock: %v", err)
	}
	if err := b.Unlock(ctx, lockName); !errors.Is(err, redisstore.ErrLockNotHeld) {
		t.Fatalf("b.Unlock of a's lock = %v, want ErrLockNotHeld", err)
	}
	if ok, err := b.TryLock(ctx, lockName); ok || err != nil {
		t.Fatalf("b.TryLock after b's Unlock = %v, %v; want false, nil (a still holds it)", ok, err)
	}
	if err := a.Unlock(ctx, lockName); err != nil {
		t.Fatalf("a.Unlock: %v", err)
	}
}

// TestUnlockAfterExpiryLeavesNewHolder: when a's lock has expired and b
// took it, a's Unlock reports the loss and does not delete b's lock.
func TestUnlockAfterExpiryLeavesNewHolder(t *testing.T) {
	srv, a, b := twoInstances(t, fastLocks)
	ctx := testContext(t)
	if err := a.Lock(ctx, lockName); err != nil {
		t.Fatalf("a.Lock: %v", err)
	}
	// Expire a's lock now rather than waiting LockTTL.
	raw := rawClient(t, srv.Addr())
	if err := raw.Del(ctx, fastLocks.KeyPrefix+"lock:"+lockName).Err(); err != nil {
		t.Fatalf("DEL lock: %v", err)
	}
	if ok, err := b.TryLock(ctx, lockName); !ok || err != nil {
		t.Fatalf("b.TryLock of the expired lock = %v, %v; want true, nil", ok, err)
	}
	if err := a.Unlock(ctx, lockName); !errors.Is(err, redisstore.ErrLockLost) {
		t.Fatalf("a.Unlock of an expired lock = %v, want ErrLockLost", err)
	}
	if ok, err := a.TryLock(ctx, lockName); ok || err != nil {
		t.Fatalf("a.TryLock after a's Unlock = %v, %v; want false, nil (b holds it)", ok, err)
	}
	if err := b.Unlock(ctx, lockName); err != nil {
		t.Fatalf("b.Unlock: %v", err)
	}
}

func TestLockHonorsContext(t *testing.T) {
	srv, a, b := twoInstances(t, fastLocks)
	ctx := testContext(t)
	raw := rawClient(t, srv.Addr())
	if err := a.Lock(ctx, lockName); err != nil {
		t.Fatalf("a.Lock: %v", err)
	}
	waiting, cancel := context.WithCancel(ctx)
	got := make(chan error, 1)
	setsBefore := commandCalls(t, raw, "set")
	go func() { got <- b.Lock(waiting, lockName) }()
	waitFor(t, "b to try the lock", func() bool {
		return commandCalls(t, raw, "set") > setsBefore
	})
	cancel()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Fatalf("b.Lock with a cancelled context = %v, want context.Canceled", err)
	}
	if err := a.Unlock(ctx, lockName); err != nil {
		t.Fatalf("a.Unlock: %v", err)
	}
}

// TestLockMutualExclusion: goroutines on two instances take turns; none is
// ever inside the critical section together with another.
func TestLockMutualExclusion(t *testing.T) {
	_, a, b := twoInstances(t, fastLocks)
	ctx := testContext(t)
	var inside, entered atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for range 5 {
				if err := s.Lock(ctx, lockName); err != nil {
					t.Errorf("Lock: %v", err)
					return
				}
				if n := inside.Add(1); n != 1 {
					t.Errorf("%d holders at once", n)
				}
				entered.Add(1)
				inside.Add(-1)
				if err := s.Unlock(ctx, lockName); err != nil {
					t.Errorf("Unlock: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := entered.Load(); n != 40 {
		t.Fatalf("critical section entered %d times, want 40", n)
	}
}
