package tlsedge

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/tlsedge/tlsedge/config"
)

// The default filters, end to end: the backend's Server and X-Powered-By
// do not reach the client, HSTS does, and the request id the backend saw
// is in the response and the access log.
func TestDefaultFilters(t *testing.T) {
	var seenID string
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seenID = r.Header.Get("X-Request-Id")
		w.Header().Set("Server", "Apache/2.4.41 (Ubuntu)")
		w.Header().Set("X-Powered-By", "PHP/7.4.3")
		if r.URL.Path == "/login" {
			http.Redirect(w, r, "http://"+r.Host+"/account", http.StatusFound) // a backend that uses its own Host
			return
		}
		w.Write([]byte("ok"))
	}))
	t.Cleanup(be.Close)
	g := startGateway(t, &config.Config{Apps: []config.App{{Hosts: []string{"shop.example.com"}, Backends: []config.Backend{{Addr: be.Listener.Addr().String()}}}}})
	resp, body := get(t, g.client(true), "https://shop.example.com/", "")
	if body != "ok" {
		t.Fatalf("body %q", body)
	}
	if v := resp.Header.Get("Server") + resp.Header.Get("X-Powered-By"); v != "" {
		t.Errorf("backend software leaked: %q", v)
	}
	if v := resp.Header.Get("Strict-Transport-Security"); v != "max-age=31536000" {
		t.Errorf("HSTS %q", v)
	}
	id := resp.Header.Get("X-Request-Id")
	if id == "" || id != seenID {
		t.Errorf("response id %q, backend saw %q", id, seenID)
	}
	eventually(t, "the id in the access log", func() bool { return strings.Contains(g.access.String(), " id="+id) })

	// A redirect the backend built from its own (plain-HTTP) view of the
	// host points at the public HTTPS URL.
	resp, _ = get(t, g.client(true), "https://shop.example.com/login", "")
	if loc := resp.Header.Get("Location"); loc != "https://shop.example.com/account" {
		t.Errorf("Location %q, want the public URL", loc)
	}

	// Off, everything passes as the backend sent it.
	app := config.App{Hosts: []string{"shop.example.com"}, Backends: []config.Backend{{Addr: be.Listener.Addr().String()}},
		HideHeaders: []string{}, HSTS: config.Off, RequestID: config.Off}
	g2 := startGateway(t, &config.Config{Apps: []config.App{app}})
	resp, _ = get(t, g2.client(true), "https://shop.example.com/", "")
	if resp.Header.Get("Server") == "" || resp.Header.Get("Strict-Transport-Security") != "" || resp.Header.Get("X-Request-Id") != "" {
		t.Errorf("filters off: %v", resp.Header)
	}
}

// TRACE never reaches a backend.
func TestTraceRefused(t *testing.T) {
	be := startBackend(t, "b1")
	g := startGateway(t, &config.Config{Apps: []config.App{{Hosts: []string{"shop.example.com"}, Backends: []config.Backend{{Addr: be.addr()}}}}})
	req, _ := http.NewRequest("TRACE", "https://shop.example.com/", nil)
	resp, err := g.client(true).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") == "" || be.count() != 0 {
		t.Errorf("TRACE: %d, Allow %q, backend hits %d", resp.StatusCode, resp.Header.Get("Allow"), be.count())
	}
	// The refusal is in the access log, once; a served request too.
	if resp, _ := get(t, g.client(false), "https://shop.example.com/ok", ""); resp.StatusCode != 200 {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
	eventually(t, "two access-log lines", func() bool { return strings.Count(g.access.String(), "\n") >= 2 })
	log := g.access.String()
	if strings.Count(log, "\n") != 2 || !strings.Contains(log, `"TRACE shop.example.com /" 405`) || !strings.Contains(log, `"GET shop.example.com /ok" 200`) {
		t.Errorf("access log:\n%s", log)
	}
}

