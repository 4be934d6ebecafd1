package upstream

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

const appName = "app.tlsedge.test"

// newResolvedPool builds a pool that asks d.
func newResolvedPool(t *testing.T, d *dnsServer, pc PoolConfig) *Pool {
	t.Helper()
	pc.Resolver = d.resolver()
	p, err := NewPool(pc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// newTestResolver returns p's resolver, its passes driven by the test,
// logging into the returned hook.
func newTestResolver(p *Pool) (*resolver, *logtest.Hook) {
	logger, hook := logtest.NewNullLogger()
	return newResolver(p, logger.WithField("app", "test")), hook
}

func backendIDs(p *Pool) []string {
	var ids []string
	for _, b := range p.Backends() {
		ids = append(ids, b.ID())
	}
	return ids
}

// pickCounts counts n picks of p among the backends up at now.
func pickCounts(p *Pool, now time.Time, n int) map[string]int {
	got := map[string]int{}
	for range n {
		if b := p.PickAt(now, func(b *Backend) bool { return !b.Up(now) }); b != nil {
			got[b.ID()]++
		}
	}
	return got
}

func wantIDs(t *testing.T, p *Pool, want ...string) {
	t.Helper()
	if got := backendIDs(p); !slices.Equal(got, want) {
		t.Fatalf("backends %v, want %v", got, want)
	}
}

// TestResolveHostSwap: a name with two addresses is two backends; when
// the answer changes, the next pass swaps in the new set without a new
// pool, the address that stayed keeps its *Backend (ejection included)
// and its connection stack, the removed one's stack is closed, and the
// change is one log line.
func TestResolveHostSwap(t *testing.T) {
	d := newDNSServer(t)
	d.setHost(appName, "127.0.0.1", "127.0.0.2")
	p := newResolvedPool(t, d, PoolConfig{
		Backends: []BackendConfig{{ID: "app", Addr: appName + ":8080", Weight: 2}},
		Resolve:  time.Hour, // passes are driven by the test
	})
	wantIDs(t, p, "app@127.0.0.1", "app@127.0.0.2")
	if c := p.Config().Backends[1]; c.Addr != "127.0.0.2:8080" || c.Weight != 2 {
		t.Errorf("Config().Backends[1] = %+v", c)
	}

	now := time.Now()
	kept, gone := p.Backend("app@127.0.0.2"), p.Backend("app@127.0.0.1")
	kept.MarkFailed(now)
	keptStack, goneStack := p.stack(kept), p.stack(gone)

	r, hook := newTestResolver(p)
	d.setHost(appName, "127.0.0.4", "127.0.0.2", "127.0.0.3")
	r.pass(t.Context())

	wantIDs(t, p, "app@127.0.0.2", "app@127.0.0.3", "app@127.0.0.4")
	if p.Backend("app@127.0.0.2") != kept || kept.Up(now) {
		t.Error("the address that stayed lost its backend state")
	}
	if p.Backend("app@127.0.0.1") != nil || p.Contains(gone) {
		t.Error("the removed address is still a member")
	}
	if p.stack(kept) != keptStack {
		t.Error("the address that stayed got a new connection stack")
	}
	goneStack.mu.Lock()
	closed := goneStack.closed
	goneStack.mu.Unlock()
	if !closed || p.stack(gone) != goneStack {
		t.Errorf("removed address: stack closed %v, still found for a late request %v", closed, p.stack(gone) == goneStack)
	}
	if got := pickCounts(p, now, 100); got["app@127.0.0.3"] != 50 || got["app@127.0.0.4"] != 50 {
		t.Errorf("picks with .2 ejected: %v, want .3 and .4 evenly", got)
	}
	if len(hook.Entries) != 1 {
		t.Fatalf("%d log lines, want 1: %v", len(hook.Entries), hook.Entries)
	}
	e := hook.LastEntry()
	if e.Level != logrus.InfoLevel || e.Data["added"] != "127.0.0.3:8080,127.0.0.4:8080" || e.Data["removed"] != "127.0.0.1:8080" {
		t.Errorf("change line: %s %v", e.Message, e.Data)
	}

	// The same answer again: no swap, no line.
	st := p.state.Load()
	r.pass(t.Context())
	if p.state.Load() != st || len(hook.Entries) != 1 {
		t.Error("an unchanged answer swapped the membership or logged")
	}
}

// TestResolveSRV: SRV priorities become priority groups and weights the
// balancer's weights; a changed answer updates both.
func TestResolveSRV(t *testing.T) {
	const svc = "_http._tcp.svc.tlsedge.test"
	d := newDNSServer(t)
	d.setHost("a.tlsedge.test", "127.0.0.1")
	d.setHost("b.tlsedge.test", "127.0.0.2")
	d.setSRV(svc,
		&net.SRV{Target: "b.tlsedge.test", Port: 8002, Priority: 20, Weight: 1},
		&net.SRV{Target: "a.tlsedge.test", Port: 8001, Priority: 10, Weight: 3},
	)
	p := newResolvedPool(t, d, PoolConfig{
		Backends: []BackendConfig{{ID: "svc", Addr: svc, SRV: true}},
		Resolve:  time.Hour,
	})
	want := []BackendConfig{
		{ID: "svc@127.0.0.1:8001", Addr: "127.0.0.1:8001", Weight: 3, Priority: 10},
		{ID: "svc@127.0.0.2:8002", Addr: "127.0.0.2:8002", Weight: 1, Priority: 20},
	}
	if got := p.Config().Backends; !slices.Equal(got, want) {
		t.Fatalf("backends %+v, want %+v", got, want)
	}
	now := time.Now()
	a, b := p.Backend("svc@127.0.0.1:8001"), p.Backend("svc@127.0.0.2:8002")
	if got := pickCounts(p, now, 10); got[a.ID()] != 10 {
		t.Errorf("both up: %v, want the priority 10 target only", got)
	}
	a.SetChecked(false, now)
	if got := pickCounts(p, now, 10); got[b.ID()] != 10 {
		t.Errorf("priority 10 down: %v, want the priority 20 target", got)
	}
	a.SetChecked(true, now)

	r, hook := newTestResolver(p)
	d.setSRV(svc,
		&net.SRV{Target: "a.tlsedge.test", Port: 8001, Priority: 10, Weight: 3},
		&net.SRV{Target: "b.tlsedge.test", Port: 8002, Priority: 10, Weight: 1},
	)
	r.pass(t.Context())
	if n := len(p.state.Load().levels); n != 1 {
		t.Errorf("%d priority groups after both records moved to priority 10", n)
	}
	if got := pickCounts(p, now, 400); got[a.ID()] != 300 || got[b.ID()] != 100 {
		t.Errorf("one group, weights 3:1: %v", got)
	}
	if p.Backend(a.ID()) != a || p.Backend(b.ID()) != b {
		t.Error("a reweighted address got a new backend")
	}
	if len(hook.Entries) != 1 || hook.LastEntry().Data["changed"] != "127.0.0.2:8002 weight 1 priority 10" {
		t.Errorf("log: %v", hook.AllEntries())
	}
}

func TestSRVWeight(t *testing.T) {
	for _, tc := range []struct {
		w, maxW uint16
		want    int
	}{
		{0, 10, 1}, // RFC 2782's "very small chance"
		{3, 3, 3},
		{MaxWeight, MaxWeight, MaxWeight},
		{1000, 1000, MaxWeight}, // scaled, not clamped:
		{500, 1000, MaxWeight / 2},
		{1, 65535, 1},
		{65535, 65535, MaxWeight},
	} {
		if got := srvWeight(tc.w, tc.maxW); got != tc.want {
			t.Errorf("srvWeight(%d, max %d) = %d, want %d", tc.w, tc.maxW, got, tc.want)
		}
	}
}

// TestResolveSRVOnce: without Resolve, SRV is looked up once and its
// targets are dialled by name; no resolver runs.
func TestResolveSRVOnce(t *testing.T) {
	d := newDNSServer(t)
	d.setSRV("_http._tcp.svc.tlsedge.test", &net.SRV{Target: "a.tlsedge.test", Port: 8001, Weight: 5})
	p := newResolvedPool(t, d, PoolConfig{Backends: []BackendConfig{{ID: "svc", Addr: "_http._tcp.svc.tlsedge.test", SRV: true}}})
	want := []BackendConfig{{ID: "svc@a.tlsedge.test:8001", Addr: "a.tlsedge.test:8001", Weight: 5}}
	if got := p.Config().Backends; !slices.Equal(got, want) {
		t.Fatalf("backends %+v, want %+v", got, want)
	}
	p.StartResolver(t.Context(), nil)()
	if p.resolving != nil {
		t.Error("a resolver runs without Resolve")
	}
}

// TestResolveFailureKeepsAddresses: whatever way a lookup fails, the name
// keeps its addresses; the failure is logged once per streak and the
// recovery once.
func TestResolveFailureKeepsAddresses(t *testing.T) {
	for _, tc := range []struct {
		name        string
		break_, fix func(d *dnsServer)
	}{
		{"SERVFAIL",
			func(d *dnsServer) { d.setRcode(dns.RcodeServerFailure) },
			func(d *dnsServer) { d.setRcode(dns.RcodeSuccess) }},
		{"NXDOMAIN",
			func(d *dnsServer) { d.removeHost(appName) },
			func(d *dnsServer) { d.setHost(appName, "127.0.0.1", "127.0.0.2") }},
		{"no addresses",
			func(d *dnsServer) { d.setHost(appName) },
			func(d *dnsServer) { d.setHost(appName, "127.0.0.1", "127.0.0.2") }},
		{"server stopped", (*dnsServer).stop, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDNSServer(t)
			d.setHost(appName, "127.0.0.1", "127.0.0.2")
			p := newResolvedPool(t, d, PoolConfig{Backends: []BackendConfig{{ID: "app", Addr: appName + ":8080"}}, Resolve: time.Hour})
			st := p.state.Load()
			r, hook := newTestResolver(p)
			tc.break_(d)
			r.pass(t.Context())
			r.pass(t.Context())
			if p.state.Load() != st {
				t.Fatalf("a failed lookup changed the membership: %v", backendIDs(p))
			}
			if len(hook.Entries) != 1 || hook.LastEntry().Level != logrus.WarnLevel || hook.LastEntry().Data["kept"] != 2 {
				t.Fatalf("after two failed passes: %v, want one warning", hook.AllEntries())
			}
			if tc.fix == nil {
				return
			}
			tc.fix(d)
			r.pass(t.Context())
			r.pass(t.Context())
			if p.state.Load() != st {
				t.Errorf("the same answer after recovery changed the membership: %v", backendIDs(p))
			}
			if len(hook.Entries) != 2 || !strings.Contains(hook.LastEntry().Message, "resolves again") {
				t.Errorf("after recovery: %v, want one line", hook.AllEntries())
			}
		})
	}
}

// TestResolveAtStartFails: a host name that does not resolve in NewPool
// is dialled by name until it does; an SRV name fails NewPool.
func TestResolveAtStartFails(t *testing.T) {
	d := newDNSServer(t)
	d.setRcode(dns.RcodeServerFailure)
	p := newResolvedPool(t, d, PoolConfig{Backends: []BackendConfig{{ID: "app", Addr: appName + ":8080"}}, Resolve: time.Hour})
	wantIDs(t, p, "app")
	if a := p.Backend("app").Addr(); a != appName+":8080" {
		t.Errorf("unresolved backend dials %s", a)
	}
	_, err := NewPool(PoolConfig{
		Backends: []BackendConfig{{Addr: "_http._tcp.svc.tlsedge.test", SRV: true}},
		Resolve:  time.Hour, Resolver: d.resolver(),
	}, nil)
	if err == nil || !strings.Contains(err.Error(), "svc.tlsedge.test") {
		t.Errorf("SRV that does not resolve: err = %v", err)
	}

	r, hook := newTestResolver(p)
	r.pass(t.Context())
	d.setRcode(dns.RcodeSuccess)
	d.setHost(appName, "127.0.0.1")
	r.pass(t.Context())
	wantIDs(t, p, "app@127.0.0.1")
	var msgs []string
	for _, e := range hook.AllEntries() {
		msgs = append(msgs, e.Level.String()+": "+e.Message)
	}
	if len(msgs) != 3 || hook.LastEntry().Data["removed"] != appName+":8080" || hook.LastEntry().Data["added"] != "127.0.0.1:8080" {
		t.Errorf("log: %q %v", msgs, hook.LastEntry().Data)
	}
}

func TestResolveConfigValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  PoolConfig
		want string
	}{
		{"SRV with a port", PoolConfig{Backends: []BackendConfig{{Addr: "_http._tcp.x.test:80", SRV: true}}}, "without a port"},
		{"SRV at an IP", PoolConfig{Backends: []BackendConfig{{Addr: "10.0.0.1", SRV: true}}}, "IP address"},
		{"SRV with a weight", PoolConfig{Backends: []BackendConfig{{Addr: "_http._tcp.x.test", SRV: true, Weight: 2}}}, "leave Weight"},
		{"negative interval", PoolConfig{Backends: []BackendConfig{{Addr: "x.test:80"}}, Resolve: -time.Second}, "negative"},
		{"ID like an expanded one", PoolConfig{Resolve: time.Hour, Backends: []BackendConfig{
			{ID: "app", Addr: "x.test:80"}, {ID: "app@10.0.0.1", Addr: "10.0.0.1:80"},
		}}, "named app@address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewPool(tc.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	// IP literals are not looked up; without Resolve names are not either.
	for _, pc := range []PoolConfig{
		{Resolve: time.Hour, Backends: []BackendConfig{{Addr: "127.0.0.1:80"}, {Addr: "[::1]:80"}}},
		{Backends: []BackendConfig{{ID: "app", Addr: "x.test:80"}, {ID: "app@10.0.0.1", Addr: "10.0.0.1:80"}}},
	} {
		p, err := NewPool(pc, nil)
		if err != nil {
			t.Fatal(err)
		}
		if p.hasNames() || len(p.Backends()) != 2 {
			t.Errorf("%+v: names %v, backends %v", pc.Backends, p.hasNames(), backendIDs(p))
		}
		p.Close()
	}
}

// TestResolveTLSServerName: re-encryption to an address a name resolved
// to sends and verifies the name, not the IP.
func TestResolveTLSServerName(t *testing.T) {
	d := newDNSServer(t)
	d.setHost(appName, "127.0.0.1")
	d.setHost("a.tlsedge.test", "127.0.0.2")
	d.setSRV("_https._tcp.svc.tlsedge.test", &net.SRV{Target: "a.tlsedge.test", Port: 8443})
	p := newResolvedPool(t, d, PoolConfig{
		Backends: []BackendConfig{{ID: "app", Addr: appName + ":443"}, {ID: "svc", Addr: "_https._tcp.svc.tlsedge.test", SRV: true}},
		Resolve:  time.Hour,
		TLS:      &tls.Config{},
	})
	for id, want := range map[string]string{"app@127.0.0.1": appName, "svc@127.0.0.2:8443": "a.tlsedge.test"} {
		b := p.Backend(id)
		if b == nil {
			t.Fatalf("no backend %s: %v", id, backendIDs(p))
		}
		if got := p.stack(b).tls.ServerName; got != want {
			t.Errorf("%s: ServerName %q, want %q", id, got, want)
		}
	}
}

// TestResolveProxyAcrossSwaps: requests through a proxy, some of them
// sticky to an address that comes and goes, all succeed while the
// answer changes under them; connections to removed addresses are closed
// once their requests are done.
func TestResolveProxyAcrossSwaps(t *testing.T) {
	ips := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	port, tbs := newTestBackendsOnePort(t, ips...)
	d := newDNSServer(t)
	d.setHost(appName, ips[0], ips[1])
	p, _ := newTestProxy(t, PoolConfig{
		Backends: []BackendConfig{{ID: "app", Addr: net.JoinHostPort(appName, port)}},
		Resolve:  time.Hour, Resolver: d.resolver(),
	}, nil)
	front := newFront(t, p, func() *Backend { return p.pool.Backend("app@127.0.0.2") })

	var (
		stop     atomic.Bool
		ok, bad  atomic.Int64
		firstErr atomic.Value
		wg       sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			c := &http.Client{Transport: &http.Transport{}}
			defer c.CloseIdleConnections()
			for !stop.Load() {
				resp, err := c.Get(front.URL)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = &net.AddrError{Err: resp.Status, Addr: resp.Header.Get("X-Backend")}
					}
				}
				if err != nil {
					bad.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		})
	}
	r, hook := newTestResolver(p.pool)
	for _, set := range [][]string{{"127.0.0.2", "127.0.0.3"}, {"127.0.0.1", "127.0.0.3"}, {"127.0.0.3"}, ips, {"127.0.0.1"}} {
		d.setHost(appName, set...)
		r.pass(t.Context())
		wantIDs(t, p.pool, idsOf("app", set)...)
		time.Sleep(30 * time.Millisecond) // let requests run on this membership
	}
	stop.Store(true)
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d of %d requests failed across the swaps, first: %v", bad.Load(), bad.Load()+ok.Load(), firstErr.Load())
	}
	t.Logf("%d requests across 5 swaps", ok.Load())
	if len(hook.Entries) != 5 {
		t.Errorf("%d log lines for 5 changes", len(hook.Entries))
	}
	for _, tb := range tbs {
		if tb.requests.Load() == 0 {
			t.Errorf("backend %s served nothing", tb.id)
		}
	}
	for _, tb := range tbs[1:] {
		eventually(t, "connections to removed addresses closed", func() bool { return tb.closed.Load() == tb.conns.Load() })
	}
}

