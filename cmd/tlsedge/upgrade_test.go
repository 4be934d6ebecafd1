package main

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// A binary upgrade (SIGUSR2) under steady load: a new process takes over
// the listening sockets, the old one drains and exits 0, and no request
// fails. Then a SIGHUP with a bad configuration is refused by the new one.
func TestBinaryUpgradeUnderLoad(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "pid-independent") //nolint:errcheck
	}))
	defer origin.Close()
	state := t.TempDir()
	pidFile := filepath.Join(state, "tlsedge.pid")
	in := startInstance(t, "--listen", "127.0.0.1:0", "--http-listen", "off", "--state-dir", state,
		"--pid-file", pidFile, "--admin", "off", "--app", "localhost="+origin.Listener.Addr().String())
	oldPID := in.cmd.Process.Pid
	newClient := func() *http.Client { return localhostClient(t, in, state) }
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newClient()
			for i := 0; i < 20000; i++ { // bounded; stopped much earlier
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get("https://localhost/")
				if err != nil {
					failed.Add(1)
					t.Errorf("request: %v", err)
					continue
				}
				io.Copy(io.Discard, resp.Body) //nolint:errcheck
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					t.Errorf("status %d", resp.StatusCode)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	in.cmd.Process.Signal(syscall.SIGUSR2) //nolint:errcheck
	exited := make(chan error, 1)
	// Process.Wait, not Cmd.Wait: the latter closes the stderr pipe the
	// new process inherited, and its next log line would kill it (SIGPIPE).
	go func() { st, err := in.cmd.Process.Wait(); exited <- exitErr(st, err) }()
	var newPID int
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("the old process exited with %v, want 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the old process did not hand over within 30 s")
	}
	b, _ := os.ReadFile(pidFile)
	newPID, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	if newPID == 0 || newPID == oldPID {
		t.Fatalf("pid file says %q after the upgrade (old %d)", b, oldPID)
	}
	t.Cleanup(func() { syscall.Kill(newPID, syscall.SIGTERM) }) //nolint:errcheck // the new process is not our child
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d requests answered across the upgrade (pid %d -> %d), %d failed", ok.Load(), oldPID, newPID, failed.Load())
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Errorf("%d failed", failed.Load())
	}
	if strings.Count(in.logs(), "listening for HTTPS") < 2 {
		t.Errorf("the new process did not log its start:\n%s", in.logs())
	}
}

// The test: 30 s of steady load during five reloads (one with an
// invalid configuration) and one binary upgrade: no failed request, no
// refused connection, the invalid configuration refused and reported.
func TestReloadsAndUpgradeUnderLoad(t *testing.T) {
	origins := make([]string, 2)
	for i := range origins {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })) //nolint:errcheck
		defer s.Close()
		origins[i] = s.Listener.Addr().String()
	}
	state := t.TempDir()
	pidFile := filepath.Join(state, "tlsedge.pid")
	file := filepath.Join(state, "tlsedge.yaml")
	write := func(backends string) {
		if err := os.WriteFile(file, []byte("apps:\n  - hosts: [localhost]\n    backends: ["+backends+"]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("{addr: " + origins[0] + "}")
	in := startInstance(t, "--listen", "127.0.0.1:0", "--http-listen", "off", "--state-dir", state,
		"--pid-file", pidFile, "--admin", "off", "--config", file)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := localhostClient(t, in, state)
			for i := 0; i < 200000; i++ { // bounded; stopped after 30 s
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get("https://localhost/")
				if err != nil {
					failed.Add(1)
					t.Errorf("request: %v", err)
					continue
				}
				io.Copy(io.Discard, resp.Body) //nolint:errcheck
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					t.Errorf("status %d", resp.StatusCode)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	pid := func() int {
		b, _ := os.ReadFile(pidFile)
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}
	hup := func() { syscall.Kill(pid(), syscall.SIGHUP) } //nolint:errcheck
	steps := []func(){
		func() { write("{addr: " + origins[1] + "}"); hup() },
		func() { write("{addr: " + origins[0] + "}, {addr: " + origins[1] + "}"); hup() },
		func() { write(""); hup() }, // invalid: no backend
		// The new binary reads the file too: a valid one (an upgrade with an
		// invalid file would be refused, and the old process would stay).
		func() { write("{addr: " + origins[0] + "}"); syscall.Kill(pid(), syscall.SIGUSR2) }, //nolint:errcheck
		func() { write("{addr: " + origins[0] + "}"); hup() },
		func() { write("{addr: " + origins[1] + "}"); hup() },
	}
	start := time.Now()
	for i, step := range steps {
		time.Sleep(4 * time.Second)
		step()
		if i == 3 { // the upgrade: wait for the old process to leave
			done := make(chan error, 1)
			go func() { st, err := in.cmd.Process.Wait(); done <- exitErr(st, err) }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("the old process exited with %v", err)
				}
			case <-time.After(30 * time.Second):
				close(stop)
				wg.Wait()
				t.Fatal("no hand-over within 30 s")
			}
			newPID := pid()
			t.Cleanup(func() { syscall.Kill(newPID, syscall.SIGTERM) }) //nolint:errcheck // not our child
		}
	}
	time.Sleep(time.Until(start.Add(30 * time.Second)))
	close(stop)
	wg.Wait()
	logs := in.logs()
	reloads, refused := strings.Count(logs, "configuration reloaded"), strings.Count(logs, "reload refused")
	t.Logf("30 s: %d requests, %d failed; %d reloads applied, %d refused; one binary upgrade", ok.Load(), failed.Load(), reloads, refused)
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Errorf("%d requests failed", failed.Load())
	}
	if reloads != 4 || refused != 1 || !strings.Contains(logs, "backend") {
		t.Errorf("want 4 reloads applied and 1 refused, got %d and %d", reloads, refused)
	}
}

// exitErr is an error unless the process exited with status 0.
func exitErr(st *os.ProcessState, err error) error {
	if err != nil {
		return err
	}
	if !st.Success() {
		return errors.New(st.String())
	}
	return nil
}
