package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fifoLog is the reading end of a FIFO the process log goes to. The test
// reads it only when it says so: in between, the FIFO fills and the
// tlsedge's process-log sink stalls.
type fifoLog struct {
	f    *os.File
	mu   sync.Mutex
	text bytes.Buffer
}

// openFIFOLog makes a FIFO and opens it for reading, without waiting for
// a writer: tlsedge's open for writing then succeeds at once.
func openFIFOLog(t *testing.T) (path string, l *fifoLog) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "process.log")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return path, &fifoLog{f: f}
}

// read reads what the FIFO holds, waiting at most 100ms. Before tlsedge
// opens the FIFO, and after it closes it, it finds end of file.
func (l *fifoLog) read(buf []byte) error {
	l.f.SetReadDeadline(time.Now().Add(100 * time.Millisecond)) //nolint:errcheck // a FIFO is pollable
	n, err := l.f.Read(buf)
	l.mu.Lock()
	l.text.Write(buf[:n])
	l.mu.Unlock()
	return err
}

// readUntil reads the FIFO until every regexp matches what was read
// (bounded), and returns each one's last submatch.
func (l *fifoLog) readUntil(t *testing.T, timeout time.Duration, res ...*regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 64<<10)
	for {
		text := l.String()
		var got []string
		for _, re := range res {
			if m := re.FindStringSubmatch(text); m != nil {
				got = append(got, m[len(m)-1])
			}
		}
		if len(got) == len(res) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("the process log never matched %v within %v:\n%s", res, timeout, text)
		}
		if err := l.read(buf); err == io.EOF {
			time.Sleep(20 * time.Millisecond) // no writer yet
		}
	}
}

// drain reads the FIFO until tlsedge closes it (end of file) or the FIFO
// is closed, then closes done.
func (l *fifoLog) drain(done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, 64<<10)
	for {
		if err := l.read(buf); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return
		}
	}
}

func (l *fifoLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.text.String()
}

func (l *fifoLog) has(s string) bool { return strings.Contains(l.String(), s) }

