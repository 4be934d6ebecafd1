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
	load := startLoad(t, func() *http.Client { return localhostClient(t, in, state) }, 20000)
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
	ok, failed := load.stop()
	t.Logf("%d requests answered across the upgrade (pid %d -> %d), %d failed", ok, oldPID, newPID, failed)
	if failed != 0 || ok == 0 {
		t.Errorf("%d failed", failed)
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
	load := startLoad(t, func() *http.Client { return localhostClient(t, in, state) }, 200000)
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
				load.stop()
				t.Fatal("no hand-over within 30 s")
			}
			newPID := pid()
			t.Cleanup(func() { syscall.Kill(newPID, syscall.SIGTERM) }) //nolint:errcheck // not our child
		}
	}
	time.Sleep(time.Until(start.Add(30 * time.Second)))
	ok, failed := load.stop()
	logs := in.logs()
	reloads, refused := strings.Count(logs, "configuration reloaded"), strings.Count(logs, "reload refused")
	t.Logf("30 s: %d requests, %d failed; %d reloads applied, %d refused; one binary upgrade", ok, failed, reloads, refused)
	if failed != 0 || ok == 0 {
		t.Errorf("%d requests failed", failed)
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

// load is steady traffic from 4 clients, each request checked: 200 and
// read whole; failures are reported as test errors.
type load struct {
	halt       chan struct{}
	wg         sync.WaitGroup
	ok, failed atomic.Int64
}

// startLoad starts 4 clients making at most max requests each.
func startLoad(t *testing.T, client func() *http.Client, max int) *load {
	l := &load{halt: make(chan struct{})}
	for w := 0; w < 4; w++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			c := client()
			for i := 0; i < max; i++ {
				select {
				case <-l.halt:
					return
				default:
				}
				resp, err := c.Get("https://localhost/")
				if err != nil {
					l.failed.Add(1)
					t.Errorf("request: %v", err)
					continue
				}
				io.Copy(io.Discard, resp.Body) //nolint:errcheck
				resp.Body.Close()
				if resp.StatusCode != 200 {
					l.failed.Add(1)
					t.Errorf("status %d", resp.StatusCode)
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	return l
}

// stop ends the traffic and returns the counts.
func (l *load) stop() (ok, failed int64) {
	close(l.halt)
	l.wg.Wait()
	return l.ok.Load(), l.failed.Load()
}
