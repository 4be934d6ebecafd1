package tlsedge

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/tlsedge/tlsedge/admin"
	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/logsink"
)

// stalledSink is a logsink.Sink writing to a FIFO that nobody reads, its
// pipe shrunk to one page: after a few dozen lines the sink's writer
// blocks, its queue of 16 lines fills, and every further line is dropped.
// The sink is closed when the test ends.
func stalledSink(t *testing.T) logsink.Sink {
	t.Helper()
	path := filepath.Join(t.TempDir(), "process.log")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	// Opened for reading first, so that the sink's open for writing does
	// not wait for a reader.
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	rc, err := r.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fcntlErr error
	if err := rc.Control(func(fd uintptr) {
		if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_SETPIPE_SZ, 4096); errno != 0 {
			fcntlErr = errno
		}
	}); err != nil || fcntlErr != nil {
		t.Fatalf("shrinking the pipe: %v %v", err, fcntlErr)
	}
	s, err := logsink.Open(path, logsink.Options{Queue: 16, CloseTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// badHandshake opens a connection to addr and sends plain HTTP, which the
// gateway refuses with a debug line in its process log.
func badHandshake(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))         //nolint:errcheck
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") //nolint:errcheck // the gateway may close first
	io.Copy(io.Discard, c)                                 //nolint:errcheck // until the gateway hangs up
	c.Close()
}

// The process log going to a sink that stalls: the lines it drops are
// counted on /metrics as tlsedge_log_lines_dropped_total{sink="process"},
// in GET /api/state and on the status page.
func TestMetricsProcessLogDropped(t *testing.T) {
	sink := stalledSink(t) // closed after the gateway stops: cleanups run last first
	b := startBackend(t, "b1")
	g := startGatewayWith(t, &config.Config{Admin: "127.0.0.1:0", Apps: []config.App{app("shop.example.com", b.addr())}},
		Options{ProcessLogDropped: sink.Dropped})
	// As cmd/tlsedge does for --log-output, but next to the test's own
	// output so that a failure still shows the log.
	g.srv.opts.Log.AddHook(&logsink.LogrusHook{Sink: sink, Formatter: &logrus.TextFormatter{}})
	base := "http://" + g.srv.AdminAddr().String()
	fetch := func(path string) string {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		return string(body)
	}
	series := regexp.MustCompile(`(?m)^tlsedge_log_lines_dropped_total\{sink="process"\} (\d+)$`)
	if m := series.FindStringSubmatch(fetch("/metrics")); m == nil || m[1] != "0" {
		t.Fatalf("before any drop, /metrics has %q, want the process series at 0", m)
	}

	var metric uint64
	deadline := time.Now().Add(20 * time.Second)
	for n := 1; ; n++ {
		badHandshake(t, g.srv.TLSAddr().String())
		if m := series.FindStringSubmatch(fetch("/metrics")); m != nil {
			metric, _ = strconv.ParseUint(m[1], 10, 64)
		}
		if metric > 0 {
			t.Logf("%d refused handshakes; /metrics counts %d process-log lines dropped", n, metric)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d refused handshakes, /metrics counts no process-log line dropped (the sink counts %d)", n, sink.Dropped())
		}
	}

	var st admin.State
	if err := json.Unmarshal([]byte(fetch("/api/state")), &st); err != nil {
		t.Fatal(err)
	}
	if st.ProcessLogDropped < metric {
		t.Errorf("/api/state process_log_dropped %d, want at least the %d /metrics counted", st.ProcessLogDropped, metric)
	}
	page := regexp.MustCompile(`<dd data-log="process" class="bad">(\d+)</dd>`).FindStringSubmatch(fetch("/"))
	if page == nil {
		t.Fatal(`the status page shows no process-log drops (no <dd data-log="process" class="bad">)`)
	}
	if n, _ := strconv.ParseUint(page[1], 10, 64); n < metric {
		t.Errorf("the status page shows %d process-log lines dropped, want at least %d", n, metric)
	}
}
