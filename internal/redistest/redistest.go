// Package redistest runs a real redis-server for tests: one private process
// per call to Start, bound to loopback on a free port, with nothing persisted
// and a t.Cleanup that kills exactly that process.
//
// Tests use the real server rather than a fake so that Lua scripts, key
// expiry and connection loss behave as they do in production.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// readyTimeout bounds how long Start waits for the server to answer PING. A
// cold redis-server is ready in a few milliseconds; a loaded CI machine can
// take a second or two.
const readyTimeout = 10 * time.Second

// portAttempts is how many free ports Start tries. Between picking a port
// (listen on :0, close) and redis-server binding it, another process may take
// it; that race is rare, so a few attempts are plenty.
const portAttempts = 3

// Options configures StartWith. The zero value is what Start uses.
type Options struct {
	// Password, if not empty, is required from clients (requirepass) and is
	// part of the URL that Server.URL returns.
	Password string
}

// Server is one redis-server process. Its methods must be called from the
// goroutine running the test (they may call t.Fatalf).
type Server struct {
	t    testing.TB
	opts Options
	bin  string
	dir  string // the server's working directory and log file
	port int

	mu   sync.Mutex
	proc *process // nil while stopped
}

// process is a running redis-server and a channel closed when it has exited.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start runs a redis-server with no password; see StartWith.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith runs a redis-server on a free 127.0.0.1 port and waits until it
// answers PING. The server keeps nothing on disk (no RDB, no AOF) and is
// killed when the test ends. It fails the test if redis-server is not
// installed: the tests that use it are part of the suite, not optional.
func StartWith(t testing.TB, opts Options) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found: run `make test`, which installs it")
	}
	s := &Server{t: t, opts: opts, bin: bin, dir: t.TempDir()}
	t.Cleanup(s.Stop)

	var lastErr error
	for range portAttempts {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: pick a port: %v", err)
		}
		s.port = port
		if lastErr = s.start(); lastErr == nil {
			return s
		}
	}
	t.Fatalf("redistest: %v", lastErr)
	return nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// URL is a redis:// URL for database 0, with the password when there is one.
func (s *Server) URL() string {
	if s.opts.Password != "" {
		return "redis://:" + s.opts.Password + "@" + s.Addr() + "/0"
	}
	return "redis://" + s.Addr() + "/0"
}

// Stop kills the server (SIGKILL, as a crash or a network cut looks to
// clients) and waits for it to exit. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	// Kill fails only if the process has already exited, which the wait
	// below covers.
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// Restart stops the server if it is running and starts it again on the same
// port, so clients configured with the old address reconnect to it. The new
// server starts empty: nothing is persisted across the restart.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatalf("redistest: restart: %v", err)
	}
}

// start runs redis-server on s.port and waits for it to answer.
func (s *Server) start() error {
	logPath := filepath.Join(s.dir, "redis.log")
	// One log file across restarts, so a failure shows the whole history.
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open log %s: %w", logPath, err)
	}
	defer logFile.Close() // the child has its own descriptor

	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--logfile", "", // log to stdout, which is logFile
		"--loglevel", "warning",
	}
	if s.opts.Password != "" {
		args = append(args, "--requirepass", s.opts.Password)
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		// The exit status is of no interest: every way a test server ends
		// (Stop's SIGKILL, a failed start) is handled where it happens.
		_ = cmd.Wait()
		close(p.exited)
	}()

	if err := waitReady(s.Addr(), p.exited); err != nil {
		_ = cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("redis-server on %s: %w\n%s", s.Addr(), err, tail(logPath))
	}
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	return nil
}

// waitReady polls addr until the server answers PING, the process exits or
// readyTimeout passes. A server requiring a password answers -NOAUTH, which
// also proves it is up.
func waitReady(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(readyTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("exited before answering PING")
		default:
		}
		if lastErr = ping(addr); lastErr == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("no answer to PING within %s: %w", readyTimeout, lastErr)
}

// ping sends one PING in RESP and reads the reply line.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH") {
		return nil
	}
	return fmt.Errorf("unexpected PING reply %q", strings.TrimSpace(line))
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the end of the log file for an error message.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	const keep = 2000
	if len(b) > keep {
		b = b[len(b)-keep:]
	}
	return "redis-server log:\n" + string(b)
}
