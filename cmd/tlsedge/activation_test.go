package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// systemd socket activation: the HTTPS socket is bound by "systemd" (this
// test), passed as descriptor 3 with LISTEN_PID and LISTEN_FDS, and
// tlsedge serves on it. The test keeps its own copy of the socket open,
// so a tlsedge that bound the port itself would fail with "address in
// use".
func TestSocketActivation(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "activated") }))
	defer origin.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	state := t.TempDir()
	// sh sets LISTEN_PID to its own PID and execs tlsedge, which keeps it,
	// as systemd sets the PID of the process it starts.
	cmd := exec.Command("sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"`, binary,
		"--listen", ln.Addr().String(), "--http-listen", "off", "--admin", "off", "--state-dir", state,
		"--log-format", "text", "--app", "localhost="+origin.Listener.Addr().String())
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+state, "HOME="+state)
	cmd.ExtraFiles = []*os.File{f}
	var logs strings.Builder
	cmd.Stderr = &lockedBuilder{b: &logs}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck
		cmd.Wait()                          //nolint:errcheck
		if t.Failed() {
			t.Log(logs.String())
		}
	}()
	in := &instance{addr: ln.Addr().String()}
	c := localhostClient(t, in, waitCA(t, state))
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := c.Get("https://localhost/")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "activated" {
				t.Fatalf("got %q", b)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer on the passed socket: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitCA waits for the local CA root the instance writes at start, and
// returns the state dir.
func waitCA(t *testing.T, state string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(state + "/ca/root.crt"); err == nil {
			return state
		}
		if time.Now().After(deadline) {
			t.Fatal("no local CA root")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type lockedBuilder struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
