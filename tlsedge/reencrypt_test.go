package tlsedge

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/config"
)

// Re-encryption configured per app: the backend's certificate is verified
// against backend_ca with the name backend_sni; the health checks speak
// TLS too.
func TestBackendTLSFromConfig(t *testing.T) {
	certPEM, keyPEM, _ := selfSigned(t, "api.internal", "api.internal")
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	var health atomic.Int32
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			health.Add(1)
			return
		}
		w.Write([]byte("over TLS " + r.TLS.ServerName))
	}))
	be.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	be.StartTLS()
	t.Cleanup(be.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, certPEM, 0o600) //nolint:errcheck // read back by the gateway

	app := config.App{Hosts: []string{"shop.example.com"}, Backends: []config.Backend{{Addr: be.Listener.Addr().String()}},
		BackendTLS: &config.BackendTLS{CA: caFile, ServerName: "api.internal"},
		Health:     &config.Health{Path: "/healthz", Interval: config.Duration(100 * time.Millisecond), Timeout: config.Duration(50 * time.Millisecond)}}
	g := startGateway(t, &config.Config{Apps: []config.App{app}})
	resp, body := get(t, g.client(true), "https://shop.example.com/", "")
	if resp.StatusCode != 200 || body != "over TLS api.internal" {
		t.Errorf("got %d %q", resp.StatusCode, body)
	}
	eventually(t, "an HTTPS health check", func() bool { return health.Load() > 0 })

	// Without the CA the backend's certificate is refused: 502 and a log
	// line with the reason.
	app2 := app
	app2.BackendTLS = &config.BackendTLS{ServerName: "api.internal"}
	app2.Health = nil
	g2 := startGateway(t, &config.Config{Apps: []config.App{app2}})
	resp, _ = get(t, g2.client(true), "https://shop.example.com/", "")
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("unverifiable backend: %d, want 502", resp.StatusCode)
	}
	waitLog(t, g2, time.Second, "up -> down", "certificate signed by unknown authority")

	// Insecure: served, with a warning at start-up.
	app3 := app2
	app3.BackendTLS = &config.BackendTLS{Insecure: true}
	g3 := startGateway(t, &config.Config{Apps: []config.App{app3}})
	if resp, _ := get(t, g3.client(true), "https://shop.example.com/", ""); resp.StatusCode != 200 {
		t.Errorf("insecure: %d", resp.StatusCode)
	}
	waitLog(t, g3, time.Second, "level=warning", "backend_insecure")
}
