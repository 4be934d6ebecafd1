package tlsedge

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/session"
)

const stickyURL = "https://shop.example.com/page"

// stickyApp is a sticky app over the given backends, signed with keyFile.
func stickyConfig(keyFile string, bs ...*backend) *config.Config {
	app := config.App{Name: "shop", Hosts: []string{"shop.example.com"}, Sticky: &config.Sticky{}}
	for _, b := range bs {
		app.Backends = append(app.Backends, config.Backend{Addr: b.addr(), ID: b.name})
	}
	return &config.Config{StickyKeyFile: keyFile, Apps: []config.App{app}}
}

func writeKeys(t *testing.T, path string, keys ...session.Key) {
	t.Helper()
	var lines []string
	for _, k := range keys {
		lines = append(lines, session.KeyLine(k))
	}
	writeFile(t, path, []byte(strings.Join(lines, "\n")+"\n"))
}

// stickyCookie returns the "name=value" of the sticky cookie a response
// sets, checking its attributes, or "" when it sets none.
func stickyCookie(t *testing.T, resp *http.Response) string {
	t.Helper()
	for _, sc := range resp.Header.Values("Set-Cookie") {
		if !strings.HasPrefix(sc, config.DefaultStickyName+"=") {
			continue
		}
		for _, attr := range []string{"Path=/", "Secure", "HttpOnly", "SameSite=Lax"} {
			if !strings.Contains(sc, "; "+attr) {
				t.Errorf("Set-Cookie %q lacks %s", sc, attr)
			}
		}
		nv, _, _ := strings.Cut(sc, ";")
		return nv
	}
	return ""
}

func threeBackends(t *testing.T) []*backend {
	return []*backend{startBackend(t, "web1"), startBackend(t, "web2"), startBackend(t, "web3")}
}

func TestStickyPinsFiftyFreshConnections(t *testing.T) {
	bs := threeBackends(t)
	g := startGateway(t, stickyConfig(filepath.Join(t.TempDir(), "keys"), bs...))
	c := g.client(true) // a new TCP+TLS connection per request
	resp, _ := get(t, c, stickyURL, "")
	cookie := stickyCookie(t, resp)
	first := resp.Header.Get("X-Backend")
	if cookie == "" || first == "" {
		t.Fatalf("first response: cookie %q, backend %q", cookie, first)
	}
	if strings.Contains(cookie, first) || strings.Contains(cookie, "127.0.0.1") {
		t.Errorf("cookie %q shows the backend's id or address; it is encrypted by default", cookie)
	}
	for i := range 50 {
		resp, _ := get(t, c, stickyURL, cookie)
		if got := resp.Header.Get("X-Backend"); got != first {
			t.Fatalf("request %d with the cookie went to %s, want %s", i, got, first)
		}
		if sc := stickyCookie(t, resp); sc != "" {
			t.Errorf("request %d: a valid cookie was re-issued (%q)", i, sc)
		}
	}
	for _, b := range bs {
		want := 0
		if b.name == first {
			want = 51
		}
		if b.count() != want {
			t.Errorf("backend %s got %d requests, want %d", b.name, b.count(), want)
		}
	}
	if !strings.Contains(g.access.String(), "sticky=hit") {
		// The access log is flushed at least every second.
		eventually(t, "a sticky=hit access-log line", func() bool { return strings.Contains(g.access.String(), "sticky=hit") })
	}
}

func TestStickyNewClientsSpreadOverAllBackends(t *testing.T) {
	bs := threeBackends(t)
	g := startGateway(t, stickyConfig(filepath.Join(t.TempDir(), "keys"), bs...))
	c := g.client(true)
	seen := map[string]int{}
	for range 30 {
		resp, _ := get(t, c, stickyURL, "")
		if stickyCookie(t, resp) == "" {
			t.Fatal("a client without a cookie got none")
		}
		seen[resp.Header.Get("X-Backend")]++
	}
	for _, b := range bs {
		if seen[b.name] != 10 {
			t.Errorf("30 new clients over 3 equal backends: %v, want 10 each", seen)
			break
		}
	}
}

