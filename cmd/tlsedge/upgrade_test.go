package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
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
	pem, err := os.ReadFile(filepath.Join(state, "ca", "root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	newClient := func() *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"},
			DialContext: func(ctx context.Context, n, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, n, in.addr)
			},
		}}
	}
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
	go func() { exited <- in.cmd.Wait() }()
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
