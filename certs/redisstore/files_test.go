package redisstore_test

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/certs/redisstore"
	"github.com/tlsedge/tlsedge/internal/redistest"
)

// TestStatModified: a file's modification time is when it was stored (by
// the Redis server's clock, which here is ours); a directory's is that of
// its newest file, which is what certmagic compares to pick the most
// recently used ACME account.
func TestStatModified(t *testing.T) {
	srv := redistest.Start(t)
	ctx := testContext(t)
	s := newStorage(t, srv.URL(), redisstore.Options{})

	before := time.Now().Truncate(time.Microsecond)
	if err := s.Store(ctx, "users/a@example.com/a.json", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	older, err := s.Stat(ctx, "users/a@example.com/a.json")
	if err != nil {
		t.Fatal(err)
	}
	if older.Modified.Before(before) || older.Modified.After(after) {
		t.Fatalf("Modified = %v, want between %v and %v", older.Modified, before, after)
	}

	// Make sure the second file's time differs from the first's.
	waitFor(t, "the clock to move", func() bool { return time.Now().Truncate(time.Microsecond).After(older.Modified) })
	if err := s.Store(ctx, "users/b@example.com/b.json", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	newer, err := s.Stat(ctx, "users/b@example.com/b.json")
	if err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]time.Time{
		"users/a@example.com": older.Modified,
		"users/b@example.com": newer.Modified,
		"users":               newer.Modified,
	} {
		info, err := s.Stat(ctx, dir)
		if err != nil || info.IsTerminal || !info.Modified.Equal(want) {
			t.Errorf("Stat(%q) = %+v, %v; want a directory modified %v", dir, info, err, want)
		}
	}
}

func TestStoreAndLoadBinary(t *testing.T) {
	srv := redistest.Start(t)
	ctx := testContext(t)
	s := newStorage(t, srv.URL(), redisstore.Options{})
	value := make([]byte, 256<<10)
	for i := range value {
		value[i] = byte(i * 7)
	}
	if err := s.Store(ctx, "ocsp/big", value); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(ctx, "ocsp/big")
	if err != nil || string(got) != string(value) {
		t.Fatalf("Load = %d bytes, %v; want the %d bytes stored", len(got), err, len(value))
	}
}

func TestKeyPrefixSeparatesStores(t *testing.T) {
	srv := redistest.Start(t)
	ctx := testContext(t)
	a := newStorage(t, srv.URL(), redisstore.Options{KeyPrefix: "a:"})
	b := newStorage(t, srv.URL(), redisstore.Options{KeyPrefix: "b:"})
	if err := a.Store(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Load(ctx, "k"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("b.Load of a's key = %v, want fs.ErrNotExist", err)
	}
	if keys, err := b.List(ctx, "", true); err != nil || len(keys) != 0 {
		t.Fatalf("b.List = %q, %v; want nothing", keys, err)
	}
}

// TestDeleteRootRefused: FileStorage would delete its whole directory; on a
// shared store that is every instance's certificates and accounts.
func TestDeleteRootRefused(t *testing.T) {
	srv := redistest.Start(t)
	ctx := testContext(t)
	s := newStorage(t, srv.URL(), redisstore.Options{})
	if err := s.Store(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	for _, root := range []string{"", "/", "."} {
		if err := s.Delete(ctx, root); err == nil || !strings.Contains(err.Error(), "refusing to delete the root") {
			t.Fatalf("Delete(%q) = %v, want a refusal", root, err)
		}
	}
	if !s.Exists(ctx, "k") {
		t.Fatal("k is gone after refused Deletes of the root")
	}
}

func TestErrorsNameKeyAndStore(t *testing.T) {
	srv := redistest.Start(t)
	ctx := testContext(t)
	s := newStorage(t, srv.URL(), redisstore.Options{})
	if err := s.Store(ctx, "a/b", []byte("v")); err != nil {
		t.Fatal(err)
	}
	_, err := s.Load(ctx, "a/c")
	if want := "redis storage " + srv.URL() + `: load "a/c": file does not exist`; err == nil || err.Error() != want {
		t.Fatalf("Load of a missing key = %v, want %q", err, want)
	}
	err = s.Store(ctx, "a/b/c", []byte("v"))
	if !errors.Is(err, redisstore.ErrNotDirectory) || !strings.Contains(err.Error(), `store "a/b/c": a parent of the key is a file: "a/b"`) {
		t.Fatalf("Store below a file = %v, want ErrNotDirectory naming a/b", err)
	}
	if err := s.Store(ctx, "a", []byte("v")); !errors.Is(err, redisstore.ErrIsDirectory) {
		t.Fatalf("Store over a directory = %v, want ErrIsDirectory", err)
	}
	if _, err := s.Load(ctx, "a"); !errors.Is(err, redisstore.ErrIsDirectory) {
		t.Fatalf("Load of a directory = %v, want ErrIsDirectory", err)
	}
}
