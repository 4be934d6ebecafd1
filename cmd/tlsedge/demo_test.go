package main

import (
	"bufio"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemoCurlWorksAsPrinted starts `tlsedge demo` and runs the curl
// commands it prints, exactly as printed, with the real curl.
func TestDemoCurlWorksAsPrinted(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("curl is a test dependency (make test-deps installs it): %v", err)
	}
	state := t.TempDir()
	cmd := tlsedgeCmd(t, "demo", "--listen", "127.0.0.1:0", "--state-dir", state)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() //nolint:errcheck // only if the test failed early

	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var try, sticky string
	deadline := time.After(30 * time.Second)
	for try == "" || sticky == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("demo exited before printing its commands")
			}
			if c, ok := strings.CutPrefix(strings.TrimSpace(l), "Try:"); ok {
				try = strings.TrimSpace(c)
			}
			if c, ok := strings.CutPrefix(strings.TrimSpace(l), "Sticky:"); ok {
				sticky = strings.TrimSpace(c)
			}
		case <-deadline:
			t.Fatal("demo printed no curl command")
		}
	}
	if !strings.Contains(try, filepath.Join(state, "ca", "root.crt")) {
		t.Errorf("curl command %q does not use the local CA root", try)
	}
	go func() { // keep draining: the access log goes to stdout
		for range lines {
		}
	}()

	out, err := exec.Command("sh", "-c", try+" --silent --show-error --max-time 10").CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", try, err, out)
	}
	backendRE := regexp.MustCompile(`id="backend">(demo-\d)<`)
	m := backendRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("demo page does not name a backend:\n%s", out)
	}
	// The sticky command, run five times, always reaches the same backend.
	jar := filepath.Join(t.TempDir(), "jar")
	sticky = strings.ReplaceAll(sticky, "/tmp/tlsedge-demo.jar", jar)
	var first string
	for i := range 5 {
		out, err := exec.Command("sh", "-c", sticky+" --silent --show-error --max-time 10").CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", sticky, err, out)
		}
		m := backendRE.FindSubmatch(out)
		if m == nil {
			t.Fatalf("no backend in page %d", i)
		}
		if first == "" {
			first = string(m[1])
		} else if string(m[1]) != first {
			t.Fatalf("request %d reached %s, the first reached %s: not sticky", i, m[1], first)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck
	done := make(chan error, 1)
	go func() { io.Copy(io.Discard, stdout); done <- cmd.Wait() }() //nolint:errcheck
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("demo exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("demo did not stop on SIGTERM")
	}
}
