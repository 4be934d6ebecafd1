package main

import (
	"strings"
	"testing"
)

// tlsedge explain: what a request would get, from the configuration.
func TestExplain(t *testing.T) {
	state := t.TempDir()
	apps := []string{"--state-dir", state,
		"--app", "shop.example.com=10.0.0.5:8080,10.0.0.6:8080;sticky",
		"--app", "shop.example.com/admin=10.0.0.9:80;allow=10.0.0.0/8"}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"routed and balanced", []string{"https://shop.example.com/cart"},
			[]string{"app       shop.example.com (hosts", "no valid tlsedge_sticky cookie", "backend   ", "balancer roundrobin"}},
		{"a bypass attempt is routed on the normal path and refused", []string{"https://shop.example.com/x/../%61dmin"},
			[]string{"-> app shop.example.com/admin (routed on the normalised path /admin)", "tlsedge answers 403 itself"}},
		{"allowed from inside", []string{"https://shop.example.com/admin/users", "--from", "10.1.2.3"},
			[]string{"app       shop.example.com/admin", "backend   ", "(10.0.0.9:80)"}},
		{"method refused", []string{"https://shop.example.com/", "--method", "TRACE"},
			[]string{"tlsedge answers 405 itself"}},
		{"unknown host", []string{"https://nope.example.org/"},
			[]string{"tlsedge answers 421 itself"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runCmd(t, append(append([]string{"explain"}, tc.args...), apps...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
	if _, errOut, code := runCmd(t, "explain", "--app", "shop.example.com=10.0.0.5:8080"); code != 2 || !strings.Contains(errOut, "URL") {
		t.Errorf("without a URL: exit %d, %q", code, errOut)
	}
}
