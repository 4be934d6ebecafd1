package upstream

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// Fixtures of the resolver tests: a DNS server and backends on several
// loopback addresses (127.0.0.0/8 is all loopback on Linux).

// dnsServer is a real DNS server on 127.0.0.1 (UDP) whose answers the test
// sets and changes: A and AAAA records by name, SRV records by name, or
// one response code for every query (SERVFAIL). Unknown names are
// NXDOMAIN; a known name without records of the asked type is NODATA.
type dnsServer struct {
	addr    string
	srv     *dns.Server
	wg      sync.WaitGroup
	queries atomic.Int64

	mu    sync.Mutex
	hosts map[string][]net.IP   // fqdn -> addresses
	srvs  map[string][]*net.SRV // fqdn -> records
	rcode int                   // not 0: every answer has it
}

func newDNSServer(t *testing.T) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &dnsServer{addr: pc.LocalAddr().String(), hosts: map[string][]net.IP{}, srvs: map[string][]*net.SRV{}}
	started := make(chan struct{})
	d.srv = &dns.Server{PacketConn: pc, Handler: d, NotifyStartedFunc: func() { close(started) }}
	d.wg.Go(func() { _ = d.srv.ActivateAndServe() }) // ends at Shutdown
	<-started
	t.Cleanup(d.stop)
	return d
}

// stop shuts the server down: queries are refused from then on (ICMP port
// unreachable on loopback). It may be called more than once.
func (d *dnsServer) stop() {
	_ = d.srv.Shutdown()
	d.wg.Wait()
}

// resolver returns a Go resolver that asks d whatever resolv.conf says.
func (d *dnsServer) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, "udp", d.addr)
	}}
}

// setHost makes name resolve to ips (none: NODATA).
func (d *dnsServer) setHost(name string, ips ...string) {
	var parsed []net.IP
	for _, s := range ips {
		parsed = append(parsed, net.ParseIP(s))
	}
	d.mu.Lock()
	d.hosts[dns.Fqdn(strings.ToLower(name))] = parsed
	d.mu.Unlock()
}

// setSRV replaces the SRV records of name.
func (d *dnsServer) setSRV(name string, recs ...*net.SRV) {
	d.mu.Lock()
	d.srvs[dns.Fqdn(strings.ToLower(name))] = recs
	d.mu.Unlock()
}

// removeHost makes name unknown (NXDOMAIN) unless it has SRV records.
func (d *dnsServer) removeHost(name string) {
	d.mu.Lock()
	delete(d.hosts, dns.Fqdn(strings.ToLower(name)))
	d.mu.Unlock()
}

// setRcode makes every answer carry rcode; dns.RcodeSuccess answers again.
func (d *dnsServer) setRcode(rcode int) {
	d.mu.Lock()
	d.rcode = rcode
	d.mu.Unlock()
}

// ServeDNS answers one query.
func (d *dnsServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	d.queries.Add(1)
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case len(req.Question) != 1:
		m.Rcode = dns.RcodeFormatError
	case d.rcode != dns.RcodeSuccess:
		m.Rcode = d.rcode
	}
	if m.Rcode != dns.RcodeSuccess {
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	ips, isHost := d.hosts[name]
	recs, isSRV := d.srvs[name]
	hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: 1}
	switch q.Qtype {
	case dns.TypeA:
		for _, ip := range ips {
			if v4 := ip.To4(); v4 != nil {
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: v4})
			}
		}
	case dns.TypeAAAA:
		for _, ip := range ips {
			if ip.To4() == nil {
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: ip})
			}
		}
	case dns.TypeSRV:
		for _, r := range recs {
			m.Answer = append(m.Answer, &dns.SRV{Hdr: hdr, Priority: r.Priority, Weight: r.Weight, Port: r.Port, Target: dns.Fqdn(r.Target)})
		}
	}
	if !isHost && !isSRV {
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}

// newTestBackendsOnePort starts a test backend on each of ips, all on one
// port: the addresses of a name share the configured port.
func newTestBackendsOnePort(t *testing.T, ips ...string) (string, []*testBackend) {
	t.Helper()
	for range 20 {
		ls, port := listenOnePort(ips)
		if ls == nil {
			continue // the port was taken on another address; try another
		}
		tbs := make([]*testBackend, len(ips))
		for i, l := range ls {
			tbs[i] = startTestBackend(t, "app@"+ips[i], l)
		}
		return port, tbs
	}
	t.Fatal("no port free on every address")
	return "", nil
}

func listenOnePort(ips []string) ([]net.Listener, string) {
	l0, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
	if err != nil {
		return nil, ""
	}
	_, port, _ := net.SplitHostPort(l0.Addr().String())
	ls := []net.Listener{l0}
	for _, ip := range ips[1:] {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, port))
		if err != nil {
			for _, l := range ls {
				_ = l.Close()
			}
			return nil, ""
		}
		ls = append(ls, l)
	}
	return ls, port
}

// startTestBackend is newTestBackend on the listener l.
func startTestBackend(t *testing.T, id string, l net.Listener) *testBackend {
	tb := &testBackend{id: id}
	tb.start(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }, l)
	return tb
}
