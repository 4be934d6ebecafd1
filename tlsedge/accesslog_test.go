package tlsedge

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"strings"
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
	// Nobody is writing yet: the queue fills, then lines are dropped.
	for range accessLogQueue + 10 {
		l.Log(sampleEntry())
	}
	if l.Dropped() != 10 {
		t.Errorf("dropped %d, want 10", l.Dropped())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l.Run(ctx) // drains and flushes, then returns
	if n := strings.Count(buf.String(), "\n"); n != accessLogQueue {
		t.Errorf("wrote %d lines, want %d", n, accessLogQueue)
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
