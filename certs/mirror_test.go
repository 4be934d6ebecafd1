package certs

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/internal/redistest"
)

// The Redis storage's local mirror: what was written or read is served
// from the state dir while Redis does not answer, also by a storage opened
// while Redis is down (a restart); a key Redis says does not exist is not
// resurrected from the mirror; locks stay Redis's.
func TestMirrorServesWhileRedisIsAway(t *testing.T) {
	rs := redistest.Start(t)
	ctx := context.Background()
	state := t.TempDir()
	st, _, err := OpenStorage(ctx, rs.URL(), state)
	if err != nil {
		t.Fatal(err)
	}
	const key = "certificates/acme/shop.example.com/shop.example.com.crt"
	if err := st.Store(ctx, key, []byte("PEM")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(state, "acme-mirror", key))
	if err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("mirror copy: %v, mode %v (want no group/other access)", err, fi.Mode())
	}

	rs.Stop()
	if v, err := st.Load(ctx, key); err != nil || string(v) != "PEM" {
		t.Errorf("Load with Redis down: %q, %v", v, err)
	}
	if !st.Exists(ctx, key) {
		t.Error("Exists with Redis down: false")
	}
	if keys, err := st.List(ctx, "certificates", true); err != nil || len(keys) == 0 {
		t.Errorf("List with Redis down: %v, %v", keys, err)
	}
	if _, err := st.Load(ctx, "certificates/never/stored"); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a key never seen, Redis down: %v, want the Redis error", err)
	}
	if err := st.Store(ctx, key, []byte("NEW")); err == nil {
		t.Error("Store with Redis down succeeded: the cluster would not see it")
	}

	// A restart while Redis is down: the storage opens degraded and serves
	// from the mirror.
	again, _, err := OpenStorage(ctx, rs.URL(), state)
	var de *DegradedError
	if !errors.As(err, &de) || de.Mirror == "" {
		t.Fatalf("opening with Redis down: %v, want a DegradedError naming the mirror", err)
	}
	if v, err := again.Load(ctx, key); err != nil || string(v) != "PEM" {
		t.Errorf("Load after a restart with Redis down: %q, %v", v, err)
	}

	// Redis back, empty: it is the truth again (once the client's pooled
	// connections to the old server have failed and been replaced).
	rs.Restart()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := st.Load(ctx, key)
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Load of a key Redis no longer has: %v, want not-exist", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
