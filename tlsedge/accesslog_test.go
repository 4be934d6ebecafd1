package tlsedge

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func sampleEntry() accessEntry {
	return accessEntry{
		Time: time.Date(2026, 11, 30, 4, 35, 8, 123e6, time.UTC), ClientIP: "203.0.113.9",
		Method: "GET", Host: "shop.example.com", Path: "/cart", Status: 200, Bytes: 1234,
		Duration: 1204 * time.Microsecond, App: "shop", Backend: "web7", TLS: tls.VersionTLS13, Sticky: stickyHit,
	}
}

func TestAccessLogText(t *testing.T) {
	got := string(formatText(nil, ptr(sampleEntry())))
	want := `2026-11-30T04:35:08.123Z 203.0.113.9 "GET shop.example.com /cart" 200 1234 0.001204 app=shop backend=web7 tls=1.3 sticky=hit` + "\n"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	// A hostile path cannot forge a second line or break the quoting.
	e := sampleEntry()
	e.Path = "/x\" 200 0\nfake line \x1b[31m"
	got = string(formatText(nil, &e))
	if strings.Count(got, "\n") != 1 || strings.Count(got, `"`) != 2 || strings.ContainsRune(got, 0x1b) {
		t.Errorf("unsafe line: %q", got)
	}
}

func TestAccessLogJSON(t *testing.T) {
	e := sampleEntry()
	e.Path = "/caf\xc3\xa9/\xff\"\n"
	var m map[string]any
	line := formatJSON(nil, &e)
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("not JSON: %v: %s", err, line)
	}
	if m["path"] != "/café/\ufffd\"\n" || m["status"] != 200.0 || m["sticky"] != "hit" || m["tls"] != "1.3" || m["backend"] != "web7" {
		t.Errorf("fields: %v", m)
	}
}

func TestAccessLogFlushesOnShutdownAndDropsWhenFull(t *testing.T) {
	var buf bytes.Buffer
	l := newAccessLog(&buf, false)
	// Nobody is writing yet: the backlog fills, then lines are dropped.
	e := sampleEntry()
	lineLen := len(formatText(nil, &e))
	const total = 10000
	for range total {
		l.Log(&e)
	}
	kept := (accessLogBacklog + lineLen - 1) / lineLen
	if l.Dropped() != total-uint64(kept) {
		t.Errorf("dropped %d, want %d", l.Dropped(), total-kept)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l.Run(ctx) // writes the backlog, then returns
	if n := strings.Count(buf.String(), "\n"); n != kept {
		t.Errorf("wrote %d lines, want %d", n, kept)
	}
	if !strings.HasPrefix(buf.String(), string(formatText(nil, &e))) {
		t.Errorf("first line %q", buf.String()[:lineLen])
	}
}

// writeRecorder keeps each Write as it came, as a syslog sink makes one
// message of each.
type writeRecorder struct {
	mu     sync.Mutex
	writes []string
}

func (w *writeRecorder) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, string(p))
	return len(p), nil
}

func (w *writeRecorder) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.writes...)
}

// A backlog past accessLogWake is written without waiting for the tick,
// and a sink that wants lines gets one line per write.
func TestAccessLogWakesOnBacklogOneLinePerWrite(t *testing.T) {
	w := &writeRecorder{}
	l := newAccessLog(w, false)
	l.lines = true
	l.flush = time.Hour // only the backlog can wake the writer
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); l.Wait() }()
	go l.Run(ctx)
	e := sampleEntry()
	line := string(formatText(nil, &e))
	n := accessLogWake/len(line) + 1
	for i := range n {
		e.Status = 200 + i%100
		l.Log(&e)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(w.all()) < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	writes := w.all()
	if len(writes) != n {
		t.Fatalf("%d writes with no tick, want %d (one per line)", len(writes), n)
	}
	for i, got := range writes {
		e.Status = 200 + i%100
		if want := string(formatText(nil, &e)); got != want {
			t.Fatalf("write %d: %q, want %q", i, got, want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func BenchmarkAccessLogFormat(b *testing.B) {
	e := sampleEntry()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = formatText(buf[:0], &e)
	}
}

// appendSafe keeps every byte that could forge a line or drive a terminal
// out of a log field, and loses nothing: the escapes decode back to s.
func FuzzAppendSafe(f *testing.F) {
	for _, s := range []string{"", "/cart?id=42", "/x\" 200 0\nfake \x1b[31m", "a\\x41b", "\x7f\x00 \t\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := string(appendSafe([]byte("pre"), s))
		if !strings.HasPrefix(out, "pre") {
			t.Fatalf("%q: prefix lost: %q", s, out)
		}
		out = out[3:]
		if s == "" {
			if out != "-" {
				t.Fatalf("empty field written as %q", out)
			}
			return
		}
		var back []byte
		for i := 0; i < len(out); i++ {
			c := out[i]
			if c < 0x21 || c == '"' || c == 0x7f {
				t.Fatalf("%q: unsafe byte %#x at %d in %q", s, c, i, out)
			}
			if c == '\\' {
				if i+3 >= len(out) || out[i+1] != 'x' {
					t.Fatalf("%q: a backslash that starts no escape in %q", s, out)
				}
				v, err := strconv.ParseUint(out[i+2:i+4], 16, 8)
				if err != nil {
					t.Fatalf("%q: bad escape %q", s, out[i:i+4])
				}
				back = append(back, byte(v))
				i += 3
				continue
			}
			back = append(back, c)
		}
		if string(back) != s {
			t.Fatalf("%q decodes back to %q", s, back)
		}
	})
}