// The process log (--log-output) going to a FIFO that stops being read:
// the lines its sink drops are counted on the admin listener's /metrics
// as tlsedge_log_lines_dropped_total{sink="process"}, in GET /api/state
// and on the status page, and the shutdown warning says how many.
func TestProcessLogDroppedLines(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer origin.Close()
	fifo, plog := openFIFOLog(t)
	stderr := &lockedBuilder{b: new(strings.Builder)}
	cmd := tlsedgeCmd(t, "--log-format", "text", "--log-level", "debug", "--access-log", "off", "--log-output", fifo,
		"--listen", "127.0.0.1:0", "--http-listen", "off", "--state-dir", t.TempDir(),
		"--app", "localhost="+origin.Listener.Addr().String())
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill() //nolint:errcheck // gone already if the test got that far
		<-exited
		if t.Failed() {
			stderr.mu.Lock()
			t.Logf("tlsedge stderr:\n%s", stderr.b.String())
			stderr.mu.Unlock()
		}
	})
	addrs := plog.readUntil(t, 20*time.Second,
		regexp.MustCompile(`msg="listening for HTTPS[^\n]*address="([^"]+)"`),
		regexp.MustCompile(`msg="admin listening[^\n]*address="([^"]+)"`))
	tlsAddr, admin := addrs[0], "http://"+addrs[1]
	// From here nobody reads the FIFO: the pipe fills, then the sink's
	// queue (4096 lines), then lines are dropped.

	fetch := func(path string) string {
		t.Helper()
		resp, err := http.Get(admin + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		return string(b)
	}
	series := regexp.MustCompile(`(?m)^tlsedge_log_lines_dropped_total\{sink="process"\} (\d+)$`)
	dropped := func() uint64 {
		t.Helper()
		m := series.FindStringSubmatch(fetch("/metrics"))
		if m == nil {
			t.Fatal(`/metrics has no tlsedge_log_lines_dropped_total{sink="process"}`)
		}
		n, _ := strconv.ParseUint(m[1], 10, 64)
		return n
	}
	if n := dropped(); n != 0 {
		t.Fatalf("%d process-log lines dropped before the sink stalled", n)
	}
	// Each connection that is not TLS is one debug line, "TLS handshake
	// failed"; eight clients at a time.
	var metric uint64
	deadline := time.Now().Add(90 * time.Second)
	for n := 0; metric == 0; n += 8 * 100 {
		if time.Now().After(deadline) {
			t.Fatalf("%d refused handshakes and /metrics counts no process-log line dropped", n)
		}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 100 {
					notTLS(tlsAddr)
				}
			})
		}
		wg.Wait()
		if metric = dropped(); metric > 0 {
			t.Logf("%d refused handshakes; /metrics counts %d process-log lines dropped", n+800, metric)
		}
	}

	var st struct {
		ProcessLogDropped uint64 `json:"process_log_dropped"`
	}
	if err := json.Unmarshal([]byte(fetch("/api/state")), &st); err != nil || st.ProcessLogDropped < metric {
		t.Errorf("/api/state process_log_dropped %d (%v), want at least %d", st.ProcessLogDropped, err, metric)
	}
	if m := regexp.MustCompile(`<dd data-log="process" class="bad">(\d+)</dd>`).FindStringSubmatch(fetch("/")); m == nil {
		t.Error(`the status page does not show the process-log lines dropped (no <dd data-log="process" class="bad">)`)
	} else if n, _ := strconv.ParseUint(m[1], 10, 64); n < metric {
		t.Errorf("the status page shows %d process-log lines dropped, want at least %d", n, metric)
	}

	// Read the FIFO again, and stop tlsedge once its sink has caught up
	// (a line logged now arrives): its warning at shutdown then gets
	// through and says how many lines were lost.
	drained := make(chan struct{})
	go plog.drain(drained)
	for i := 0; ; i++ {
		local := notTLS(tlsAddr)
		if plog.has(`client="` + local + `"`) {
			break
		}
		if i == 100 {
			t.Fatal("the process log did not recover once read again")
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Errorf("tlsedge exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("tlsedge did not stop within 30s of SIGTERM")
	}
	<-drained // tlsedge has exited: the FIFO ends
	warn := regexp.MustCompile(`level=warning msg="process log lines were dropped because the sink was slow"[^\n]*dropped=(\d+)`)
	if m := warn.FindStringSubmatch(plog.String()); m == nil {
		t.Errorf("no shutdown warning about the process-log lines dropped; the log ends:\n%s", tail(plog.String(), 2000))
	} else if n, _ := strconv.ParseUint(m[1], 10, 64); n < metric {
		t.Errorf("the shutdown warning says %d dropped, want at least %d", n, metric)
	}
}

// notTLS connects to addr, sends plain HTTP and waits for tlsedge to hang
// up. It returns the connection's local address, which tlsedge logs.
func notTLS(addr string) string {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))         //nolint:errcheck
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") //nolint:errcheck // tlsedge may hang up first
	io.Copy(io.Discard, c)                                 //nolint:errcheck
	return c.LocalAddr().String()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// The access log going to a FIFO that nobody reads: the lines its sink
// drops (the sink never blocks the request path) count in
// tlsedge_log_lines_dropped_total{sink="access"}.
func TestAccessLogDroppedLines(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer origin.Close()
	fifo, _ := openFIFOLog(t) // opened for reading, never read
	state := t.TempDir()
	in := startInstance(t, "--listen", "127.0.0.1:0", "--http-listen", "off", "--state-dir", state,
		"--access-log", fifo, "--app", "localhost="+origin.Listener.Addr().String())
	admin := in.adminAddr(t)
	series := regexp.MustCompile(`(?m)^tlsedge_log_lines_dropped_total\{sink="access"\} (\d+)$`)
	dropped := func() uint64 {
		t.Helper()
		resp, err := http.Get("http://" + admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		m := series.FindStringSubmatch(string(b))
		if m == nil {
			t.Fatal(`/metrics has no tlsedge_log_lines_dropped_total{sink="access"}`)
		}
		n, _ := strconv.ParseUint(m[1], 10, 64)
		return n
	}
	c := localhostClient(t, in, state)
	// The pipe holds ~64 KiB and the sink's queue 4 MiB: 6,000 lines of
	// over 4 KiB (their long URLs) are more than both.
	long := "https://localhost/" + strings.Repeat("a", 4000)
	sent := 0
	for ; sent < 6000 && (sent%500 != 0 || sent == 0 || dropped() == 0); sent++ {
		resp, err := c.Get(long)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body) //nolint:errcheck // the status is what counts
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %d", sent, resp.StatusCode)
		}
	}
	time.Sleep(1500 * time.Millisecond) // the access log flushes every second
	n := dropped()
	if n == 0 {
		t.Fatalf("%d requests answered while the access log's FIFO was not read, and no line counted as dropped", sent)
	}
	t.Logf("%d requests answered, %d access-log lines dropped", sent, n)
}
