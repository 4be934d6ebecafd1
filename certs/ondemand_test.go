package certs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

func newTestOnDemand(t *testing.T, c OnDemandConfig) *onDemand {
	t.Helper()
	od, err := newOnDemand(c, logrus.NewEntry(logrus.New()))
	if err != nil {
		t.Fatal(err)
	}
	return od
}

func TestOnDemandAllowlist(t *testing.T) {
	od := newTestOnDemand(t, OnDemandConfig{Allow: []string{"*.Customers.example.net", "exact.example.org"}})
	for name, want := range map[string]bool{
		"a.customers.example.net":   true,
		"a.b.customers.example.net": true, // any depth below
		"customers.example.net":     false,
		"xcustomers.example.net":    false,
		"exact.example.org":         true,
		"sub.exact.example.org":     false,
		"evil.example.com":          false,
		"":                          false,
	} {
		err := od.decide(context.Background(), name, "192.0.2.1")
		if got := err == nil; got != want {
			t.Errorf("decide(%q) = %v, want allowed=%v", name, err, want)
		}
		if err != nil && !errors.Is(err, ErrNotAllowed) {
			t.Errorf("decide(%q): %v does not wrap ErrNotAllowed", name, err)
		}
	}
}

// The ask URL is asked once per name within ask_cache, for allowed and
// refused names alike; a failing ask service is not cached.
func TestOnDemandAskCache(t *testing.T) {
	var calls atomic.Int32
	down := atomic.Bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if down.Load() {
			http.Error(w, "", http.StatusBadGateway)
			panic(http.ErrAbortHandler) // a dropped connection
		}
		if !strings.HasPrefix(r.URL.Query().Get("domain"), "ok") {
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	now := time.Unix(1e9, 0)
	od := newTestOnDemand(t, OnDemandConfig{Ask: srv.URL, AskCache: time.Minute, Now: func() time.Time { return now }})
	ctx := context.Background()
	for range 3 {
		if err := od.decide(ctx, "ok.example.com", "192.0.2.1"); err != nil {
			t.Fatal(err)
		}
		if err := od.decide(ctx, "no.example.com", "192.0.2.1"); err == nil {
			t.Fatal("refused name allowed")
		}
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d asks for 2 names within ask_cache, want 2", n)
	}
	now = now.Add(2 * time.Minute) // expired: asked again
	down.Store(true)
	if err := od.decide(ctx, "ok.example.com", "192.0.2.1"); err == nil || !strings.Contains(err.Error(), "failed") {
		t.Errorf("ask service down: %v, want a refusal saying the ask failed", err)
	}
	down.Store(false)
	if err := od.decide(ctx, "ok.example.com", "192.0.2.1"); err != nil {
		t.Errorf("after the ask service recovered: %v (a failure must not be cached)", err)
	}
}

// A flood of distinct names or client addresses cannot grow the tables
// without bound.
func TestOnDemandTablesBounded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotFound) }))
	defer srv.Close()
	od := newTestOnDemand(t, OnDemandConfig{Ask: srv.URL, AskCache: time.Hour, RatePerIP: RateLimit{N: 1, Per: time.Hour}})
	now := time.Now()
	for i := range maxAskCache + 100 {
		od.remember(fmt.Sprintf("n%d.example.com", i), askAnswer{until: now.Add(time.Hour)}, now)
	}
	if n := len(od.asked); n > maxAskCache {
		t.Errorf("ask cache holds %d answers, bound %d", n, maxAskCache)
	}
	for i := range maxIPLimiters + 100 {
		od.allowOrder("x.example.com", fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)) //nolint:errcheck // only the table size matters
	}
	if n := len(od.perIP); n > maxIPLimiters {
		t.Errorf("per-IP table holds %d limiters, bound %d", n, maxIPLimiters)
	}
}

func TestOnDemandRates(t *testing.T) {
	od := newTestOnDemand(t, OnDemandConfig{Allow: []string{"*.example.com"}, Rate: RateLimit{N: 3, Per: time.Hour}, RatePerIP: RateLimit{N: 2, Per: time.Hour}})
	var got []bool
	for _, ip := range []string{"192.0.2.1", "192.0.2.1", "192.0.2.1", "192.0.2.2", "192.0.2.3"} {
		got = append(got, od.allowOrder("a.example.com", ip) == nil)
	}
	// Per IP: 2 for .1 (the third refused); globally 3 in all, so .3 is
	// refused although it has its own budget.
	want := []bool{true, true, false, true, false}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("orders allowed %v, want %v", got, want)
	}
}

// FuzzOnDemandDecide: names straight from SNI never panic the policy, and
// nothing outside the allowlist is ever allowed.
func FuzzOnDemandDecide(f *testing.F) {
	for _, s := range []string{"a.customers.example.net", "customers.example.net", "", ".", "*.customers.example.net", "a..customers.example.net", "\x00.customers.example.net"} {
		f.Add(s)
	}
	od, err := newOnDemand(OnDemandConfig{Allow: []string{"*.customers.example.net", "exact.example.org"}}, logrus.NewEntry(logrus.New()))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := od.decide(context.Background(), name, "192.0.2.1")
		if err == nil && name != "exact.example.org" && !(strings.HasSuffix(name, ".customers.example.net") && len(name) > len(".customers.example.net")) {
			t.Errorf("%q allowed", name)
		}
	})
}
