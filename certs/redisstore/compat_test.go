package redisstore_test

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"github.com/caddyserver/certmagic"
	"github.com/tlsedge/tlsedge/certs/redisstore"
	"github.com/tlsedge/tlsedge/internal/redistest"
)

// step is one Storage call. Its result, rendered as a string, must be the
// same from certmagic.FileStorage and from Redis, unless redis says what
// Redis answers instead (and a comment says why).
type step struct {
	op    string // store, load, exists, stat, delete, list, listr (recursive)
	key   string
	value string // for store
	redis string
}

// compatScenarios are sequences of calls, each run on a fresh FileStorage
// and a fresh Redis namespace.
var compatScenarios = []struct {
	name  string
	steps []step
}{
	{"missing keys", []step{
		{op: "load", key: "a"},
		{op: "stat", key: "a"},
		{op: "exists", key: "a"},
		{op: "list", key: "a"},
		{op: "listr", key: "a"},
		{op: "delete", key: "a"},
		{op: "delete", key: "a/b/c"},
		// The root exists, empty.
		{op: "exists", key: ""},
		{op: "list", key: ""},
		{op: "stat", key: ""},
	}},
	{"file round trip", []step{
		{op: "store", key: "certificates/ca/example.com/example.com.crt", value: "CERT"},
		{op: "load", key: "certificates/ca/example.com/example.com.crt"},
		{op: "stat", key: "certificates/ca/example.com/example.com.crt"},
		{op: "exists", key: "certificates/ca/example.com/example.com.crt"},
		{op: "exists", key: "certificates"},
		{op: "exists", key: "certificates/ca"},
		{op: "stat", key: "certificates/ca"},
		// Prefixes count by component: "c" is not a prefix of "ca".
		{op: "exists", key: "certificates/c"},
		{op: "exists", key: "certificates/ca/example.com/example.com"},
		{op: "load", key: "certificates/ca"},
		{op: "list", key: "certificates"},
		{op: "listr", key: "certificates"},
		{op: "listr", key: ""},
		// A file lists as empty.
		{op: "list", key: "certificates/ca/example.com/example.com.crt"},
		// A directory cannot become a file, nor a file a directory.
		{op: "store", key: "certificates/ca", value: "x"},
		{op: "store", key: "certificates/ca/example.com/example.com.crt/x", value: "x"},
		// Below a file, nothing exists. FileStorage gets ENOTDIR from the
		// file system, which is not fs.ErrNotExist, so its Exists even says
		// true; certmagic would read that as "there is something there".
		{op: "exists", key: "certificates/ca/example.com/example.com.crt/x", redis: "false"},
		{op: "load", key: "certificates/ca/example.com/example.com.crt/x", redis: "not-exist"},
		{op: "stat", key: "certificates/ca/example.com/example.com.crt/x", redis: "not-exist"},
		{op: "list", key: "certificates/ca/example.com/example.com.crt/x", redis: "not-exist"},
	}},
	{"overwrite", []step{
		{op: "store", key: "k", value: "one"},
		{op: "store", key: "k", value: "second"},
		{op: "load", key: "k"},
		{op: "stat", key: "k"},
		{op: "store", key: "k", value: ""},
		{op: "load", key: "k"},
		{op: "stat", key: "k"},
	}},
	{"walk order", []step{
		{op: "store", key: "d/b.txt", value: "1"},
		{op: "store", key: "d/b/c", value: "2"},
		{op: "store", key: "d/b-1", value: "3"},
		{op: "store", key: "d/a", value: "4"},
		{op: "store", key: "d/b/e/f", value: "5"},
		{op: "store", key: "d/B", value: "6"},
		{op: "list", key: "d"},
		{op: "listr", key: "d"},
		{op: "list", key: ""},
		{op: "listr", key: ""},
		{op: "list", key: "d/b"},
		{op: "listr", key: "d/b"},
	}},
	{"delete directory", []step{
		{op: "store", key: "x/y/1", value: "1"},
		{op: "store", key: "x/y/2/3", value: "2"},
		{op: "store", key: "x/yz", value: "3"},
		{op: "store", key: "x/y.txt", value: "4"},
		{op: "delete", key: "x/y"},
		{op: "exists", key: "x/y"},
		{op: "exists", key: "x/y/2"},
		{op: "load", key: "x/y/1"},
		{op: "exists", key: "x/yz"},
		{op: "exists", key: "x/y.txt"},
		{op: "list", key: "x"},
		{op: "listr", key: "x"},
		{op: "delete", key: "x/y"},
		{op: "delete", key: "x/yz"},
		{op: "load", key: "x/yz"},
		{op: "listr", key: "x"},
	}},
	{"delete the last file of a directory", []step{
		{op: "store", key: "p/q/f", value: "1"},
		{op: "delete", key: "p/q/f"},
		{op: "load", key: "p/q/f"},
		// Directories exist only through the files under them (the
		// certmagic.Storage contract); FileStorage leaves empty
		// directories behind on disk.
		{op: "exists", key: "p/q", redis: "false"},
		{op: "list", key: "p/q", redis: "not-exist"},
		{op: "list", key: "p", redis: "not-exist"},
		{op: "stat", key: "p/q", redis: "not-exist"},
	}},
	{"key forms", []step{
		{op: "store", key: "/lead//mid/./trail/", value: "v"},
		{op: "load", key: "lead/mid/trail"},
		{op: "load", key: "lead/x/../mid/trail"},
		{op: "stat", key: "/lead/mid/trail"},
		{op: "list", key: "lead"},
		{op: "listr", key: "/lead/"},
		{op: "list", key: "/"},
		{op: "exists", key: "/"},
		{op: "delete", key: "lead/"},
		{op: "exists", key: "lead"},
		{op: "load", key: "lead/mid/trail"},
	}},
	{"root", []step{
		{op: "store", key: "", value: "x"},
		{op: "store", key: "a", value: "x"},
		{op: "load", key: ""},
		{op: "stat", key: ""},
		{op: "list", key: ""},
	}},
}

