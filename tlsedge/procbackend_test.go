package tlsedge

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A backend process: the test binary re-executed with TLSEDGE_TEST_BACKEND
// set to its listen address. It answers GET with its name, /healthz with
// 200, and a POST to /die by reading the whole body and exiting without
// an answer. Every request is appended to TLSEDGE_TEST_BACKEND_LOG (one
// line: method path body-length), which survives the process: the test
// counts what each backend received, kills included.
const (
	backendProcEnv    = "TLSEDGE_TEST_BACKEND"
	backendProcLogEnv = "TLSEDGE_TEST_BACKEND_LOG"
	backendProcName   = "TLSEDGE_TEST_BACKEND_NAME"
)

func runBackendProcess(addr string) int {
	name := os.Getenv(backendProcName)
	logf, err := os.OpenFile(os.Getenv(backendProcLogEnv), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var mu sync.Mutex
	record := func(r *http.Request, n int) {
		mu.Lock()
		fmt.Fprintf(logf, "%s %s %d\n", r.Method, r.URL.Path, n)
		mu.Unlock()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/healthz" {
			return
		}
		record(r, len(body))
		if r.Method == http.MethodPost && r.URL.Path == "/die" {
			logf.Sync()
			os.Exit(3) // the body was read, no answer goes out
		}
		io.WriteString(w, name)
	})}
	fmt.Println("ready")
	srv.Serve(ln)
	return 0
}

// procBackend is one backend process the test can kill and restart on the
// same address.
type procBackend struct {
	t    *testing.T
	name string
	addr string
	log  string
	mu   sync.Mutex
	cmd  *exec.Cmd
}

func startProcBackend(t *testing.T, name string) *procBackend {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	b := &procBackend{t: t, name: name, addr: addr, log: filepath.Join(t.TempDir(), name+".log")}
	b.start()
	t.Cleanup(b.kill)
	return b
}

func (b *procBackend) start() {
	b.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), backendProcEnv+"="+b.addr, backendProcLogEnv+"="+b.log, backendProcName+"="+b.name)
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- strings.TrimSpace(line) == "ready"
		io.Copy(io.Discard, out) //nolint:errcheck // drain
	}()
	select {
	case ok := <-ready:
		if !ok {
			b.t.Fatalf("backend %s did not start on %s", b.name, b.addr)
		}
	case <-time.After(20 * time.Second):
		b.t.Fatalf("backend %s: no ready line", b.name)
	}
	b.mu.Lock()
	b.cmd = cmd
	b.mu.Unlock()
}

// kill sends SIGKILL and waits for the process.
func (b *procBackend) kill() {
	b.mu.Lock()
	cmd := b.cmd
	b.cmd = nil
	b.mu.Unlock()
	if cmd != nil {
		cmd.Process.Signal(syscall.SIGKILL) //nolint:errcheck // may have exited (POST /die)
		cmd.Wait()                          //nolint:errcheck // killed on purpose
	}
}

// requests returns the recorded request lines.
func (b *procBackend) requests() []string {
	data, _ := os.ReadFile(b.log)
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}
