package acmetest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// killWait bounds the wait for a SIGKILLed child to be reaped. The kernel
// reaps promptly; the bound only turns a stuck child into an error.
const killWait = 10 * time.Second

// proc is one child process started by the harness.
type proc struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{} // closed once Wait returned and the output is flushed
	err    error         // Wait's result, readable after exited is closed
}

// startProc runs bin with args and env, sending every output line to emit.
func startProc(bin string, args, env []string, emit func(string)) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	stdout, stderr := &lineWriter{emit: emit}, &lineWriter{emit: emit}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &proc{name: bin, cmd: cmd, exited: make(chan struct{})}
	go func() {
		// Wait returns after os/exec's copying goroutines have finished,
		// so nothing writes to the lineWriters any more.
		p.err = cmd.Wait()
		stdout.flush()
		stderr.flush()
		close(p.exited)
	}()
	return p, nil
}

// kill sends SIGKILL to exactly this child's PID and waits for it to be
// reaped. SIGKILL is what a crash looks like to clients, and Pebble has no
// state worth a graceful shutdown. Killing an exited child does nothing.
func (p *proc) kill() error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	// Kill fails only when the child has already exited; the wait covers it.
	_ = p.cmd.Process.Kill()
	select {
	case <-p.exited:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("%s (pid %d) not reaped %s after SIGKILL", p.name, p.cmd.Process.Pid, killWait)
	}
}

// childEnv is the parent's environment without any PEBBLE_* variable, plus
// extra. A developer's shell exporting PEBBLE_VA_ALWAYS_VALID=1 (a common
// local setting) would otherwise turn every validation test into a no-op.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PEBBLE_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// textLog is a concurrency-safe line log, for output that is kept for
// failure reports but not parsed (pebble-challtestsrv, the proxy).
type textLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *textLog) addLine(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.WriteString(s)
	l.buf.WriteByte('\n')
}

func (l *textLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// tail returns at most the last n bytes of s, starting at a line.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return "...\n" + s
}

// errExited reports a child that ended before it was ready.
var errExited = errors.New("exited before it was ready")