func TestStickyBadCookiesAreReplaced(t *testing.T) {
	bs := threeBackends(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "keys")
	writeKeys(t, keyFile, session.GenerateKey())
	g := startGateway(t, stickyConfig(keyFile, bs...))
	c := g.client(true)
	resp, _ := get(t, c, stickyURL, "")
	good := strings.TrimPrefix(stickyCookie(t, resp), config.DefaultStickyName+"=")

	keys, err := session.LoadKeyFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	own, err := session.New(session.Config{Name: config.DefaultStickyName, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	foreign, _ := session.New(session.Config{Name: config.DefaultStickyName, Keys: []session.Key{session.GenerateKey()}})
	unknownID, _ := own.Encode("no-such-backend", time.Now())
	foreignKey, _ := foreign.Encode("web1", time.Now())
	flipped := []byte(good)
	flipped[len(flipped)/2] ^= 1
	if flipped[len(flipped)/2] == '=' || flipped[len(flipped)/2] < '0' {
		flipped[len(flipped)/2] = 'A'
	}

	junk := map[string]string{
		"empty":           "",
		"word":            "garbage",
		"flipped byte":    string(flipped),
		"truncated":       good[:len(good)/2],
		"extended":        good + "AAAA",
		"foreign key":     foreignKey,
		"unknown backend": unknownID,
		"quoted":          `"` + good[:10] + `"`,
		"not base64":      "%%%$$$***",
		"very long":       strings.Repeat("A", 3000),
		"pipe separated":  "MTIz|MTIz|MTIz",
		"backend name":    "web1",
	}
	if len(junk) != 12 {
		t.Fatalf("%d junk cookies, want 12", len(junk))
	}
	for name, v := range junk {
		t.Run(name, func(t *testing.T) {
			resp, body := get(t, c, stickyURL, config.DefaultStickyName+"="+v+"; other=1")
			if resp.StatusCode != 200 || !strings.HasSuffix(body, "/page") {
				t.Fatalf("status %d body %q", resp.StatusCode, body)
			}
			fresh := stickyCookie(t, resp)
			if fresh == "" {
				t.Fatal("no fresh cookie set")
			}
			ticket, err := own.Decode(strings.TrimPrefix(fresh, config.DefaultStickyName+"="))
			if err != nil {
				t.Fatalf("the fresh cookie does not decode: %v", err)
			}
			if ticket.BackendID != resp.Header.Get("X-Backend") {
				t.Errorf("fresh cookie names %s, answer came from %s", ticket.BackendID, resp.Header.Get("X-Backend"))
			}
		})
	}
}

func TestStickyStoppedBackendIsRepinned(t *testing.T) {
	bs := threeBackends(t)
	g := startGateway(t, stickyConfig(filepath.Join(t.TempDir(), "keys"), bs...))
	c := g.client(true)
	resp, _ := get(t, c, stickyURL, "")
	cookie, pinned := stickyCookie(t, resp), resp.Header.Get("X-Backend")
	for _, b := range bs {
		if b.name == pinned {
			b.srv.Close() // connection refused from now on
		}
	}
	resp, _ = get(t, c, stickyURL, cookie)
	moved := resp.Header.Get("X-Backend")
	if resp.StatusCode != 200 || moved == pinned || moved == "" {
		t.Fatalf("after stopping %s: status %d from %q", pinned, resp.StatusCode, moved)
	}
	repinned := stickyCookie(t, resp)
	if repinned == "" || repinned == cookie {
		t.Fatalf("cookie not re-issued: %q", repinned)
	}
	for range 5 {
		resp, _ = get(t, c, stickyURL, repinned)
		if got := resp.Header.Get("X-Backend"); got != moved {
			t.Fatalf("re-pinned cookie went to %s, want %s", got, moved)
		}
	}
	eventually(t, "a sticky=repin access-log line", func() bool { return strings.Contains(g.access.String(), "sticky=repin") })
}

func TestStickyKeyRotationKeepsOldCookies(t *testing.T) {
	bs := threeBackends(t)
	keyFile := filepath.Join(t.TempDir(), "keys")
	oldKey, newKey := session.GenerateKey(), session.GenerateKey()
	writeKeys(t, keyFile, oldKey)
	g := startGateway(t, stickyConfig(keyFile, bs...))
	resp, _ := get(t, g.client(true), stickyURL, "")
	oldCookie, pinned := stickyCookie(t, resp), resp.Header.Get("X-Backend")
	g.stop()

	// Rotate: the new key signs, the old one still verifies.
	writeKeys(t, keyFile, newKey, oldKey)
	g2 := startGateway(t, stickyConfig(keyFile, bs...))
	c := g2.client(true)
	for range 10 {
		resp, _ := get(t, c, stickyURL, oldCookie)
		if got := resp.Header.Get("X-Backend"); got != pinned {
			t.Fatalf("old cookie after rotation went to %s, want %s", got, pinned)
		}
	}
	resp, _ = get(t, c, stickyURL, "")
	fresh := strings.TrimPrefix(stickyCookie(t, resp), config.DefaultStickyName+"=")
	onlyNew, _ := session.New(session.Config{Name: config.DefaultStickyName, Keys: []session.Key{newKey}})
	if _, err := onlyNew.Decode(fresh); err != nil {
		t.Errorf("a cookie issued after rotation is not signed by the new key: %v", err)
	}
	onlyOld, _ := session.New(session.Config{Name: config.DefaultStickyName, Keys: []session.Key{oldKey}})
	if _, err := onlyOld.Decode(fresh); err == nil {
		t.Error("a cookie issued after rotation still decodes with the old key alone")
	}
}

func TestStickyTwoInstancesAgree(t *testing.T) {
	bs := threeBackends(t)
	keyFile := filepath.Join(t.TempDir(), "shared.keys")
	writeKeys(t, keyFile, session.GenerateKey())
	g1 := startGateway(t, stickyConfig(keyFile, bs...))
	g2 := startGateway(t, stickyConfig(keyFile, bs...))
	c1, c2 := g1.client(true), g2.client(true)
	for range 6 { // several sessions, landing on different backends
		resp, _ := get(t, c1, stickyURL, "")
		cookie, pinned := stickyCookie(t, resp), resp.Header.Get("X-Backend")
		for i := range 5 {
			c := c2
			if i%2 == 1 {
				c = c1
			}
			resp, _ := get(t, c, stickyURL, cookie)
			if got := resp.Header.Get("X-Backend"); got != pinned {
				t.Fatalf("cookie pinned to %s by instance 1 went to %s", pinned, got)
			}
			if sc := stickyCookie(t, resp); sc != "" {
				t.Errorf("instance re-issued a valid cookie: %q", sc)
			}
		}
	}
}

func TestStickyCookieNotForwarded(t *testing.T) {
	b := startBackend(t, "web1")
	g := startGateway(t, stickyConfig(filepath.Join(t.TempDir(), "keys"), b))
	c := g.client(true)
	resp, _ := get(t, c, stickyURL, "")
	cookie := stickyCookie(t, resp)
	get(t, c, stickyURL, "a=1; "+cookie+"; b=2")
	b.mu.Lock()
	fwd := b.last.Header.Values("Cookie")
	b.mu.Unlock()
	if len(fwd) != 1 || fwd[0] != "a=1; b=2" {
		t.Errorf("backend got Cookie %q, want the other cookies only", fwd)
	}
}

func TestStickyKeyFileGeneratedOnce(t *testing.T) {
	b := startBackend(t, "web1")
	state := t.TempDir()
	cfg := stickyConfig("", b)
	cfg.StateDir = state
	g := startGateway(t, cfg)
	resp, _ := get(t, g.client(true), stickyURL, "")
	cookie := stickyCookie(t, resp)
	g.stop()
	st, err := os.Stat(filepath.Join(state, "sticky.keys"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v; want 0600", err, st.Mode())
	}
	// A restart reads the same key: the session survives.
	cfg2 := stickyConfig("", b)
	cfg2.StateDir = state
	g2 := startGateway(t, cfg2)
	resp, _ = get(t, g2.client(true), stickyURL, cookie)
	if sc := stickyCookie(t, resp); sc != "" {
		t.Errorf("after a restart the cookie was replaced (%q): the key was not kept", sc)
	}
}

// fakeClock is a settable clock for sticky lifetimes.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() time.Time       { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Add(d time.Duration)  { c.ns.Add(int64(d)) }
func newFakeClock(t time.Time) *fakeClock { c := &fakeClock{}; c.ns.Store(t.UnixNano()); return c }

func TestStickyLifetimesCheckedByTheGateway(t *testing.T) {
	bs := threeBackends(t)
	keyFile := filepath.Join(t.TempDir(), "keys")
	writeKeys(t, keyFile, session.GenerateKey())
	cfg := stickyConfig(keyFile, bs...)
	cfg.Apps[0].StickyMaxAge = config.Duration(time.Hour)
	cfg.Apps[0].StickyIdle = config.Duration(10 * time.Minute)
	clock := newFakeClock(time.Now())
	g := startGatewayWith(t, cfg, Options{Now: clock.Now})
	keys, _ := session.LoadKeyFile(keyFile)
	codec, _ := session.New(session.Config{Name: config.DefaultStickyName, Keys: keys, Now: clock.Now})
	decode := func(cookie string) session.Ticket {
		t.Helper()
		tk, err := codec.Decode(strings.TrimPrefix(cookie, config.DefaultStickyName+"="))
		if err != nil {
			t.Fatalf("cookie %q: %v", cookie, err)
		}
		return tk
	}
	c := g.client(true)
	start := clock.Now()
	resp, _ := get(t, c, stickyURL, "")
	cookie, pinned := stickyCookie(t, resp), resp.Header.Get("X-Backend")

	// Every 5 minutes (less than the 10-minute idle limit) the session
	// stays pinned, and the cookie is refreshed keeping its issue time.
	for i := 1; i <= 11; i++ {
		clock.Add(5 * time.Minute)
		resp, _ := get(t, c, stickyURL, cookie)
		if got := resp.Header.Get("X-Backend"); got != pinned {
			t.Fatalf("after %d min the session moved from %s to %s", 5*i, pinned, got)
		}
		if fresh := stickyCookie(t, resp); fresh != "" {
			if tk := decode(fresh); tk.Issued.Unix() != start.Unix() {
				t.Fatalf("refresh changed the issue time: %v, want %v", tk.Issued, start)
			}
			cookie = fresh
		}
	}
	// 60 minutes in: the next request passes the 1-hour max age, however
	// fresh the cookie: a new session starts.
	clock.Add(5 * time.Minute)
	resp, _ = get(t, c, stickyURL, cookie)
	fresh := stickyCookie(t, resp)
	if fresh == "" || !decode(fresh).Issued.After(start) {
		t.Fatalf("a cookie past sticky_max_age still pinned (Set-Cookie %q)", fresh)
	}
	// Idle: 11 minutes without a request ends the session.
	clock.Add(11 * time.Minute)
	resp, _ = get(t, c, stickyURL, fresh)
	again := stickyCookie(t, resp)
	if again == "" || decode(again).Issued.Unix() != clock.Now().Unix() {
		t.Fatalf("a cookie idle past sticky_idle still pinned (Set-Cookie %q)", again)
	}
	if !strings.Contains(resp.Header.Get("Set-Cookie"), "Max-Age=") {
		t.Errorf("with lifetimes the cookie should carry Max-Age: %q", resp.Header.Get("Set-Cookie"))
	}
}

func TestStickyKeepsBackendCookies(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", "app=1; Path=/")
		w.Header().Add("Set-Cookie", "lang=en; Path=/")
	}))
	defer origin.Close()
	g := startGateway(t, &config.Config{Apps: []config.App{{Hosts: []string{"shop.example.com"}, Sticky: &config.Sticky{},
		Backends: []config.Backend{{Addr: origin.Listener.Addr().String()}}}}})
	for range 2 { // the second new session shares the cached cookie
		resp, _ := get(t, g.client(true), stickyURL, "")
		got := resp.Header.Values("Set-Cookie")
		if len(got) != 3 || got[0] != "app=1; Path=/" || got[1] != "lang=en; Path=/" || stickyCookie(t, resp) == "" {
			t.Errorf("Set-Cookie %q: want the backend's two cookies and ours", got)
		}
	}
}
