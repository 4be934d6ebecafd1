package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/internal/acmetest"
)

// binary is the tlsedge command built once for these tests: they run the
// real program, as a user would.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tlsedge-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "tlsedge")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if err := acmetest.Cleanup(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

// tlsedgeCmd runs the binary with args and a private state dir.
func tlsedgeCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	if !slices.Contains(args, "--admin") && len(args) > 0 && args[0] != "check" && args[0] != "demo" && args[0] != "trust" && args[0] != "certs" && args[0] != "version" {
		args = append(args, "--admin", "127.0.0.1:0") // tests run instances side by side
	}
	cmd := exec.Command(binary, args...)
	state := t.TempDir()
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+state, "HOME="+state)
	return cmd
}

func runCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := tlsedgeCmd(t, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func writeTemp(t *testing.T, name, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBadInputExitsTwo(t *testing.T) {
	badFile := writeTemp(t, "bad.yaml", "apps:\n  - hosts: [shop.example.com]\n    backends: [\"10.0.0.5:8080\", \"10.0.0.6:http\"]\n")
	typo := writeTemp(t, "typo.yaml", "listen: \":443\"\napps:\n  - hosts: [a.com]\n    backend: [\"10.0.0.5:80\"]\n")
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"unknown flag", []string{"--lisen", ":443"}, []string{"unknown flag: --lisen"}},
		{"no apps", []string{"--listen", "127.0.0.1:0"}, []string{"no apps configured"}},
		{"bad backend", []string{"--app", "shop.example.com=10.0.0.5:8080,10.0.0.6"}, []string{`app "shop.example.com"`, `backends[1] "10.0.0.6"`}},
		{"bad weight", []string{"--app", "shop.example.com=10.0.0.5:8080*0"}, []string{`"10.0.0.5:8080*0"`, "weight"}},
		{"unknown option", []string{"--app", "shop.example.com=10.0.0.5:8080;stikcy"}, []string{`option "stikcy"`, "unknown option"}},
		{"bad cookie name", []string{"--app", "shop.example.com=10.0.0.5:8080;sticky=a b"}, []string{`sticky "a b"`}},
		{"bad host", []string{"--app", "shop!.example.com=10.0.0.5:8080"}, []string{`hosts[0] "shop!.example.com"`}},
		{"cert without key", []string{"--app", "a.com=10.0.0.5:80", "--cert", "a.crt"}, []string{"--cert/--key", "one --key for every --cert"}},
		{"missing cert file", []string{"--app", "a.com=10.0.0.5:80", "--cert", "/nonexistent/a.crt", "--key", "/nonexistent/a.key"}, []string{"/nonexistent/a.crt"}},
		{"bad file", []string{"--config", badFile}, []string{badFile, "line 3", "10.0.0.6:http"}},
		{"typo in file", []string{"--config", typo}, []string{"line 4", "field backend not found"}},
		{"missing file", []string{"--config", "/nonexistent/tlsedge.yaml"}, []string{"/nonexistent/tlsedge.yaml"}},
		{"bad listen", []string{"--app", "a.com=10.0.0.5:80", "--listen", "443"}, []string{`listen "443"`}},
		{"stray argument", []string{"shop.example.com=10.0.0.5:80"}, []string{"unexpected argument", "--app"}},
		{"bad email", []string{"--app", "a.com=10.0.0.5:80", "--acme-email", "ops-at-example.com"}, []string{`tls.acme.email "ops-at-example.com"`, "plain address"}},
		{"bad CA", []string{"--app", "a.com=10.0.0.5:80", "--acme-email", "ops@example.com", "--acme-ca", "lets-encrypt"}, []string{`tls.acme.ca "lets-encrypt"`}},
		{"bad storage URL", []string{"--app", "a.com=10.0.0.5:80", "--storage", "redis://:hunter2@127.0.0.1:notaport/0"}, []string{"storage", "redis://"}},
		{"on-demand unbounded", []string{"--app", "*=10.0.0.5:80", "--acme-email", "ops@example.com", "--on-demand"}, []string{"tls.on_demand.enabled", "allowlist"}},
		{"bad on-demand rate", []string{"--app", "a.com=10.0.0.5:80", "--on-demand-rate", "lots"}, []string{`--on-demand-rate "lots"`, "N/DURATION"}},
	}
	for _, tt := range tests {
		for _, sub := range []string{"run", "check"} {
			t.Run(tt.name+"/"+sub, func(t *testing.T) {
				stdout, stderr, code := runCmd(t, append([]string{sub}, tt.args...)...)
				if code != 2 {
					t.Errorf("exit code %d, want 2 (stderr %q)", code, stderr)
				}
				for _, w := range tt.want {
					if !strings.Contains(stderr, w) {
						t.Errorf("stderr %q does not mention %q", stderr, w)
					}
				}
				if strings.Contains(stdout, "listening") || strings.Contains(stderr, "listening") {
					t.Error("something was started")
				}
				if strings.Contains(stderr, "hunter2") {
					t.Error("a password was printed")
				}
				if n := strings.Count(strings.TrimSpace(stderr), "\n"); n > 2 {
					t.Errorf("%d lines for one mistake:\n%s", n+1, stderr)
				}
			})
		}
	}
}

