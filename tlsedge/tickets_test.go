package tlsedge

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/tlsedge/tlsedge/config"
)

// resumes does a full handshake then a second one with the same session
// cache, and reports whether the second resumed.
func resumes(t *testing.T, addr string, cache tls.ClientSessionCache, roots *tls.Config) bool {
	t.Helper()
	cfg := roots.Clone()
	cfg.ClientSessionCache = cache
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// TLS 1.3 tickets arrive after the handshake: read once so the client
	// processes them (the server answers nothing to an empty read).
	conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond)) //nolint:errcheck
	conn.Read(make([]byte, 1))                                   //nolint:errcheck
	did := conn.ConnectionState().DidResume
	conn.Close()
	return did
}

func TestSessionTicketsResumeAndRotate(t *testing.T) {
	b := startBackend(t, "b")
	g := startGateway(t, &config.Config{Apps: []config.App{{Hosts: []string{"shop.example.com"}, Backends: []config.Backend{{Addr: b.addr()}}}}})
	addr := g.srv.TLSAddr().String()
	base := &tls.Config{ServerName: "shop.example.com", RootCAs: g.roots}

	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		cfg := base.Clone()
		cfg.MaxVersion = version
		cache := tls.NewLRUClientSessionCache(8)
		if resumes(t, addr, cache, cfg) {
			t.Fatalf("version %x: the first handshake resumed", version)
		}
		if !resumes(t, addr, cache, cfg) {
			t.Errorf("version %x: the second handshake did not resume", version)
		}
	}

	// A ticket survives ticketKeysKept-1 rotations and dies at the next.
	cache := tls.NewLRUClientSessionCache(8)
	resumes(t, addr, cache, base)
	for i := 1; i < ticketKeysKept; i++ {
		if err := g.srv.tickets.rotate(); err != nil {
			t.Fatal(err)
		}
	}
	if !resumes(t, addr, cache, base) {
		t.Errorf("a ticket did not resume after %d rotations", ticketKeysKept-1)
	}
	cache = tls.NewLRUClientSessionCache(8)
	resumes(t, addr, cache, base) // ticket under the newest key
	for range ticketKeysKept {
		if err := g.srv.tickets.rotate(); err != nil {
			t.Fatal(err)
		}
	}
	if resumes(t, addr, cache, base) {
		t.Errorf("a ticket resumed after %d rotations; keys must be forgotten", ticketKeysKept)
	}
}

func TestTicketRotatorRunsOnTicks(t *testing.T) {
	cfg := &tls.Config{}
	r, err := newTicketRotator(cfg, time.Hour, logrus.NewEntry(logrus.New()))
	if err != nil {
		t.Fatal(err)
	}
	first := r.keys[0]
	tick := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx, tick); close(done) }()
	tick <- time.Now()
	tick <- time.Now() // the second send returns once the first rotation is done
	cancel()
	<-done
	if len(r.keys) != 3 || r.keys[2] != first || r.keys[0] == first {
		t.Errorf("after two ticks: %d keys, oldest is the first %v", len(r.keys), r.keys[len(r.keys)-1] == first)
	}
	if r.period != time.Hour {
		t.Errorf("period %v", r.period)
	}
	if d, _ := newTicketRotator(&tls.Config{}, 0, logrus.NewEntry(logrus.New())); d.period != 24*time.Hour {
		t.Errorf("default period %v, want 24h (rotated at least daily)", d.period)
	}
}