// max_body: a declared body over the limit is refused before anything
// reaches the backend.
func TestMaxBodyFromConfig(t *testing.T) {
	be := startBackend(t, "b1")
	g := startGateway(t, &config.Config{Apps: []config.App{{Hosts: []string{"shop.example.com"}, Backends: []config.Backend{{Addr: be.addr()}}, MaxBody: "1M"}}})
	// With Expect: 100-continue, as clients send large uploads, the 413
	// comes before the body is sent at all.
	c := g.client(true)
	c.Transport.(*http.Transport).ExpectContinueTimeout = 10 * time.Second
	req, _ := http.NewRequest("POST", "https://shop.example.com/upload", strings.NewReader(strings.Repeat("x", 2<<20)))
	req.Header.Set("Expect", "100-continue")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || be.count() != 0 {
		t.Errorf("2 MiB over a 1M limit: %d, backend hits %d", resp.StatusCode, be.count())
	}
	resp, err = g.client(true).Post("https://shop.example.com/upload", "application/octet-stream", strings.NewReader(strings.Repeat("x", 1<<20)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || be.count() != 1 {
		t.Errorf("1 MiB: %d, backend hits %d", resp.StatusCode, be.count())
	}
}

// allow/deny on the real client address; a bad network is a configuration
// error naming the app.
func TestIPListsFromConfig(t *testing.T) {
	be := startBackend(t, "b1")
	app := func(allow, deny []string) *config.Config {
		return &config.Config{Apps: []config.App{{Hosts: []string{"shop.example.com"}, Backends: []config.Backend{{Addr: be.addr()}}, Allow: allow, Deny: deny}}}
	}
	g := startGateway(t, app([]string{"127.0.0.0/8"}, nil))
	if resp, _ := get(t, g.client(true), "https://shop.example.com/", ""); resp.StatusCode != 200 {
		t.Errorf("allowed loopback client: %d", resp.StatusCode)
	}
	g2 := startGateway(t, app(nil, []string{"127.0.0.1"}))
	if resp, _ := get(t, g2.client(true), "https://shop.example.com/", ""); resp.StatusCode != http.StatusForbidden {
		t.Errorf("denied client: %d", resp.StatusCode)
	}
	if be.count() != 1 {
		t.Errorf("backend hits %d, want 1 (the denied request never reached it)", be.count())
	}
	bad := app([]string{"10.0.0.0/33"}, nil)
	bad.Listen, bad.HTTPListen, bad.StateDir = "127.0.0.1:0", "127.0.0.1:0", t.TempDir()
	bad.Normalize(bad.StateDir)
	if _, err := New(bad, Options{Log: logrus.New()}); err == nil || !strings.Contains(err.Error(), "10.0.0.0/33") {
		t.Errorf("bad allow list: %v", err)
	}
}

// Requests refused before routing (the frontend's lists and rate) are in
// the access log, once; served ones once too.
func TestFrontendRefusalLogged(t *testing.T) {
	be := startBackend(t, "b1")
	g := startGateway(t, &config.Config{
		Frontend: config.Frontend{RateLimit: "2/1m"},
		Apps:     []config.App{{Hosts: []string{"shop.example.com"}, Backends: []config.Backend{{Addr: be.addr()}}}},
	})
	c := g.client(false)
	var codes []int
	for i := 0; i < 3; i++ {
		resp, _ := get(t, c, "https://shop.example.com/n", "")
		codes = append(codes, resp.StatusCode)
	}
	if fmt.Sprint(codes) != "[200 200 429]" {
		t.Fatalf("statuses %v, want [200 200 429]", codes)
	}
	eventually(t, "three access-log lines", func() bool { return strings.Count(g.access.String(), "\n") >= 3 })
	log := g.access.String()
	if strings.Count(log, "\n") != 3 || strings.Count(log, `"GET shop.example.com /n" 200`) != 2 || strings.Count(log, `"GET shop.example.com /n" 429`) != 1 {
		t.Errorf("access log:\n%s", log)
	}
}
