package tlsedge

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tlsedge/tlsedge/admin"
	"github.com/tlsedge/tlsedge/config"
)

// The admin listener of a real gateway: its state names the apps and
// backends; a change without the token is refused with 401 and changes
// nothing; with it, a drained backend gets no new sessions while a
// sticky user keeps it, and maint takes it out for everyone.
func TestAdminAPI(t *testing.T) {
	b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	writeFile(t, tokenFile, []byte("s3cret\n"))
	a := app("shop.example.com", b1.addr(), b2.addr())
	a.Sticky = &config.Sticky{}
	g := startGateway(t, &config.Config{Admin: "127.0.0.1:0", AdminTokenFile: tokenFile, Apps: []config.App{a}})
	base := "http://" + g.srv.AdminAddr().String()
	do := func(method, path, token, body string) (int, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := do("GET", "/api/state", "", "")
	var st admin.State
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || len(st.Apps) != 1 || len(st.Apps[0].Backends) != 2 {
		t.Fatalf("state: %d %s", code, body)
	}
	id1 := st.Apps[0].Backends[0].ID
	if st.Apps[0].Backends[0].Addr != b1.addr() {
		id1 = st.Apps[0].Backends[1].ID
	}
	appName := st.Apps[0].Name

	// A sticky user pinned to b1.
	sticky := g.client(false)
	var cookie string
	for i := 0; i < 10 && cookie == ""; i++ {
		resp, body := get(t, g.client(true), "https://shop.example.com/", "")
		if strings.HasPrefix(body, "b1") {
			for _, c := range resp.Cookies() {
				cookie = c.Name + "=" + c.Value
			}
		}
	}
	if cookie == "" {
		t.Fatal("no session pinned to b1")
	}

	path := "/api/backends/" + appName + "/" + id1 + "/state"
	if code, _ := do("POST", path, "", `{"state":"drain"}`); code != 401 {
		t.Errorf("without the token: %d, want 401", code)
	}
	if code, _ := do("POST", path, "wrong", `{"state":"drain"}`); code != 401 {
		t.Errorf("with a wrong token: %d, want 401", code)
	}
	backendOf := func() admin.Backend {
		_, body := do("GET", "/api/state", "", "")
		var st admin.State
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
		for _, b := range st.Apps[0].Backends {
			if b.ID == id1 {
				return b
			}
		}
		t.Fatalf("backend %s not in the state", id1)
		return admin.Backend{}
	}
	if b := backendOf(); b.AdminState != "ready" {
		t.Errorf("a refused change changed something: %+v", b)
	}
	if code, body := do("POST", path, "s3cret", `{"state":"drain"}`); code != 200 {
		t.Fatalf("drain: %d %s", code, body)
	}
	for i := 0; i < 20; i++ {
		if _, body := get(t, g.client(true), "https://shop.example.com/new", ""); !strings.HasPrefix(body, "b2") {
			t.Fatalf("a new session went to the draining backend: %q", body)
		}
	}
	for i := 0; i < 5; i++ {
		if _, body := get(t, sticky, "https://shop.example.com/mine", cookie); !strings.HasPrefix(body, "b1") {
			t.Fatalf("the sticky user lost the draining backend: %q", body)
		}
	}
	if b := backendOf(); b.AdminState != "drain" || b.StickySessions != 1 || b.LastStickyAt.IsZero() {
		t.Errorf("state after drain (want drain and one sticky session): %+v", b)
	}
	if code, body := do("POST", path, "s3cret", `{"state":"maint"}`); code != 200 {
		t.Fatalf("maint: %d %s", code, body)
	}
	if _, body := get(t, sticky, "https://shop.example.com/mine", cookie); !strings.HasPrefix(body, "b2") {
		t.Errorf("maint: the sticky user still reached b1: %q", body)
	}
	if code, body := do("GET", "/", "", ""); code != 200 || !strings.Contains(body, b1.addr()) {
		t.Errorf("status page: %d", code)
	}
	if code, _ := do("POST", "/api/backends/"+appName+"/nope/state", "s3cret", `{"state":"drain"}`); code != 404 {
		t.Errorf("unknown backend: %d, want 404", code)
	}
}

// /metrics on the admin listener counts what clients did: answered
// requests by app, backend, method and class, refusals by reason,
// handshakes, and backend state at scrape time.
func TestMetricsEndpoint(t *testing.T) {
	b1 := startBackend(t, "b1")
	dead := freeAddr(t)
	a := app("shop.example.com", b1.addr(), dead)
	a.Methods = []string{"GET"}
	a.PassiveFails, a.MaxConns, a.Queue = 1, 10, 7
	g := startGateway(t, &config.Config{Admin: "127.0.0.1:0", Apps: []config.App{a}})
	c := g.client(false)
	for i := 0; i < 3; i++ {
		get(t, c, "https://shop.example.com/", "")
	}
	req, _ := http.NewRequest("DELETE", "https://shop.example.com/", nil)
	if resp, err := c.Do(req); err != nil || resp.StatusCode != 405 {
		t.Fatalf("DELETE: %v %v", resp, err)
	} else {
		io.Copy(io.Discard, resp.Body) //nolint:errcheck // read, so the connection stays open
		resp.Body.Close()
	}
	resp, err := http.Get("http://" + g.srv.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	id, deadID := g.cfg.Apps[0].Backends[0].ID, g.cfg.Apps[0].Backends[1].ID
	for _, want := range []string{
		`tlsedge_backend_ejections_total{app="shop.example.com",backend="` + deadID + `"} 1`,
		`tlsedge_backend_up{app="shop.example.com",backend="` + deadID + `"} 0`,
		`tlsedge_queue_capacity{app="shop.example.com"} 7`,
		`tlsedge_requests_total{app="shop.example.com",backend="` + id + `",method="GET",status_class="2xx"} 3`,
		`tlsedge_requests_refused_total{app="shop.example.com",reason="method"} 1`,
		`tlsedge_backend_up{app="shop.example.com",backend="` + id + `"} 1`,
		`tlsedge_tls_handshakes_total{version="1.3"}`,
		// Three requests one after the other: one connection to b1, kept alive.
		`tlsedge_backend_connections_total{app="shop.example.com",backend="` + id + `",kind="new"} 1`,
		`tlsedge_backend_connections_total{app="shop.example.com",backend="` + id + `",kind="reused"} 2`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// The client's one keep-alive connection is open (HTTP/1.1 or HTTP/2).
	if !strings.Contains(string(body), `tlsedge_connections_active{proto="h1"} 1`) && !strings.Contains(string(body), `tlsedge_connections_active{proto="h2"} 1`) {
		t.Error("/metrics does not count the open client connection")
	}
}
