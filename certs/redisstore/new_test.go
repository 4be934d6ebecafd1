package redisstore_test

import (
	"context"
	"crypto/x509"
	"errors"
	"io/fs"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/certs/redisstore"
	"github.com/tlsedge/tlsedge/internal/redistest"
)

func TestNewRejectsBadURLs(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want string // in the error, after the (redacted) URL
	}{
		{"redis://", "missing host"},
		{"", `scheme "" is not redis or rediss`},
		{"http://x", `scheme "http" is not redis or rediss`},
		{"unix:///run/redis.sock", `scheme "unix" is not redis or rediss`},
		{"redis://host:notaport/0", `invalid port ":notaport" after host`},
		{"redis://127.0.0.1:6379/abc", `invalid database number: "abc"`},
		{"redis://127.0.0.1:6379/0/1", "invalid URL path"},
		{"redis://127.0.0.1:6379/0?pool_size=many", "invalid pool_size number"},
		// The password never appears, even when the URL does not parse.
		{"redis://admin:hunter2@host:notaport/0", `"redis://admin:xxxxx@host:notaport/0": invalid port`},
		{"redis://:hunter2@/0", `"redis://:xxxxx@/0": missing host`},
		{"redis://admin:hunter2@127.0.0.1:6379/abc", `"redis://admin:xxxxx@127.0.0.1:6379/abc": redis: invalid database number`},
	} {
		t.Run(tc.url, func(t *testing.T) {
			s, err := redisstore.New(testContext(t), tc.url, redisstore.Options{})
			if err == nil {
				s.Close()
				t.Fatalf("New(%q) succeeded", tc.url)
			}
			msg := err.Error()
			t.Log(msg)
			if !strings.HasPrefix(msg, "redis storage URL ") || !strings.Contains(msg, tc.want) {
				t.Fatalf("New(%q) = %q, want `redis storage URL ...: ...%s...`", tc.url, msg, tc.want)
			}
			if strings.Contains(msg, "hunter2") {
				t.Fatalf("error shows the password: %q", msg)
			}
		})
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	srv := redistest.Start(t)
	for _, tc := range []struct {
		name string
		opts redisstore.Options
		want string
	}{
		{"TLS roots without TLS", redisstore.Options{TLSRootCAs: x509.NewCertPool()}, "TLSRootCAs is set but the URL is not rediss://"},
		{"LockTTL too short", redisstore.Options{LockTTL: time.Millisecond}, "LockTTL 1ms is shorter than 100ms"},
		{"negative LockPoll", redisstore.Options{LockPoll: -time.Second}, "LockPoll -1s is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := redisstore.New(testContext(t), srv.URL(), tc.opts)
			if err == nil {
				s.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %q, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestNewUnreachableServer(t *testing.T) {
	// A port that nothing listens on: take a free one and let it go.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	url := "redis://" + addr + "/0"
	s, err := redisstore.New(testContext(t), url, redisstore.Options{})
	if err == nil {
		s.Close()
		t.Fatalf("New(%q) succeeded with nothing listening", url)
	}
	t.Log(err)
	if want := "redis storage " + url + ": ping: "; !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("New = %q, want prefix %q", err, want)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("New = %q, want it to wrap ECONNREFUSED", err)
	}
}

func TestNewHonorsContext(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	s, err := redisstore.New(ctx, srv.URL(), redisstore.Options{})
	if err == nil {
		s.Close()
		t.Fatal("New with a cancelled context succeeded")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("New with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestPasswordFromURL(t *testing.T) {
	const password = "correct-horse"
	srv := redistest.StartWith(t, redistest.Options{Password: password})
	ctx := testContext(t)

	s := newStorage(t, srv.URL(), redisstore.Options{})
	if err := s.Store(ctx, "k", []byte("v")); err != nil {
		t.Fatalf("Store with the password: %v", err)
	}
	if v, err := s.Load(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("Load with the password = %q, %v", v, err)
	}
	if want := "redis://" + srv.Addr() + "/0"; s.String() != want {
		t.Fatalf("String() = %q, want %q", s.String(), want)
	}

	for _, tc := range []struct{ url, want string }{
		{"redis://" + srv.Addr() + "/0", "NOAUTH"},
		{"redis://:wrong-horse@" + srv.Addr() + "/0", "WRONGPASS"},
		{"redis://default:wrong-horse@" + srv.Addr() + "/0", "WRONGPASS"},
	} {
		s, err := redisstore.New(ctx, tc.url, redisstore.Options{})
		if err == nil {
			s.Close()
			t.Fatalf("New(%q) succeeded without the right password", tc.url)
		}
		t.Log(err)
		if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "wrong-horse") {
			t.Fatalf("New(%q) = %q, want it to say %s and not show the password", tc.url, err, tc.want)
		}
	}
}

func TestString(t *testing.T) {
	srv := redistest.Start(t)
	_, port, _ := net.SplitHostPort(srv.Addr())
	for url, want := range map[string]string{
		"redis://127.0.0.1:" + port + "/0": "redis://127.0.0.1:" + port + "/0",
		"redis://127.0.0.1:" + port:        "redis://127.0.0.1:" + port + "/0",
		"redis://localhost:" + port + "/3": "redis://localhost:" + port + "/3",
	} {
		if got := newStorage(t, url, redisstore.Options{}).String(); got != want {
			t.Errorf("New(%q).String() = %q, want %q", url, got, want)
		}
	}
}

// TestRedisOutage: while Redis is down, every call fails with an error that
// names the store and is not fs.ErrNotExist (certmagic must not take an
// outage for a missing certificate); once Redis is back, calls work again
// on the same Storage.
func TestRedisOutage(t *testing.T) {
	srv := redistest.Start(t)
	ctx := testContext(t)
	s := newStorage(t, srv.URL(), redisstore.Options{})
	if err := s.Store(ctx, "before", []byte("v")); err != nil {
		t.Fatalf("Store: %v", err)
	}

	srv.Stop()
	// Each call gets a quarter second: go-redis would otherwise retry the
	// dial for seconds per call, which only makes the test slow.
	outage := func() context.Context {
		ctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	where := "redis storage " + srv.URL() + ": "
	check := func(op string, err error) {
		t.Helper()
		t.Logf("%s during the outage: %v", op, err)
		switch {
		case err == nil:
			t.Errorf("%s succeeded with Redis down", op)
		case errors.Is(err, fs.ErrNotExist):
			t.Errorf("%s with Redis down = %q, which is fs.ErrNotExist", op, err)
		case !strings.HasPrefix(err.Error(), where):
			t.Errorf("%s with Redis down = %q, want prefix %q", op, err, where)
		}
	}
	check("Store", s.Store(outage(), "during", []byte("v")))
	_, err := s.Load(outage(), "before")
	check("Load", err)
	_, err = s.Stat(outage(), "before")
	check("Stat", err)
	_, err = s.List(outage(), "", true)
	check("List", err)
	check("Delete", s.Delete(outage(), "before"))
	_, err = s.TryLock(outage(), lockName)
	check("TryLock", err)
	if s.Exists(outage(), "before") {
		t.Error("Exists = true with Redis down")
	}

	srv.Restart() // empty: nothing is persisted
	// After repeated dial failures go-redis stops dialling and probes the
	// server once a second, failing calls meanwhile; so the first call
	// after the restart may still fail, and one within seconds succeeds.
	waitFor(t, "Store to work after the restart", func() bool {
		return s.Store(ctx, "after", []byte("v2")) == nil
	})
	if v, err := s.Load(ctx, "after"); err != nil || string(v) != "v2" {
		t.Fatalf("Load after restart = %q, %v", v, err)
	}
	if _, err := s.Load(ctx, "before"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a key lost with the restart = %v, want fs.ErrNotExist", err)
	}
}
