package logsink

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func flush(t *testing.T, s Sink) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.(Flusher).Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFileReopenAfterRename(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("one\n"))
	s.Write([]byte("two")) // the sink ends the line
	flush(t, s)
	if st, err := os.Stat(path); err != nil || st.Mode().Perm()&^0o640 != 0 {
		t.Fatalf("stat %s: %v, mode %v, want at most 0640", path, err, st.Mode())
	}
	// logrotate: rename, then tell the process.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("three\n")) // still the old file: it is open
	if err := s.Reopen(); err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("four\n"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readString(t, path+".1"); got != "one\ntwo\nthree\n" {
		t.Errorf("rotated file holds %q", got)
	}
	if got := readString(t, path); got != "four\n" {
		t.Errorf("new file holds %q", got)
	}
	if _, err := s.Write([]byte("late")); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close: %v, want ErrClosed", err)
	}
	if err := s.Reopen(); !errors.Is(err, ErrClosed) {
		t.Errorf("Reopen after Close: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if s.Dropped() != 0 {
		t.Errorf("dropped %d", s.Dropped())
	}
}

// TestFileReopenFails: a reopen that cannot open the path keeps writing
// to the file it has, and says why.
func TestFileReopenFails(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	os.Mkdir(dir, 0o755)
	path := filepath.Join(dir, "x.log")
	var reported error
	s, err := Open(path, Options{OnError: func(err error) { reported = err }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	os.Rename(path, path+".1")
	os.Remove(dir + "/x.log.1")
	os.Remove(dir)
	if err := s.Reopen(); err == nil || !strings.Contains(err.Error(), path) || reported == nil {
		t.Errorf("Reopen = %v (reported %v), want an error naming %s", err, reported, path)
	}
	s.Write([]byte("still written"))
	flush(t, s)
}

func TestReopenOnSignal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tlsedge.log")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ReopenOnSignal(ctx, syscall.SIGUSR1, s)
	s.Write([]byte("before"))
	flush(t, s)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	// The reopen creates the file; wait for it (the test's timeout bounds this).
	for {
		if _, err := os.Stat(path); err == nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	s.Write([]byte("after"))
	flush(t, s)
	if got := readString(t, path+".1"); got != "before\n" {
		t.Errorf("rotated file holds %q", got)
	}
	if got := readString(t, path); got != "after\n" {
		t.Errorf("new file holds %q", got)
	}
}

// TestStalledSinkNeverBlocks writes 100,000 lines to a FIFO nobody reads:
// the loop completes (Write never waits for the sink), the lines beyond
// the queue and the pipe are dropped and counted, and Close returns after
// CloseTimeout by interrupting the blocked write.
func TestStalledSinkNeverBlocks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s, err := Open(path, Options{Queue: 100, CloseTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	const n = 100_000
	line := []byte("a line that will mostly not be read, 100,000 times over\n")
	for i := range n {
		if _, err := s.Write(line); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	dropped := s.Dropped()
	t.Logf("dropped %d of %d", dropped, n)
	if dropped == 0 || dropped > n {
		t.Errorf("dropped %d of %d lines to a stalled sink", dropped, n)
	}
	s.Close() // reports the interrupted write or nothing; either is fine
	if s.Dropped() < dropped || s.Dropped() > n {
		t.Errorf("after Close dropped %d", s.Dropped())
	}
	// Everything in the pipe is whole lines of ours, or a torn last one.
	b, _ := io.ReadAll(io.LimitReader(r, 1<<20))
	if lines := strings.Split(string(b), "\n"); len(lines) > 1 && lines[0]+"\n" != string(line) {
		t.Errorf("pipe starts with %q", lines[0])
	}
}

// A writer that buffers (the access log to a file) hands over many lines
// per Write: a stalled sink holds at most QueueBytes of them, whatever
// the queue's length, and counts what it drops in lines, not writes.
func TestStalledSinkBoundsBytes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const budget = 1 << 20
	s, err := Open(path, Options{Queue: 4096, QueueBytes: budget, CloseTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// 64 KiB writes of 1,024 lines each: 400 of them are 25 MiB, which a
	// queue of 4,096 writes would take whole.
	chunk := []byte(strings.Repeat(strings.Repeat("x", 63)+"\n", 1024))
	const writes = 400
	for range writes {
		s.Write(chunk) //nolint:errcheck // never fails while open
	}
	q := s.(*queued)
	if held := q.queuedBytes.Load(); held > budget {
		t.Errorf("%d bytes queued, budget %d", held, budget)
	}
	// At most the budget, the pipe (64 KiB here) and the write in progress
	// got through; everything else is dropped, counted per line.
	dropped := s.Dropped()
	passedMax := uint64(budget+256<<10) / 64
	if dropped < writes*1024-passedMax || dropped%1024 != 0 {
		t.Errorf("dropped %d lines of %d (whole writes of 1,024 lines), want at least %d", dropped, writes*1024, writes*1024-passedMax)
	}
}

func TestOpenErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none", "x.log")
	tests := []struct{ spec, want string }{
		{"", "empty log destination"},
		{"http://example.com", `unknown scheme "http"`},
		{"syslog://", "want host[:port]"},
		{"syslog://host:99999", `bad port "99999"`},
		{"syslog+tcp://host:port", `bad port "port"`},
		{"syslog://host/path", "want host[:port]"},
		{"syslog://:514", "missing host"},
		{"syslog://host:+5", `bad port "+5"`},
		{"syslog://2001:db8::1", "bracket IPv6"},
		{"unixgram://dev/log", "absolute socket path"},
		{"unixgram://" + missing, "no such file"},
		{missing, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			s, err := Open(tt.spec, Options{})
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q) succeeded", tt.spec)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), strconv.Quote(tt.spec)) {
				t.Errorf("Open(%q) = %q, want the spec and %q", tt.spec, err, tt.want)
			}
		})
	}
}

func TestHostPort(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.5":      "10.0.0.5:514",
		"10.0.0.5:1514": "10.0.0.5:1514",
		"logs.example":  "logs.example:514",
		"[2001:db8::1]": "[2001:db8::1]:514",
		"[::1]:601":     "[::1]:601",
	} {
		if got, err := hostPort(in); err != nil || got != want {
			t.Errorf("hostPort(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := hostPort("2001:db8::1"); err == nil {
		t.Error("an IPv6 literal without brackets was accepted")
	}
}

// TestStdio: stderr and stdout are written directly and end each line.
func TestStdio(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s := newStdio(w)
	s.Write([]byte("one"))
	s.WriteSeverity(SeverityError, []byte("two\n"))
	w.Close()
	b, _ := io.ReadAll(r)
	if string(b) != "one\ntwo\n" || s.Reopen() != nil || s.Close() != nil || s.Dropped() != 0 {
		t.Errorf("got %q, dropped %d", b, s.Dropped())
	}
	for _, spec := range []string{"stderr", "stdout"} {
		if s, err := Open(spec, Options{}); err != nil || s.(*stdio) == nil {
			t.Errorf("Open(%q) = %v", spec, err)
		}
	}
}

// BenchmarkSinkWrite is the cost the request path pays per line: a copy
// into a pooled buffer and a channel send (or a counted drop).
func BenchmarkSinkWrite(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "bench.log"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	line := []byte(`203.0.113.9 - - [30/Nov/2026:04:35:08 +0000] "GET /cart HTTP/1.1" 200 1234` + "\n")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.Write(line)
		}
	})
	b.ReportMetric(float64(s.Dropped())/float64(b.N), "dropped/op")
}
