package main

import (
	"strings"
	"testing"
	"time"

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