// TestFileStorageCompatibility runs each scenario against
// certmagic.FileStorage and against Redis and requires the same results,
// step by step: the Redis store behaves as the storage certmagic was built
// and tested on.
func TestFileStorageCompatibility(t *testing.T) {
	srv := redistest.Start(t)
	for _, sc := range compatScenarios {
		t.Run(sc.name, func(t *testing.T) {
			files := &certmagic.FileStorage{Path: t.TempDir()}
			redis := newStorage(t, srv.URL(), redisstore.Options{})
			for i, st := range sc.steps {
				fromFiles := run(t, files, st)
				fromRedis := run(t, redis, st)
				t.Logf("step %d %s %q: %s", i, st.op, st.key, fromRedis)
				want := fromFiles
				if st.redis != "" {
					want = st.redis
					if fromFiles == st.redis {
						t.Errorf("step %d %s %q: FileStorage now agrees with the Redis override %q; drop the override", i, st.op, st.key, st.redis)
					}
				}
				if fromRedis != want {
					t.Errorf("step %d %s %q: Redis gives %s, want %s (FileStorage: %s)", i, st.op, st.key, fromRedis, want, fromFiles)
				}
			}
		})
	}
}

// run performs st on s and renders the result.
func run(t *testing.T, s certmagic.Storage, st step) string {
	t.Helper()
	ctx := testContext(t)
	switch st.op {
	case "store":
		return outcome(s.Store(ctx, st.key, []byte(st.value)))
	case "load":
		v, err := s.Load(ctx, st.key)
		if err != nil {
			return outcome(err)
		}
		return fmt.Sprintf("value %q", v)
	case "exists":
		return fmt.Sprint(s.Exists(ctx, st.key))
	case "stat":
		info, err := s.Stat(ctx, st.key)
		switch {
		case err != nil:
			return outcome(err)
		case info.Key != st.key:
			return fmt.Sprintf("Key %q", info.Key)
		case !info.IsTerminal:
			return "directory" // FileStorage's Size and Modified are the file system's
		case info.Modified.IsZero():
			return "file without a modification time"
		}
		return fmt.Sprintf("file of %d bytes", info.Size)
	case "delete":
		return outcome(s.Delete(ctx, st.key))
	case "list", "listr":
		keys, err := s.List(ctx, st.key, st.op == "listr")
		if err != nil {
			return outcome(err)
		}
		return fmt.Sprintf("%q", keys)
	}
	t.Fatalf("unknown op %q", st.op)
	return ""
}

// outcome classifies an error the way certmagic does: nil, fs.ErrNotExist,
// or anything else.
func outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, fs.ErrNotExist):
		return "not-exist"
	}
	return "error"
}
