package tlsedge

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/internal/redistest"
	"github.com/tlsedge/tlsedge/internal/testpki"
	"github.com/tlsedge/tlsedge/upstream"
)

// trio is three gateways on one Redis, with one certificate and two
// backends, the way the cluster is set up.
type trio struct {
	redis *redistest.Server
	gws   []*gateway
	roots *tls.Config // trusts the certificate the three serve
	token string
}

func startTrio(t *testing.T, rotation time.Duration) *trio {
	t.Helper()
	return startTrioWith(t, rotation, nil)
}

// startTrioWith is startTrio with a change to each instance's
// configuration.
func startTrioWith(t *testing.T, rotation time.Duration, change func(*config.Config)) *trio {
	t.Helper()
	rs := redistest.Start(t)
	ca := testpki.NewCA(t, "cluster CA")
	dir := t.TempDir()
	certPEM, keyPEM := ca.Server(t, "shop.example.com").PEM(t)
	certFile, keyFile := testpki.WriteFile(t, dir, "shop.crt", certPEM), testpki.WriteFile(t, dir, "shop.key", keyPEM)
	tokenFile := testpki.WriteFile(t, dir, "token", []byte("cluster-token\n"))
	b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
	tr := &trio{redis: rs, roots: &tls.Config{RootCAs: ca.Pool(), ServerName: "shop.example.com"}, token: "cluster-token"}
	for i := range 3 {
		a := app("shop.example.com", b1.addr(), b2.addr())
		a.Sticky = &config.Sticky{}
		cfg := &config.Config{
			Storage: rs.URL(), Admin: "127.0.0.1:0", AdminTokenFile: tokenFile,
			Cluster: config.Cluster{InstanceID: fmt.Sprintf("i%d", i+1), Poll: config.Duration(100 * time.Millisecond),
				StickyKeyRotation: config.Duration(rotation), TicketKeyRotation: config.Duration(rotation), AdminSync: true},
			TLS:  config.TLS{Certs: []config.CertPair{{Cert: certFile, Key: keyFile}}},
			Apps: []config.App{a},
		}
		if change != nil {
			change(cfg)
		}
		tr.gws = append(tr.gws, startGateway(t, cfg))
	}
	tr.waitConverged(t)
	return tr
}

// waitConverged waits until the three hold the same ring keys.
func (tr *trio) waitConverged(t *testing.T) {
	t.Helper()
	eventually(t, "the three instances share their sticky and ticket keys", func() bool {
		s0, k0 := tr.gws[0].srv.cluster.sticky.Keys(), tr.gws[0].srv.cluster.tickets.Keys()
		for _, g := range tr.gws[1:] {
			s, k := g.srv.cluster.sticky.Keys(), g.srv.cluster.tickets.Keys()
			if !bytes.Equal(s[0], s0[0]) || !bytes.Equal(k[0], k0[0]) {
				return false
			}
		}
		return true
	})
}

// roundRobin returns a client whose requests go to the three instances in
// turn, with one cookie jar: a browser behind DNS round robin.
func (tr *trio) roundRobin(t *testing.T) *http.Client {
	var next atomic.Int64
	jar, _ := cookiejar.New(nil)
	tc := tr.roots.Clone()
	tc.NextProtos = []string{"http/1.1"}
	return &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   tc,
		DisableKeepAlives: true, // every request picks its instance
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			g := tr.gws[next.Add(1)%3]
			return (&net.Dialer{}).DialContext(ctx, network, g.srv.TLSAddr().String())
		},
	}}
}

