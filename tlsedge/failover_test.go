package tlsedge

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/config"
)

// Backend pools with real backend processes that are killed (SIGKILL) and
// restarted, as the failover tests describe.

func procApp(host string, bs ...*procBackend) config.App {
	app := config.App{Hosts: []string{host}}
	for _, b := range bs {
		app.Backends = append(app.Backends, config.Backend{Addr: b.addr, ID: b.name})
	}
	return app
}

// result is one GET of the load loop.
type result struct {
	at      time.Duration // since the start
	status  int
	backend string
	err     error
}

// load sends one GET every interval for d (bounded), sequentially on one
// keep-alive client, and returns what each got.
func load(c *http.Client, url string, d, interval time.Duration, at func(time.Duration)) []result {
	var out []result
	start := time.Now()
	for next := time.Duration(0); next < d; next += interval {
		if wait := next - time.Since(start); wait > 0 {
			time.Sleep(wait)
		}
		at(time.Since(start))
		r := result{at: time.Since(start)}
		resp, err := c.Get(url)
		if err != nil {
			r.err = err
		} else {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			r.status, r.backend = resp.StatusCode, string(body)
		}
		out = append(out, r)
	}
	return out
}

// Failover: 20 s of 20 GET/s to three backends; b2 is killed at 6 s and
// restarted at 13 s. No GET fails; b2 answers nothing while dead and
// again within 10 s of its restart; tlsedge stops trying it quickly.
func TestFailoverKillAndRestart(t *testing.T) {
	t.Parallel() // 20 s of paced load; own processes and ports
	b1, b2, b3 := startProcBackend(t, "b1"), startProcBackend(t, "b2"), startProcBackend(t, "b3")
	app := procApp("shop.example.com", b1, b2, b3)
	app.Health = &config.Health{Path: "/healthz", Interval: config.Duration(500 * time.Millisecond), Timeout: config.Duration(200 * time.Millisecond), Rise: 2, Fall: 2}
	g := startGateway(t, &config.Config{Apps: []config.App{app}})
	var killedAt, restartedAt time.Duration
	g.started = time.Now()
	results := load(g.client(false), "https://shop.example.com/x", 20*time.Second, 50*time.Millisecond, func(now time.Duration) {
		switch {
		case killedAt == 0 && now >= 6*time.Second:
			b2.kill()
			killedAt = now
		case restartedAt == 0 && now >= 13*time.Second:
			b2.start()
			restartedAt = now
		}
	})
	var failed []string
	var firstBack time.Duration
	for _, r := range results {
		if r.err != nil || r.status != 200 {
			failed = append(failed, fmt.Sprintf("%v: %d %v", r.at, r.status, r.err))
		}
		if r.backend == "b2" && r.at > killedAt && r.at < restartedAt {
			t.Errorf("b2 answered at %v while dead (%v-%v)", r.at, killedAt, restartedAt)
		}
		if r.backend == "b2" && r.at > restartedAt && firstBack == 0 {
			firstBack = r.at
		}
	}
	t.Logf("%d GETs, killed at %v, restarted at %v, b2 back at %v", len(results), killedAt, restartedAt, firstBack)
	if len(failed) > 0 {
		t.Errorf("%d failed GETs: %v", len(failed), failed)
	}
	if firstBack == 0 || firstBack-restartedAt > 10*time.Second {
		t.Errorf("b2 back at %v, restarted at %v: want traffic within 10 s", firstBack, restartedAt)
	}
	// The kill cost retries (the GET in flight is replayed, refused
	// connects go to the next backend) only until b2 was taken out: no
	// retried request later than 5 s after the kill.
	eventually(t, "every GET in the access log", func() bool {
		return strings.Count(g.access.String(), "\n") >= len(results)
	})
	var lastRetry time.Time
	for _, line := range strings.Split(g.access.String(), "\n") {
		if strings.Contains(line, "attempts=") {
			at, err := time.Parse("2006-01-02T15:04:05.000Z", strings.Fields(line)[0])
			if err != nil {
				t.Fatal(err)
			}
			lastRetry = at
			t.Logf("retried: %s", line)
		}
	}
	if !lastRetry.IsZero() && lastRetry.Sub(g.started.Add(killedAt)) > 5*time.Second {
		t.Errorf("a request was still retried %v after the kill", lastRetry.Sub(g.started.Add(killedAt)))
	}
	waitLog(t, g, time.Second, "backend b2 up -> down")
	waitLog(t, g, time.Second, "backend b2 down -> up")
}