func TestCheckPrintsEffectiveConfig(t *testing.T) {
	file := writeTemp(t, "tlsedge.yaml", `
listen: ":8443"
apps:
  - hosts: [shop.example.com]
    backends: ["10.0.0.5:8080"]
  - hosts: [example.com]
    path: /api
    backends: ["10.0.0.7:9000"]
`)
	// Flags override the file: --listen, and an --app for the same route.
	stdout, stderr, code := runCmd(t, "check", "--config", file, "--listen", "127.0.0.1:9443",
		"--app", "shop.example.com=10.0.0.5:8080,10.0.0.6:8080*2;sticky")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, w := range []string{
		"listen: 127.0.0.1:9443", "http_listen: :80",
		"- 10.0.0.6:8080*2", "sticky: tlsedge_sticky", "path: /api", "- 10.0.0.7:9000",
	} {
		if !strings.Contains(stdout, w) {
			t.Errorf("effective configuration lacks %q:\n%s", w, stdout)
		}
	}
	if strings.Count(stdout, "hosts:") != 2 {
		t.Errorf("want 2 apps (the flag replaced the file's shop app):\n%s", stdout)
	}
	if !strings.Contains(stderr, "certificate for shop.example.com: local CA") || !strings.Contains(stderr, "configuration OK: 2 app(s)") {
		t.Errorf("summary: %s", stderr)
	}
}

// check with ACME says where each certificate will come from, and orders,
// opens and contacts nothing.
func TestCheckACME(t *testing.T) {
	state := t.TempDir()
	stdout, stderr, code := runCmd(t, "check", "--state-dir", state, "--acme-email", "ops@example.com", "--acme-ca", "staging",
		"--app", "shop.example.com=10.0.0.5:8080", "--app", "intranet.example.com=10.0.0.6:8080;tls=internal")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, w := range []string{
		"certificate for shop.example.com: ACME https://acme-staging-v02.api.letsencrypt.org/directory (storage " + filepath.Join(state, "acme") + ")",
		"certificate for intranet.example.com: local CA",
	} {
		if !strings.Contains(stderr, w) {
			t.Errorf("summary lacks %q:\n%s", w, stderr)
		}
	}
	if !strings.Contains(stdout, "tls: auto") || !strings.Contains(stdout, "tls: internal") || !strings.Contains(stdout, "email: ops@example.com") {
		t.Errorf("effective configuration:\n%s", stdout)
	}
	if entries, _ := os.ReadDir(state); len(entries) != 0 {
		t.Errorf("check wrote into the state dir: %v", entries)
	}
}

func TestHelpShowsExamples(t *testing.T) {
	stdout, _, code := runCmd(t, "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, w := range []string{"tlsedge demo", "--cert-dir", "sticky_idle=30m", "tlsedge check --config", "--app options", "sticky[=COOKIE]"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("--help lacks %q", w)
		}
	}
	if out, _, _ := runCmd(t, "version"); !strings.HasPrefix(out, "tlsedge ") {
		t.Errorf("version: %q", out)
	}
}

func TestTrust(t *testing.T) {
	state := t.TempDir()
	stdout, stderr, code := runCmd(t, "trust", "--state-dir", state)
	root := filepath.Join(state, "ca", "root.crt")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, w := range []string{root, "curl --cacert " + root, "update-ca-certificates", "certutil"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("trust output lacks %q:\n%s", w, stdout)
		}
	}
	if _, err := os.Stat(root); err != nil {
		t.Errorf("root certificate: %v", err)
	}
}

// TestRunServesAndStops runs the real binary: it serves an app over HTTPS
// and exits 0 on SIGTERM, flushing the access log.
func TestRunServesAndStops(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello from origin") }))
	defer origin.Close()
	state := t.TempDir()
	accessLog := filepath.Join(state, "access.log")
	cmd := tlsedgeCmd(t, "--listen", "127.0.0.1:0", "--http-listen", "off", "--state-dir", state,
		"--access-log", accessLog, "--log-format", "json", "--app", "localhost="+origin.Listener.Addr().String()+";sticky")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() //nolint:errcheck // only if the test failed early
	addr := waitLogField(t, stderr, "listening for HTTPS", "address")

	pem, err := os.ReadFile(filepath.Join(state, "ca", "root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"},
		DialContext: func(ctx context.Context, n, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, n, addr)
		},
	}}
	resp, err := c.Get("https://localhost/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello from origin" || !strings.HasPrefix(resp.Header.Get("Set-Cookie"), "tlsedge_sticky=") {
		t.Errorf("got %q, Set-Cookie %q", body, resp.Header.Get("Set-Cookie"))
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v, want 0", err)
	}
	log, _ := os.ReadFile(accessLog)
	// --log-format json makes the access log JSON too.
	if !regexp.MustCompile(`"method":"GET","host":"localhost","path":"/x","status":200,"bytes":17,"duration":[0-9.]+,"app":"localhost","backend":"[0-9a-f]+","tls":"1.3","sticky":"miss"`).Match(log) {
		t.Errorf("access log: %q", log)
	}
}

// waitLogField reads JSON log lines until one has msg, and returns field.
func waitLogField(t *testing.T, r io.Reader, msg, field string) string {
	t.Helper()
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil && strings.HasPrefix(fmt.Sprint(line["msg"]), msg) {
				found <- fmt.Sprint(line[field])
				break
			}
		}
		io.Copy(io.Discard, r) //nolint:errcheck // keep the pipe drained
	}()
	select {
	case v := <-found:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("no %q log line", msg)
	}
	return ""
}
