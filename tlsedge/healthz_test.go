package tlsedge

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/config"
)

func healthz(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// /healthz on the plain-HTTP port and the admin listener: 200 while the
// instance serves; at a stop with shutdown_delay, 503 at once while HTTPS
// requests are still served, and only then do the listeners close.
func TestHealthzAndShutdownDelay(t *testing.T) {
	b := startBackend(t, "b1")
	g := startGateway(t, &config.Config{Admin: "127.0.0.1:0", ShutdownDelay: config.Duration(1500 * time.Millisecond),
		Apps: []config.App{app("shop.example.com", b.addr())}})
	plain := "http://" + g.srv.HTTPAddr().String() + "/healthz"
	admin := "http://" + g.srv.AdminAddr().String() + "/healthz"
	eventually(t, "healthz says ok on both listeners", func() bool {
		c1, b1 := healthz(t, plain)
		c2, b2 := healthz(t, admin)
		return c1 == 200 && b1 == "ok\n" && c2 == 200 && b2 == "ok\n"
	})
	// Other plain-HTTP requests are still redirected.
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get("http://" + g.srv.HTTPAddr().String() + "/x")
	if err != nil || resp.StatusCode != http.StatusPermanentRedirect && resp.StatusCode != http.StatusMovedPermanently {
		t.Fatalf("plain HTTP /x: %v %v", resp, err)
	}
	resp.Body.Close()

	c := g.client(false)
	stopped := make(chan struct{})
	start := time.Now()
	go func() { g.stop(); close(stopped) }()
	eventually(t, "healthz says 503 once the stop begins", func() bool {
		code, body := healthz(t, plain)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "draining")
	})
	if code, _ := healthz(t, admin); code != http.StatusServiceUnavailable {
		t.Errorf("admin /healthz during the delay: %d, want 503", code)
	}
	// Still serving: the balancer has not taken the instance out yet.
	if _, body := get(t, c, "https://shop.example.com/during-delay", ""); !strings.Contains(body, "b1 /during-delay") {
		t.Errorf("a request during the delay got %q", body)
	}
	<-stopped
	if d := time.Since(start); d < 1500*time.Millisecond {
		t.Errorf("stopped after %s, before the 1.5s shutdown delay", d)
	}
}

// A name whose certificate is still being ordered makes /healthz say 503
// and name it (an ACME CA that does not answer: nothing is ever issued).
func TestHealthzWaitsForCertificates(t *testing.T) {
	b := startBackend(t, "b1")
	auto := app("auto.example.com", b.addr())
	auto.TLS = config.TLSAuto
	shop := app("shop.example.com", b.addr())
	shop.TLS = config.TLSInternal
	// certmagic's order goroutine may still write a lock file after the
	// gateway stops: a state dir of our own, removed when it is done.
	state, err := os.MkdirTemp("", "tlsedge-healthz-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 {
			if os.RemoveAll(state) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	cfg := &config.Config{Admin: "127.0.0.1:0", StateDir: state, Apps: []config.App{shop, auto}}
	cfg.TLS.ACME.Email = "ops@example.com"
	cfg.TLS.ACME.CA = "https://127.0.0.1:1/directory"
	g := startGateway(t, cfg)
	admin := "http://" + g.srv.AdminAddr().String() + "/healthz"
	eventually(t, "healthz names the name without a certificate", func() bool {
		code, body := healthz(t, admin)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "no certificate yet for auto.example.com") &&
			!strings.Contains(body, "shop.example.com")
	})
}
