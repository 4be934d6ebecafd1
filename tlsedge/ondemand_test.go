package tlsedge

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/internal/acmetest"
)

// onDemandConfig: one catch-all app, certificates on demand from ca.
func onDemandConfig(ca *acmetest.CA, backendAddr string, od config.OnDemand) *config.Config {
	cfg := acmeConfig(ca, backendAddr)
	cfg.Apps[0].Hosts = []string{config.AnyHost}
	od.Enabled = true
	cfg.TLS.OnDemand = od
	return cfg
}

func TestOnDemandAllowlist(t *testing.T) {
	ca := acmetest.Start(t, acmetest.Options{})
	be := startBackend(t, "b1")
	g := startGateway(t, onDemandConfig(ca, be.addr(), config.OnDemand{
		Allow:     []string{"*.customers.tlsedge.test"},
		RatePerIP: config.Rate{N: 2, Per: config.Duration(time.Hour)},
	}))
	roots := ca.Roots(t)

	// An allowed name gets its certificate on its first handshake.
	leaf, body, err := tlsGet(ca.TLSAddr(), "a.customers.tlsedge.test", roots)
	if err != nil {
		t.Fatalf("allowed name: %v", err)
	}
	if body != "b1 /hello" || !slices.Contains(leaf.DNSNames, "a.customers.tlsedge.test") {
		t.Errorf("allowed name: names %v, body %q", leaf.DNSNames, body)
	}

	// A refused name fails the handshake and is never ordered.
	if _, err := handshakeLeaf(ca.TLSAddr(), "evil.tlsedge.test", roots); err == nil {
		t.Error("a name outside the allowlist got a certificate")
	}
	waitLog(t, g, 5*time.Second, "TLS handshake failed", "evil.tlsedge.test", "not in the allowlist")

	// The per-IP rate (2 per hour) allows one more order, then refuses.
	if _, err := handshakeLeaf(ca.TLSAddr(), "b.customers.tlsedge.test", roots); err != nil {
		t.Fatalf("second allowed name: %v", err)
	}
	if _, err := handshakeLeaf(ca.TLSAddr(), "c.customers.tlsedge.test", roots); err == nil {
		t.Error("third order from one client within the hour was placed")
	}
	waitLog(t, g, 5*time.Second, "TLS handshake failed", "c.customers.tlsedge.test", "over its rate")

	// A name that has its certificate is served again without an order.
	if _, err := handshakeLeaf(ca.TLSAddr(), "a.customers.tlsedge.test", roots); err != nil {
		t.Errorf("repeat handshake: %v", err)
	}
	names := ca.OrderedNames()
	if ca.Orders() != 2 || slices.Contains(names, "evil.tlsedge.test") || slices.Contains(names, "c.customers.tlsedge.test") {
		t.Errorf("Pebble saw %d orders for %v; want 2 (a and b)", ca.Orders(), names)
	}
}

func TestOnDemandAsk(t *testing.T) {
	ca := acmetest.Start(t, acmetest.Options{})
	be := startBackend(t, "b1")
	var mu sync.Mutex
	var asked []string
	ask := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.RawQuery)
		mu.Unlock()
		if strings.HasPrefix(r.URL.Query().Get("domain"), "ok") {
			return // 200
		}
		http.Error(w, "no", http.StatusForbidden)
	}))
	t.Cleanup(ask.Close)
	g := startGateway(t, onDemandConfig(ca, be.addr(), config.OnDemand{
		Ask:  ask.URL + "/check",
		Rate: config.Rate{N: 1, Per: config.Duration(time.Hour)}, // global: one order
	}))
	roots := ca.Roots(t)

	if _, _, err := tlsGet(ca.TLSAddr(), "ok1.tlsedge.test", roots); err != nil {
		t.Fatalf("name the ask URL allows: %v", err)
	}
	for range 3 { // refused, and the refusal is cached: asked once
		if _, err := handshakeLeaf(ca.TLSAddr(), "no1.tlsedge.test", roots); err == nil {
			t.Fatal("a name the ask URL refuses got a certificate")
		}
	}
	waitLog(t, g, 5*time.Second, "no1.tlsedge.test", "refused by "+ask.URL)
	// The global rate (1 per hour) refuses a second allowed name.
	if _, err := handshakeLeaf(ca.TLSAddr(), "ok2.tlsedge.test", roots); err == nil {
		t.Error("second order within the global rate was placed")
	}
	waitLog(t, g, 5*time.Second, "TLS handshake failed", "ok2.tlsedge.test", "over the global rate")

	mu.Lock()
	defer mu.Unlock()
	want := []string{"domain=ok1.tlsedge.test&ip=127.0.0.1", "domain=no1.tlsedge.test&ip=127.0.0.1", "domain=ok2.tlsedge.test&ip=127.0.0.1"}
	if !slices.Equal(asked, want) {
		t.Errorf("ask URL saw %q, want %q", asked, want)
	}
	if names := ca.OrderedNames(); !slices.Equal(names, []string{"ok1.tlsedge.test"}) {
		t.Errorf("Pebble orders for %v, want only ok1", names)
	}
}