// A POST whose backend reads the body and dies without answering gets a
// 502, and the body reached exactly one backend, exactly once.
func TestPostToDyingBackend(t *testing.T) {
	b1, b2 := startProcBackend(t, "b1"), startProcBackend(t, "b2")
	g := startGateway(t, &config.Config{Apps: []config.App{procApp("shop.example.com", b1, b2)}})
	body := bytes.Repeat([]byte("x"), 256<<10)
	resp, err := g.client(true).Post("https://shop.example.com/die", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status %d, want 502", resp.StatusCode)
	}
	var posts []string
	for _, b := range []*procBackend{b1, b2} {
		for _, l := range b.requests() {
			posts = append(posts, b.name+": "+l)
		}
	}
	if len(posts) != 1 || !strings.HasSuffix(posts[0], fmt.Sprintf("POST /die %d", len(body))) {
		t.Errorf("backends received %q, want the 256 KiB body once", posts)
	}
}

// Priority activation: min_active=2 over 3 primaries and 2 backups.
// Stopping primaries one by one brings the backups in exactly when fewer
// than 2 primaries are up; restarting them releases the backups.
func TestPriorityActivationProcesses(t *testing.T) {
	var ps, bs []*procBackend
	for i := range 3 {
		ps = append(ps, startProcBackend(t, fmt.Sprintf("p%d", i+1)))
	}
	for i := range 2 {
		bs = append(bs, startProcBackend(t, fmt.Sprintf("k%d", i+1)))
	}
	app := procApp("shop.example.com", ps...)
	for _, b := range bs {
		app.Backends = append(app.Backends, config.Backend{Addr: b.addr, ID: b.name, Priority: 1})
	}
	app.MinActive = 2
	app.Health = &config.Health{Path: "/healthz", Interval: config.Duration(200 * time.Millisecond), Timeout: config.Duration(100 * time.Millisecond), Rise: 1, Fall: 1}
	g := startGateway(t, &config.Config{Apps: []config.App{app}})
	c := g.client(false)
	// served sends n GETs and counts the answering backends.
	served := func(n int) map[string]int {
		got := map[string]int{}
		for range n {
			_, body := get(t, c, "https://shop.example.com/", "")
			got[body]++
		}
		return got
	}
	backups := func(m map[string]int) int { return m["k1"] + m["k2"] }
	if got := served(30); backups(got) != 0 {
		t.Fatalf("3 primaries up: %v", got)
	}
	ps[0].kill()
	waitLog(t, g, 5*time.Second, "backend p1 up -> down")
	if got := served(30); backups(got) != 0 || got["p1"] != 0 {
		t.Errorf("2 primaries up (= min_active): %v, want p2 and p3 only", got)
	}
	ps[1].kill()
	waitLog(t, g, 5*time.Second, "backend p2 up -> down")
	if got := served(30); got["k1"] == 0 || got["k2"] == 0 || got["p3"] == 0 {
		t.Errorf("1 primary up: %v, want p3 with both backups", got)
	}
	ps[0].start()
	waitLog(t, g, 5*time.Second, "backend p1 down -> up")
	if got := served(30); backups(got) != 0 {
		t.Errorf("2 primaries up again: %v, want the backups released", got)
	}
}

// balance=hash on a header: every request of one user reaches one backend,
// without a cookie; different users spread.
func TestHashAffinityFromConfig(t *testing.T) {
	b1, b2, b3 := startBackend(t, "b1"), startBackend(t, "b2"), startBackend(t, "b3")
	app := config.App{Hosts: []string{"shop.example.com"}, Hash: "header:X-User",
		Backends: []config.Backend{{Addr: b1.addr()}, {Addr: b2.addr()}, {Addr: b3.addr()}}}
	g := startGateway(t, &config.Config{Apps: []config.App{app}})
	c := g.client(false)
	seen := map[string]bool{}
	for u := range 30 {
		user := fmt.Sprintf("user-%d", u)
		first := ""
		for range 5 {
			req, _ := http.NewRequest("GET", "https://shop.example.com/cart", nil)
			req.Header.Set("X-User", user)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			be := resp.Header.Get("X-Backend")
			if first == "" {
				first = be
			} else if be != first {
				t.Fatalf("%s went to %s, then %s", user, first, be)
			}
		}
		seen[first] = true
	}
	if len(seen) != 3 {
		t.Errorf("30 users reached %d backends, want all 3", len(seen))
	}
}

// resolve: a backend named by DNS (here localhost, from /etc/hosts)
// becomes one backend per address, named ID@IP.
func TestResolveBackendNames(t *testing.T) {
	b1 := startBackend(t, "b1")
	_, port, _ := strings.Cut(b1.addr(), ":")
	app := config.App{Hosts: []string{"shop.example.com"}, Resolve: config.Duration(100 * time.Millisecond),
		Backends: []config.Backend{{Addr: "localhost:" + port, ID: "web"}}}
	g := startGateway(t, &config.Config{Apps: []config.App{app}})
	for range 5 {
		if resp, body := get(t, g.client(true), "https://shop.example.com/x", ""); resp.StatusCode != 200 || body != "b1 /x" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
	}
	eventually(t, "an access-log line naming web@127.0.0.1", func() bool {
		return strings.Contains(g.access.String(), "backend=web@127.0.0.1")
	})
}