func backendOf(t *testing.T, c *http.Client) (string, error) {
	resp, err := c.Get("https://shop.example.com/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body) //nolint:errcheck // the header says it all
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return resp.Header.Get("X-Backend"), nil
}

// The cluster: sticky requests spread over three instances reach
// one backend; a ticket from instance 1 resumes on instance 2; a drain on
// instance 1 takes effect on 2 and 3 within 2 s.
func TestClusterOfThree(t *testing.T) {
	tr := startTrio(t, time.Hour)
	c := tr.roundRobin(t)
	backends := map[string]int{}
	for range 50 {
		b, err := backendOf(t, c)
		if err != nil {
			t.Fatal(err)
		}
		backends[b]++
	}
	if len(backends) != 1 {
		t.Errorf("50 sticky requests over three instances reached %v, want one backend", backends)
	}
	t.Logf("50 sticky requests over 3 instances: %v", backends)

	// A session ticket issued by instance 1 resumes on instance 2.
	tc := tr.roots.Clone()
	tc.ClientSessionCache = tls.NewLRUClientSessionCache(8)
	tc.NextProtos = []string{"http/1.1"}
	handshake := func(g *gateway) tls.ConnectionState {
		conn, err := tls.Dial("tcp", g.srv.TLSAddr().String(), tc)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// TLS 1.3 tickets arrive after the handshake: read an answer.
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: shop.example.com\r\nConnection: close\r\n\r\n") //nolint:errcheck
		io.Copy(io.Discard, conn)                                                                     //nolint:errcheck
		return conn.ConnectionState()
	}
	if st := handshake(tr.gws[0]); st.DidResume {
		t.Fatal("the first handshake resumed")
	}
	if st := handshake(tr.gws[1]); !st.DidResume {
		t.Error("a ticket issued by instance 1 did not resume on instance 2")
	}

	// A drain on instance 1 takes effect on 2 and 3.
	id := tr.gws[0].cfg.Apps[0].Backends[1].ID
	req, _ := http.NewRequest("POST", "http://"+tr.gws[0].srv.AdminAddr().String()+"/api/backends/shop.example.com/"+id+"/state", strings.NewReader(`{"state":"drain"}`))
	req.Header.Set("Authorization", "Bearer "+tr.token)
	start := time.Now()
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("drain: %v %v", resp, err)
	}
	for _, g := range tr.gws[1:] {
		pool := g.srv.snap.Load().apps[0].pool
		for pool.Backend(id).AdminState() != upstream.Drain {
			if time.Since(start) > 2*time.Second {
				t.Fatalf("%s: the drain set on instance 1 did not arrive within 2s", g.cfg.Cluster.InstanceID)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Logf("drain on i1 in effect on i2 and i3 after %s", time.Since(start).Round(time.Millisecond))
	// Every status page shows the change version it applied.
	eventually(t, "every status page shows admin change 1 applied", func() bool {
		for _, g := range tr.gws {
			resp, err := http.Get("http://" + g.srv.AdminAddr().String() + "/")
			if err != nil {
				return false
			}
			page, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(page), `data-admin-version="1"`) || !strings.Contains(string(page), g.cfg.Cluster.InstanceID) {
				return false
			}
		}
		return true
	})
}

// Key rotations every 2 s during 20 s of load refuse no cookie; Redis
// stopped during the load fails no request; Redis back, rotation resumes.
func TestClusterRotationAndRedisOutage(t *testing.T) {
	tr := startTrio(t, 2*time.Second)
	const users = 6
	var requests, failed, moved atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range users {
		c := tr.roundRobin(t)
		wg.Go(func() {
			pinned := ""
			for {
				select {
				case <-stop:
					return
				default:
				}
				b, err := backendOf(t, c)
				requests.Add(1)
				switch {
				case err != nil:
					failed.Add(1)
					t.Logf("request failed: %v", err)
				case pinned == "":
					pinned = b
				case b != pinned:
					moved.Add(1)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	signers := map[string]bool{}
	watch := func(d time.Duration) {
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			signers[string(tr.gws[0].srv.cluster.sticky.Keys()[0])] = true
			time.Sleep(50 * time.Millisecond)
		}
	}
	watch(12 * time.Second)
	rotations := len(signers) - 1
	tr.redis.Stop()
	held := map[string]bool{}
	for _, k := range tr.gws[0].srv.cluster.sticky.Keys() {
		held[string(k)] = true
	}
	watch(5 * time.Second)
	during := len(signers) - 1 - rotations
	tr.redis.Restart()
	// Rotation resumes: the ring is published again and, a period later, a
	// key none of the instances held during the outage appears (it signs a
	// few seconds after that, once every instance holds it).
	resumed := time.Duration(0)
	back := time.Now()
	for resumed == 0 && time.Since(back) < 10*time.Second {
		for _, k := range tr.gws[0].srv.cluster.sticky.Keys() {
			if !held[string(k)] {
				resumed = time.Since(back)
			}
		}
		watch(50 * time.Millisecond)
	}
	watch(2 * time.Second) // load goes on across the new key's activation
	close(stop)
	wg.Wait()

	misses := 0
	for _, g := range tr.gws {
		misses += strings.Count(g.access.String(), "sticky=miss")
	}
	t.Logf("%d requests, %d failed, %d moved to another backend; %d sticky misses for %d users; %d key rotations before the outage, %d during; a new key %s after Redis came back",
		requests.Load(), failed.Load(), moved.Load(), misses, users, rotations, during, resumed.Round(time.Millisecond))
	if failed.Load() != 0 || moved.Load() != 0 {
		t.Errorf("%d failed and %d moved requests, want none", failed.Load(), moved.Load())
	}
	if misses != users {
		t.Errorf("%d sticky misses, want %d (each user's first request): a rotation refused cookies", misses, users)
	}
	if rotations < 3 {
		t.Errorf("%d rotations in 12s of 2s periods, want at least 3", rotations)
	}
	if during != 0 {
		t.Errorf("%d rotations while Redis was down", during)
	}
	if resumed == 0 {
		t.Error("rotation did not resume within 10s of Redis coming back")
	}
	for _, g := range tr.gws {
		if c := strings.Count(g.logs.String(), "redis unreachable"); c < 1 || c > 4 {
			t.Errorf("%s logged the outage %d times, want once per loop at most", g.cfg.Cluster.InstanceID, c)
		}
	}
}

// cluster.rate_limits: a client's requests to the other instances count
// against its allowance here. 10 requests a minute per client: after 3 on
// each of the three instances, each instance knows of 9 and lets at most 1
// more through (3 in all, approximate by design), not 7 each (21).
func TestClusterRateLimits(t *testing.T) {
	tr := startTrioWith(t, time.Hour, func(cfg *config.Config) {
		cfg.Cluster.RateLimits = true
		cfg.Apps[0].RateLimit, cfg.Apps[0].RateBurst = "10/1m", 10
	})
	c := tr.roundRobin(t)
	status := func() int {
		resp, err := c.Get("https://shop.example.com/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body) //nolint:errcheck
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 9 {
		if code := status(); code != http.StatusOK {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	time.Sleep(500 * time.Millisecond) // a few polls of 100ms: counts exchanged
	allowed := 0
	for range 9 {
		if status() == http.StatusOK {
			allowed++
		}
	}
	t.Logf("after 9 requests over 3 instances, %d of 9 more were allowed (at most 1 per instance; 21 without sharing)", allowed)
	if allowed > 3 {
		t.Errorf("%d of 9 allowed, want at most 3: the instances do not share the limit", allowed)
	}
}