// idsOf returns the IDs of the backends id's name stands for at ips.
func idsOf(id string, ips []string) []string {
	var out []string
	for _, ip := range ips {
		out = append(out, id+"@"+ip)
	}
	slices.Sort(out)
	return out
}

// TestResolverLoop: StartResolver's loop follows the DNS on its own;
// stop ends it, a second start is the same run, and Close stops it too.
func TestResolverLoop(t *testing.T) {
	d := newDNSServer(t)
	d.setHost(appName, "127.0.0.1")
	p := newResolvedPool(t, d, PoolConfig{Backends: []BackendConfig{{ID: "app", Addr: appName + ":8080"}}, Resolve: 10 * time.Millisecond})
	logger, hook := logtest.NewNullLogger()

	stop := p.StartResolver(t.Context(), logger.WithField("app", "test"))
	run := p.resolving
	p.StartResolver(t.Context(), nil)
	if p.resolving != run {
		t.Fatal("a second StartResolver started another resolver")
	}
	d.setHost(appName, "127.0.0.2")
	eventually(t, "the new address", func() bool { return p.Backend("app@127.0.0.2") != nil })
	stop()
	if p.resolving != nil {
		t.Error("stop left the resolver registered")
	}
	if n := len(hook.AllEntries()); n != 1 {
		t.Errorf("%d log lines for one change", n)
	}

	p.StartResolver(t.Context(), nil)
	run = p.resolving
	d.setHost(appName, "127.0.0.3")
	eventually(t, "the next address", func() bool { return p.Backend("app@127.0.0.3") != nil })
	p.Close()
	select {
	case <-run.done:
	default:
		t.Fatal("Close returned with the resolver running")
	}
	for _, s := range p.state.Load().stacks {
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if !closed {
			t.Error("Close left a stack open")
		}
	}
	p.StartResolver(t.Context(), nil)()
	if p.resolving != nil {
		t.Error("a closed pool started a resolver")
	}
}

// Active health checks follow the membership: an address DNS adds is
// checked (and taken out when it fails), one DNS removes is no longer.
func TestHealthFollowsResolvedMembers(t *testing.T) {
	d := newDNSServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	d.setHost(appName, "127.0.0.1")
	p := newResolvedPool(t, d, PoolConfig{Backends: []BackendConfig{{ID: "app", Addr: appName + ":" + port}}, Resolve: time.Hour})
	hc, err := StartHealth(t.Context(), p, HealthConfig{TCP: true, Interval: 20 * time.Millisecond, Timeout: 10 * time.Millisecond, Rise: 1, Fall: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Stop()
	// 127.0.0.2 has nothing listening on the port: once it is a member,
	// its checks must take it down.
	r, _ := newTestResolver(p)
	d.setHost(appName, "127.0.0.1", "127.0.0.2")
	r.pass(t.Context())
	added := p.Backend("app@127.0.0.2")
	if added == nil {
		t.Fatal("127.0.0.2 not added")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !added.CheckedDown() {
		if time.Now().After(deadline) {
			t.Fatal("the added address was never checked")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if p.Backend("app@127.0.0.1").CheckedDown() {
		t.Error("the listening address was taken down")
	}
}
