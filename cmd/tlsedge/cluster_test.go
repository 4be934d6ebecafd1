package main

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/internal/acmetest"
	"github.com/tlsedge/tlsedge/internal/redistest"
)

// tlsedge check --cluster lists the instances sharing the Redis storage and
// says which run another configuration than the one given (exit 1).
func TestCheckCluster(t *testing.T) {
	rs := redistest.Start(t)
	common := func(state string) []string {
		return []string{"--listen", "127.0.0.1:0", "--http-listen", "off", "--admin", "off", "--state-dir", state, "--storage", rs.URL()}
	}
	stateA, stateB := t.TempDir(), t.TempDir()
	appA := []string{"--app", "localhost=127.0.0.1:9"}
	a := startInstance(t, append(append(common(stateA), appA...), "--cluster-id", "alpha")...)
	b := startInstance(t, append(append(common(stateB), "--app", "localhost=127.0.0.1:9", "--app", "other.localhost=127.0.0.1:9"), "--cluster-id", "beta")...)
	a.waitLine(t, 10*time.Second, "sharing sticky and ticket keys")
	b.waitLine(t, 10*time.Second, "sharing sticky and ticket keys")

	check := append(append([]string{"check", "--cluster"}, common(stateA)...), appA...)
	var out, errOut string
	var code int
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, errOut, code = runCmd(t, append(check, "--cluster-id", "alpha")...)
		if strings.Contains(out, "alpha") && strings.Contains(out, "beta") || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("tlsedge check --cluster:\n%s%s", out, errOut)
	if code != 1 || !strings.Contains(errOut, "1 live instance(s) run another configuration") {
		t.Errorf("exit %d, want 1 and the count of differing instances", code)
	}
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "alpha") && !strings.Contains(line, "same configuration"):
			t.Errorf("alpha runs this configuration: %q", line)
		case strings.HasPrefix(line, "beta") && !strings.Contains(line, "DIFFERENT configuration"):
			t.Errorf("beta runs another: %q", line)
		}
	}
	if !strings.Contains(out, "2 live instance(s)") {
		t.Errorf("output does not count 2 live instances:\n%s", out)
	}
	// Without a redis storage there is nothing to compare with.
	if _, errOut, code := runCmd(t, "check", "--cluster", "--app", "localhost=127.0.0.1:9", "--state-dir", t.TempDir()); code != 2 || !strings.Contains(errOut, "not redis://") {
		t.Errorf("without redis: exit %d %q", code, errOut)
	}
}

// An instance that ran with a Redis storage restarts while Redis is down
// and serves its ACME certificate from the local mirror (same serial, no
// order), saying so.
func TestRestartWithoutRedisServesMirror(t *testing.T) {
	rd := redistest.Start(t)
	ca := acmetest.Start(t, acmetest.Options{})
	origin := startOrigin(t)
	state := t.TempDir()
	first := startInstance(t, acmeArgs(ca, origin, "--storage", rd.URL(), "--state-dir", state,
		"--listen", ca.TLSAddr(), "--http-listen", ca.HTTPAddr())...)
	roots := ca.Roots(t)
	leaf, err := leafAt(first.addr, shopHost, roots)
	if err != nil {
		t.Fatalf("first run: %v", err)
	}
	first.cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck // waited for below
	first.cmd.Process.Wait()                  //nolint:errcheck // its exit status is not the point
	rd.Stop()

	again := startInstance(t, acmeArgs(ca, origin, "--storage", rd.URL(), "--state-dir", state,
		"--listen", "127.0.0.1:0", "--http-listen", "off")...)
	again.waitLine(t, 10*time.Second, "local mirror")
	leaf2, err := leafAt(again.addr, shopHost, roots)
	if err != nil {
		t.Fatalf("restart without Redis: %v\n%s", err, again.logs())
	}
	if serialOf(leaf2) != serialOf(leaf) {
		t.Errorf("restart without Redis serves serial %s, want %s", serialOf(leaf2), serialOf(leaf))
	}
	if n := ca.Orders(); n != 1 {
		t.Errorf("%d orders, want 1", n)
	}
}
