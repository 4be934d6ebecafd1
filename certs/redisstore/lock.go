package redisstore

import (
	"context"
	"crypto/rand"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"
)

// A lock is one Redis string, <prefix>lock:<name>, holding a token that is
// random per acquisition, with a TTL. Acquiring is SET NX PX; while held, a
// goroutine extends the TTL every LockTTL/3; releasing deletes the key. The
// extension and the release first check that the key still holds our
// token: after a holder stalls past the TTL and someone else takes the
// lock, the old holder must neither extend nor delete the new holder's lock.
//
// This is a lease, not a fencing scheme: a holder that stalls for longer
// than LockTTL loses the lock without knowing it until Unlock reports
// ErrLockLost. certmagic's contract accepts that (its Locker documentation
// asks callers to tolerate rare mis-synchronization).

// extendScript sets the TTL of KEYS[1] to ARGV[2] milliseconds if it holds
// the token ARGV[1]; replies 1 if it did, 0 if the lock is not ours.
var extendScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0
`)

// releaseScript deletes KEYS[1] if it holds the token ARGV[1]; replies 1 if
// it did, 0 if the lock is not ours.
var releaseScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0
`)

// heldLock is this Storage's hold on a lock.
type heldLock struct {
	token string
	stop  context.CancelFunc // stops the extending goroutine
	done  chan struct{}      // closed when it has stopped
	lost  atomic.Bool        // an extension found someone else's token
}

// Lock takes the lock name, waiting (polling every LockPoll) while another
// holder has it, until ctx is done. A Redis error ends the wait: certmagic
// retries failed jobs itself, and a Lock that hides an outage would only
// delay the report. The lock is extended in the background until Unlock; if
// this process dies, it frees itself after LockTTL.
func (s *Storage) Lock(ctx context.Context, name string) error {
	poll := time.NewTicker(s.lockPoll)
	defer poll.Stop()
	for {
		ok, err := s.tryLock(ctx, name)
		if err != nil || ok {
			return err
		}
		select {
		case <-poll.C:
		case <-ctx.Done():
			return s.fail("lock", name, context.Cause(ctx))
		}
	}
}

// TryLock takes the lock name if nobody holds it, reporting whether it did.
// It does not wait.
func (s *Storage) TryLock(ctx context.Context, name string) (bool, error) {
	return s.tryLock(ctx, name)
}

// Unlock releases the lock name taken by Lock or TryLock on this Storage.
// It fails with ErrLockNotHeld if this Storage does not hold it (the lock
// is left alone), with ErrLockLost if it had expired, and with the Redis
// error if the server could not be reached; the lock then expires within
// LockTTL, since it is no longer extended.
func (s *Storage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	h := s.held[name]
	delete(s.held, name)
	s.mu.Unlock()
	if h == nil {
		return s.fail("unlock", name, ErrLockNotHeld)
	}
	h.stop()
	<-h.done

	released, err := releaseScript.Run(ctx, s.rdb, []string{s.lockKey(name)}, h.token).Int()
	switch {
	case err != nil:
		return s.fail("unlock", name, fmt.Errorf("%w (the lock expires within %s)", err, s.lockTTL))
	case released == 0 || h.lost.Load():
		return s.fail("unlock", name, ErrLockLost)
	}
	return nil
}

// tryLock makes one attempt at the lock and, on success, starts extending
// it.
func (s *Storage) tryLock(ctx context.Context, name string) (bool, error) {
	token := rand.Text()
	sent := time.Now() // the lock expires no earlier than sent+LockTTL
	ok, err := s.rdb.SetNX(ctx, s.lockKey(name), token, s.lockTTL).Result()
	if err != nil {
		return false, s.fail("lock", name, err)
	}
	if !ok {
		return false, nil
	}

	extendCtx, stop := context.WithCancel(s.background)
	h := &heldLock{token: token, stop: stop, done: make(chan struct{})}
	s.mu.Lock()
	previous := s.held[name]
	s.held[name] = h
	s.mu.Unlock()
	if previous != nil {
		// Our earlier hold expired (SET NX would have failed otherwise);
		// its goroutine would find our token and stop by itself, but
		// there is no reason to let it try. Locks are named, not owned
		// by a caller (certmagic's Locker has no handle), so the earlier
		// holder's Unlock will now release this hold; that can only
		// happen after the earlier one was lost, which its holder was
		// already unable to notice in time.
		previous.lost.Store(true)
		previous.stop()
	}
	go s.keepExtending(extendCtx, name, h, sent.Add(s.lockTTL))
	return true, nil
}

// keepExtending extends the lock name every LockTTL/3 until ctx is
// cancelled (Unlock, Close) or the lock is found lost. An attempt may take
// until the lock would expire: a slow Redis (or a new connection after a
// timeout) gets the whole remaining TTL, not just a third of it. A failed
// attempt (Redis briefly unreachable) is retried at the next tick while the
// lock may still be alive.
func (s *Storage) keepExtending(ctx context.Context, name string, h *heldLock, expires time.Time) {
	defer close(h.done)
	defer func() {
		if r := recover(); r != nil {
			s.log.WithFields(logrus.Fields{"lock": name, "panic": r, "stack": string(debug.Stack())}).
				Error("extending a lock panicked; it will expire")
		}
	}()
	every := s.lockTTL / 3
	timer := time.NewTimer(every)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		attempt, cancel := context.WithDeadline(ctx, expires)
		sent := time.Now()
		extended, err := extendScript.Run(attempt, s.rdb, []string{s.lockKey(name)}, h.token, s.lockTTL.Milliseconds()).Int()
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err == nil && extended == 1:
			// Measured from before the request: the server set the new
			// TTL no earlier than that.
			expires = sent.Add(s.lockTTL)
		case err == nil || !time.Now().Before(expires):
			h.lost.Store(true)
			s.log.WithFields(logrus.Fields{"lock": name, "error": err}).
				Error("lock expired while held; another instance may hold it now")
			return
		default:
			s.log.WithFields(logrus.Fields{"lock": name, "error": err}).Warn("could not extend lock; retrying")
		}
		timer.Reset(every)
	}
}
