package certs

import (
	"context"
	"errors"
	"io/fs"

	"github.com/caddyserver/certmagic"
)

// mirrorStorage puts a local copy under a shared storage (Redis), so that
// an instance that has run before starts and serves its ACME certificates
// while the shared storage does not answer: what it read or wrote last is
// in the mirror, under the state directory (files 0600, as certmagic's
// FileStorage writes them).
//
// Writes go to the shared storage first and then to the mirror; a failed
// shared write fails (certmagic retries it). Reads come from the shared
// storage and refresh the mirror; only when the shared storage fails (not
// when it says a key does not exist) do they come from the mirror. Locks
// are the shared storage's alone: without it nothing is ordered or renewed,
// which is what the cluster needs (one order per name).
type mirrorStorage struct {
	shared lockingStorage
	local  *certmagic.FileStorage
	onFall func(op, key string, err error) // told when a read falls back
}

// lockingStorage is a storage with a lock that does not wait.
type lockingStorage interface {
	certmagic.Storage
	certmagic.TryLocker
}

var _ lockingStorage = (*mirrorStorage)(nil)

// unavailable reports whether err means the shared storage did not answer,
// as opposed to a definite answer (the key does not exist).
func unavailable(err error) bool { return err != nil && !errors.Is(err, fs.ErrNotExist) }

func (m *mirrorStorage) fell(op, key string, err error) {
	if m.onFall != nil {
		m.onFall(op, key, err)
	}
}

func (m *mirrorStorage) Store(ctx context.Context, key string, value []byte) error {
	if err := m.shared.Store(ctx, key, value); err != nil {
		return err
	}
	_ = m.local.Store(ctx, key, value) // the mirror is a cache: a failed copy costs a cold start
	return nil
}

func (m *mirrorStorage) Load(ctx context.Context, key string) ([]byte, error) {
	v, err := m.shared.Load(ctx, key)
	switch {
	case err == nil:
		_ = m.local.Store(ctx, key, v)
		return v, nil
	case unavailable(err):
		if lv, lerr := m.local.Load(ctx, key); lerr == nil {
			m.fell("load", key, err)
			return lv, nil
		}
	}
	return nil, err
}

func (m *mirrorStorage) Delete(ctx context.Context, key string) error {
	if err := m.shared.Delete(ctx, key); err != nil {
		return err
	}
	_ = m.local.Delete(ctx, key) // a stale copy is only read while the shared storage fails
	return nil
}

func (m *mirrorStorage) Exists(ctx context.Context, key string) bool {
	if m.shared.Exists(ctx, key) {
		return true
	}
	// Exists cannot say "unreachable": ask Stat, which can.
	if _, err := m.shared.Stat(ctx, key); unavailable(err) {
		return m.local.Exists(ctx, key)
	}
	return false
}

func (m *mirrorStorage) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	keys, err := m.shared.List(ctx, path, recursive)
	if unavailable(err) {
		if lk, lerr := m.local.List(ctx, path, recursive); lerr == nil {
			m.fell("list", path, err)
			return lk, nil
		}
	}
	return keys, err
}

func (m *mirrorStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	ki, err := m.shared.Stat(ctx, key)
	if unavailable(err) {
		if lki, lerr := m.local.Stat(ctx, key); lerr == nil {
			m.fell("stat", key, err)
			return lki, nil
		}
	}
	return ki, err
}

func (m *mirrorStorage) Lock(ctx context.Context, name string) error {
	return m.shared.Lock(ctx, name)
}

func (m *mirrorStorage) Unlock(ctx context.Context, name string) error {
	return m.shared.Unlock(ctx, name)
}

func (m *mirrorStorage) TryLock(ctx context.Context, name string) (bool, error) {
	return m.shared.TryLock(ctx, name)
}

// String is the shared storage's description.
func (m *mirrorStorage) String() string {
	if s, ok := m.shared.(interface{ String() string }); ok {
		return s.String() + " (mirrored in " + m.local.Path + ")"
	}
	return "mirrored in " + m.local.Path
}
