package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SIGHUP reads the configuration file again: a good one moves new
// requests to it, a bad one is logged and the running one stays.
func TestSIGHUPReload(t *testing.T) {
	one, two := namedOrigin(t, "one"), namedOrigin(t, "two")
	state := t.TempDir()
	file := filepath.Join(state, "tlsedge.yaml")
	write := func(body string) {
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("apps:\n  - hosts: [localhost]\n    backends: [{addr: " + one + "}]\n")
	in := startInstance(t, "--listen", "127.0.0.1:0", "--http-listen", "off", "--state-dir", state, "--config", file)
	c := localhostClient(t, in, state)
	body := func() string {
		resp, err := c.Get("https://localhost/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := body(); got != "one" {
		t.Fatalf("before: %q", got)
	}
	write("apps:\n  - hosts: [localhost]\n    backends: [{addr: " + two + "}]\n")
	in.cmd.Process.Signal(syscall.SIGHUP) //nolint:errcheck
	in.waitLine(t, 10*time.Second, "configuration reloaded")
	if got := body(); got != "two" {
		t.Errorf("after SIGHUP: %q", got)
	}
	write("apps:\n  - hosts: [localhost]\n    backends: []\n")
	in.cmd.Process.Signal(syscall.SIGHUP) //nolint:errcheck
	line := in.waitLine(t, 10*time.Second, "reload refused")
	if !strings.Contains(line, "backend") {
		t.Errorf("the refusal does not say what is wrong: %s", line)
	}
	if got := body(); got != "two" {
		t.Errorf("after a bad config: %q", got)
	}
}

// tlsedge reload asks the running instance through its admin API: a good
// file is applied, a bad one refused with its error (exit 1), and the
// running configuration stays.
func TestReloadCommand(t *testing.T) {
	one, two := namedOrigin(t, "one"), namedOrigin(t, "two")
	state, file, token, write := reloadFiles(t)
	write("apps:\n  - hosts: [localhost]\n    backends: [{addr: " + one + "}]\n")
	in := startInstance(t, "--listen", "127.0.0.1:0", "--http-listen", "off", "--state-dir", state,
		"--config", file, "--admin", "127.0.0.1:0", "--admin-token-file", token)
	line := in.waitLine(t, 10*time.Second, "admin listening")
	_, rest, _ := strings.Cut(line, "address=\"")
	adminAddr, _, _ := strings.Cut(rest, "\"")
	write("apps:\n  - hosts: [localhost]\n    backends: [{addr: " + two + "}]\n")
	out, errOut, code := runCmd(t, "reload", "--admin", adminAddr, "--admin-token-file", token)
	if code != 0 || !strings.HasPrefix(out, "reloaded") {
		t.Fatalf("reload: exit %d, %q %q", code, out, errOut)
	}
	in.waitLine(t, 10*time.Second, "configuration reloaded")
	write("apps:\n  - hosts: [localhost]\n    backends: []\n")
	_, errOut, code = runCmd(t, "reload", "--admin", adminAddr, "--admin-token-file", token)
	if code != 1 || !strings.Contains(errOut, "backend") {
		t.Errorf("a bad file: exit %d, %q", code, errOut)
	}
	if _, _, code := runCmd(t, "reload", "--admin", adminAddr); code != 2 {
		t.Errorf("without a token file: exit %d, want 2", code)
	}
}

// namedOrigin is a backend answering its name, stopped when the test ends.
func namedOrigin(t *testing.T, name string) string {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// reloadFiles makes a state dir with a config file (written by write) and
// an admin token file holding "t0ken".
func reloadFiles(t *testing.T) (state, file, token string, write func(string)) {
	state = t.TempDir()
	file = filepath.Join(state, "tlsedge.yaml")
	token = filepath.Join(state, "token")
	if err := os.WriteFile(token, []byte("t0ken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	write = func(body string) {
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return state, file, token, write
}
