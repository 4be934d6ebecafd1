package tlsedge

import (
	"hash/maphash"
	"net/http"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/tlsedge/tlsedge/session"
)

func TestStripCookie(t *testing.T) {
	tests := []struct {
		in        []string
		value     string
		found     bool
		remaining []string
	}{
		{[]string{"s=abc"}, "abc", true, nil},
		{[]string{"a=1; s=abc; b=2"}, "abc", true, []string{"a=1; b=2"}},
		{[]string{"a=1", "s=\"q\""}, "q", true, []string{"a=1"}},
		{[]string{"as=1; s=2"}, "2", true, []string{"as=1"}},
		{[]string{"s=1; s=2"}, "1", true, nil},
		{[]string{"a=1; b=2"}, "", false, []string{"a=1; b=2"}},
		{nil, "", false, nil},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.in != nil {
			h["Cookie"] = append([]string(nil), tt.in...)
		}
		v, found := stripCookie(h, "s=")
		if v != tt.value || found != tt.found || strings.Join(h["Cookie"], "|") != strings.Join(tt.remaining, "|") {
			t.Errorf("stripCookie(%q) = %q, %v, left %q; want %q, %v, %q", tt.in, v, found, h["Cookie"], tt.value, tt.found, tt.remaining)
		}
	}
}

// FuzzStripCookie: whatever the Cookie header, no cookie named s survives
// and every other cookie does.
func FuzzStripCookie(f *testing.F) {
	f.Add("a=1; s=abc; b=2")
	f.Add("s=; s=x;;; ;s")
	f.Add("xs=1;s=2")
	f.Fuzz(func(t *testing.T, line string) {
		h := http.Header{"Cookie": {line}}
		stripCookie(h, "s=")
		for _, l := range h["Cookie"] {
			for p := range strings.SplitSeq(l, ";") {
				if strings.HasPrefix(strings.TrimSpace(p), "s=") {
					t.Fatalf("cookie s survived in %q (from %q)", l, line)
				}
			}
		}
		var before, after int
		for p := range strings.SplitSeq(line, ";") {
			if p = strings.TrimSpace(p); p != "" && !strings.HasPrefix(p, "s=") {
				before++
			}
		}
		for _, l := range h["Cookie"] {
			for p := range strings.SplitSeq(l, ";") {
				if strings.TrimSpace(p) != "" {
					after++
				}
			}
		}
		if strings.Contains(line, "s=") && before != after {
			t.Fatalf("other cookies lost: %d before, %d after (%q -> %q)", before, after, line, h["Cookie"])
		}
	})
}

func TestNewSessionCookieSharedWithinOneSecond(t *testing.T) {
	codec, err := session.New(session.Config{Name: "s", Keys: []session.Key{session.GenerateKey()}})
	if err != nil {
		t.Fatal(err)
	}
	s := newStickyCodec("s", codec, []string{"a", "b"})
	t0 := time.Now().Truncate(time.Second)
	one := func(id string, at time.Time) string {
		v, err := s.cur.Load().newSessionCookie(id, at)
		if err != nil || len(v) != 1 || cap(v) != 1 {
			t.Fatalf("newSessionCookie: %q, %v", v, err)
		}
		return v[0]
	}
	a1 := one("a", t0)
	a2 := one("a", t0.Add(800*time.Millisecond))
	b1 := one("b", t0)
	a3 := one("a", t0.Add(time.Second))
	if a1 != a2 {
		t.Error("two new sessions on one backend in one second were encoded twice")
	}
	if a1 == b1 || a1 == a3 {
		t.Error("a cookie was shared across backends or seconds")
	}
	for _, c := range []string{a1, b1, a3} {
		v, _, _ := strings.Cut(strings.TrimPrefix(c, "s="), ";")
		if _, err := codec.Decode(v); err != nil {
			t.Errorf("shared cookie does not decode: %v", err)
		}
	}
}

func BenchmarkStickyNewSession(b *testing.B) {
	codec, _ := session.New(session.Config{Name: "s", Keys: []session.Key{session.GenerateKey()}})
	s := newStickyCodec("s", codec, []string{"a"})
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		s.cur.Load().newSessionCookie("a", now) //nolint:errcheck
	}
}

func TestTicketCache(t *testing.T) {
	var c ticketCache
	c.seed = maphash.MakeSeed()
	head := "GET / HTTP/1.1\r\nCookie: s=VALUE123\r\n"
	v := head[len(head)-10 : len(head)-2]
	if _, ok := c.get(v); ok {
		t.Fatal("empty cache hit")
	}
	c.put(v, session.Ticket{BackendID: "a"})
	if tk, ok := c.get("VALUE123"); !ok || tk.BackendID != "a" {
		t.Fatalf("stored ticket not found: %v %v", tk, ok)
	}
	if _, ok := c.get("VALUE124"); ok {
		t.Fatal("a different value hit")
	}
	if e := c.slots[maphash.String(c.seed, v)%ticketCacheSlots].Load(); unsafe.StringData(e.value) == unsafe.StringData(v) {
		t.Error("the cache keeps the caller's string (and so the whole request head) alive")
	}
}

// An expired cookie stays refused even when its decoded ticket is cached.
func TestTicketCacheStillChecksLifetimes(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	codec, _ := session.New(session.Config{Name: "s", Keys: []session.Key{session.GenerateKey()}, Idle: time.Minute, Now: clock})
	s := newStickyCodec("s", codec, []string{"a"})
	v, _ := codec.Encode("a", now)
	if _, err := codec.Decode(v); err != nil {
		t.Fatal(err)
	}
	tk, err := codec.Decode(v)
	if err != nil {
		t.Fatal(err)
	}
	s.cur.Load().seen.put(v, tk)
	now = now.Add(2 * time.Minute)
	if got, ok := s.cur.Load().seen.get(v); !ok || codec.Alive(got) == nil {
		t.Fatal("a cached ticket past sticky_idle is still alive")
	}
}
