package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/config"
)

// adminAddr is the address the instance's admin listener logged.
func (in *instance) adminAddr(t *testing.T) string {
	t.Helper()
	line := in.waitLine(t, 10*time.Second, "admin listening")
	_, rest, _ := strings.Cut(line, "address=\"")
	addr, _, _ := strings.Cut(rest, "\"")
	return addr
}

// tlsedge reload --dry-run and tlsedge check --diff say what a reload
// would change — apps, backends, and the sticky sessions pinned to the
// backends it would remove — and change nothing; tlsedge explain without
// a configuration asks the running instance, which knows live state.
func TestPlanAndRunningExplain(t *testing.T) {
	one, two, three := namedOrigin(t, "one"), namedOrigin(t, "two"), namedOrigin(t, "three")
	state, file, token, write := reloadFiles(t)
	running := fmt.Sprintf(`apps:
  - name: shop
    hosts: [localhost]
    backends: ["%s", "%s"]
    sticky: true
  - name: blog
    hosts: [blog.localhost]
    backends: ["%s"]
`, one, two, three)
	write(running)
	in := startInstance(t, "--listen", "127.0.0.1:0", "--http-listen", "off", "--state-dir", state,
		"--config", file, "--admin", "127.0.0.1:0", "--admin-token-file", token)
	admin := in.adminAddr(t)

	// Twenty users, each with a session and an address of its own (users
	// who begin their sessions in the same second share a cookie value;
	// their addresses tell them apart); those pinned to "two" are the
	// sessions a removal of "two" would move.
	pinnedToTwo := 0
	var twoUser *http.Client
	for i := range 20 {
		c := localhostClient(t, in, state)
		c.Jar, _ = cookiejar.New(nil)
		from := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(10+i))}
		c.Transport.(*http.Transport).DialContext = func(ctx context.Context, n, _ string) (net.Conn, error) {
			return (&net.Dialer{LocalAddr: from}).DialContext(ctx, n, in.addr)
		}
		var got string
		for range 2 { // the second request carries the cookie
			resp, err := c.Get("https://localhost/")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got = string(b)
		}
		if got == "two" {
			pinnedToTwo++
			twoUser = c
		}
	}
	if pinnedToTwo == 0 || twoUser == nil {
		t.Fatal("no session was pinned to backend two in 20")
	}

	idTwo, idThree := config.BackendID(two), config.BackendID(three)
	write(fmt.Sprintf(`apps:
  - name: shop
    hosts: [localhost]
    backends: ["%s", "%s"]
    sticky: true
    max_body: 1M
  - name: api
    hosts: [api.localhost]
    backends: ["%s"]
`, one, three, two))
	out, errOut, code := runCmd(t, "reload", "--dry-run", "--admin", admin, "--admin-token-file", token)
	if code != 0 {
		t.Fatalf("reload --dry-run: exit %d: %s", code, errOut)
	}
	t.Logf("%d of 20 sessions pinned to two; tlsedge reload --dry-run printed:\n%s", pinnedToTwo, out)
	for _, want := range []string{
		"app added: api", "app removed: blog", "app changed: shop (max_body)",
		"app shop: backend added: " + idThree,
		fmt.Sprintf("app shop: backend removed: %s (%s): %d sticky sessions pinned to it move to another backend", idTwo, two, pinnedToTwo),
		"nothing was applied",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("reload --dry-run lacks %q:\n%s", want, out)
		}
	}
	// Nothing was applied: the user pinned to two still gets two, and the
	// instance logged no reload.
	if resp, err := twoUser.Get("https://localhost/"); err != nil {
		t.Fatal(err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "two" {
			t.Errorf("after the dry run the pinned user got %q, want two", b)
		}
	}
	if strings.Contains(in.logs(), "configuration reloaded") {
		t.Error("the dry run reloaded the configuration")
	}

	// check --diff: the configuration given here against the running one.
	out, errOut, code = runCmd(t, "check", "--diff", "--config", file, "--state-dir", state,
		"--listen", "127.0.0.1:0", "--http-listen", "off", "--admin", admin, "--admin-token-file", token)
	if code != 0 || !strings.Contains(out, "app removed: blog") || !strings.Contains(out, "backend removed: "+idTwo) || strings.Contains(out, "effective configuration") {
		t.Errorf("check --diff: exit %d\n%s\n%s", code, out, errOut)
	}
	// The running configuration compared with itself: no changes.
	write(running)
	if out, errOut, code := runCmd(t, "reload", "--dry-run", "--admin", admin, "--admin-token-file", token); code != 0 || !strings.HasPrefix(out, "no changes") {
		t.Errorf("dry run of the running configuration: exit %d %q %q", code, out, errOut)
	}
	// A configuration a reload would refuse: exit 1 and why.
	write("apps:\n  - hosts: [localhost]\n    backends: []\n")
	if _, errOut, code := runCmd(t, "reload", "--dry-run", "--admin", admin, "--admin-token-file", token); code != 1 || !strings.Contains(errOut, "a reload would be refused") || !strings.Contains(errOut, "backend") {
		t.Errorf("dry run of a bad file: exit %d, %q", code, errOut)
	}
	if _, _, code := runCmd(t, "reload", "--dry-run", "--admin", admin); code != 2 {
		t.Errorf("dry run without a token file: exit %d, want 2", code)
	}

	// explain against the running instance sees live admin state: with
	// "one" in maintenance, a new session goes to "two".
	req, _ := http.NewRequest(http.MethodPost, "http://"+admin+"/api/backends/shop/"+config.BackendID(one)+"/state", strings.NewReader(`{"state":"maint"}`))
	req.Header.Set("Authorization", "Bearer t0ken")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("setting maint: %v %v", resp, err)
	}
	for range 3 {
		out, errOut, code = runCmd(t, "explain", "https://localhost/cart", "--admin", admin)
		if code != 0 || !strings.Contains(out, "the running instance at "+admin) || !strings.Contains(out, "app       shop") ||
			!strings.Contains(out, "backend   "+idTwo) {
			t.Fatalf("explain against the running instance: exit %d\n%s\n%s", code, out, errOut)
		}
	}
	if _, errOut, code := runCmd(t, "explain", "https://localhost/", "--admin", "off"); code != 2 || !strings.Contains(errOut, "admin listener is off") {
		t.Errorf("explain with neither a configuration nor an instance: exit %d %q", code, errOut)
	}
}
