package logsink

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

// apacheEntry is the request of Apache's own log documentation
// (https://httpd.apache.org/docs/2.4/logs.html#common).
func apacheEntry() *AccessFields {
	return &AccessFields{
		Time:      time.Date(2000, 10, 10, 13, 55, 36, 0, time.FixedZone("", -7*3600)),
		ClientIP:  "127.0.0.1",
		User:      "frank",
		Method:    "GET",
		Host:      "www.example.com",
		Path:      "/apache_pb.gif",
		Proto:     "HTTP/1.0",
		Status:    200,
		Bytes:     2326,
		Duration:  1234567 * time.Nanosecond,
		App:       "shop",
		Backend:   "ab12",
		RequestID: "r-1",
		Referer:   "http://www.example.com/start.html",
		UserAgent: "Mozilla/4.08 [en] (Win98; I ;Nav)",
		Sticky:    "hit",
	}
}

func TestAccessFormat(t *testing.T) {
	full := apacheEntry()
	bare := &AccessFields{Time: time.Date(2026, 11, 30, 4, 35, 8, 123e6, time.UTC), ClientIP: "203.0.113.9", Method: "GET", Path: "/", Status: 404}
	nasty := apacheEntry()
	nasty.Path = "/a\"b\\c\n\tz\x01é"
	nasty.UserAgent = "x\r\ny\x7f"
	nasty.TLSVersion = 0x0304
	nasty.Attempts = 2
	tests := []struct {
		name, format string
		e            *AccessFields
		want         string
	}{
		{"common", "common", full,
			`127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326`},
		{"combined", "combined", full,
			`127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"`},
		{"common empty fields", "common", bare,
			`203.0.113.9 - - [30/Nov/2026:04:35:08 +0000] "GET /" 404 -`},
		{"combined empty fields", "combined", bare,
			`203.0.113.9 - - [30/Nov/2026:04:35:08 +0000] "GET /" 404 - "-" "-"`},
		{"combined escapes", "combined", nasty,
			`127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /a\"b\\c\n\tz\x01\xc3\xa9 HTTP/1.0" 200 2326 "http://www.example.com/start.html" "x\r\ny\x7f"`},
		{"common no request", "common", &AccessFields{Time: bare.Time}, `- - - [30/Nov/2026:04:35:08 +0000] "-" 0 -`},
		{"template", `{time} {client_ip} "{method} {host} {path}" {status} {bytes} {duration} app={app} backend={backend}`, full,
			`2000-10-10T20:55:36.000Z 127.0.0.1 "GET www.example.com /apache_pb.gif" 200 2326 0.001235 app=shop backend=ab12`},
		{"template empty", `{time} {client_ip} "{method} {host} {path}" {status} {bytes} {duration} app={app} backend={backend}`, bare,
			`2026-11-30T04:35:08.123Z 203.0.113.9 "GET - /" 404 0 0.000000 app=- backend=-`},
		{"template times and durations", `{time_clf}|{time_unix}|{duration_ms}|{duration_us}|{bytes_clf}|{request}`, full,
			`10/Oct/2000:13:55:36 -0700|971211336.000|1.235|1234|2326|GET /apache_pb.gif HTTP/1.0`},
		{"template rest", `{user} {proto} {request_id} {referer} {user_agent} {tls} {sticky} {attempts}`, nasty,
			`frank HTTP/1.0 r-1 http://www.example.com/start.html x\r\ny\x7f 1.3 hit 2`},
		{"template tls", `{tls} {sticky}`, bare, `- -`},
		{"template braces", `{{literal}} {status}}}`, bare, `{literal} 404}`},
		{"template without fields", `-`, bare, `-`},
		{"json", "json", full,
			`{"time":"2000-10-10T20:55:36.000Z","client_ip":"127.0.0.1","method":"GET","host":"www.example.com","path":"/apache_pb.gif","proto":"HTTP/1.0","status":200,"bytes":2326,"duration":0.001235,"app":"shop","backend":"ab12","user":"frank","request_id":"r-1","referer":"http://www.example.com/start.html","user_agent":"Mozilla/4.08 [en] (Win98; I ;Nav)","sticky":"hit"}`},
		{"json bare", "json", bare,
			`{"time":"2026-11-30T04:35:08.123Z","client_ip":"203.0.113.9","method":"GET","host":"","path":"/","proto":"","status":404,"bytes":0,"duration":0.000000,"app":"","backend":""}`},
		{"json escapes", "json", &AccessFields{Time: bare.Time, Path: "/a\"b\\c\n\tz\x01é\xff\u2028", TLSVersion: 0x0303, Attempts: 3},
			`{"time":"2026-11-30T04:35:08.123Z","client_ip":"","method":"","host":"","path":"/a\"b\\c\n\tz\u0001é\ufffd\u2028","proto":"","status":0,"bytes":0,"duration":0.000000,"app":"","backend":"","tls":"1.2","attempts":3}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := CompileAccessFormat(tt.format)
			if err != nil {
				t.Fatal(err)
			}
			got := string(f.Append(nil, tt.e))
			if got != tt.want+"\n" {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
			if tt.format == "json" && !json.Valid([]byte(got)) {
				t.Errorf("not valid JSON: %s", got)
			}
		})
	}
}

// TestAccessJSONRoundTrip decodes the json format with encoding/json: what
// a client sent is what the log reader gets back (valid UTF-8 kept as is).
func TestAccessJSONRoundTrip(t *testing.T) {
	f, err := CompileAccessFormat("json")
	if err != nil {
		t.Fatal(err)
	}
	e := apacheEntry()
	e.UserAgent = "q\"uo\\te \x00\x1f\x7f 日本 \u2029 <script>&"
	var got map[string]any
	if err := json.Unmarshal(f.Append(nil, e), &got); err != nil {
		t.Fatal(err)
	}
	if got["user_agent"] != e.UserAgent || got["status"] != 200.0 || got["duration"] != 0.001235 {
		t.Errorf("decoded %v", got)
	}
}

func TestCompileAccessFormatErrors(t *testing.T) {
	tests := []struct{ spec, want string }{
		{"", "empty"},
		{"{time} {nope}", `unknown field {nope}`},
		{"{time", "unclosed { at byte 0"},
		{"{status} }", "unmatched } at byte 9"},
		{"{status}\n", "control character"},
		{"{}", "unknown field {}"},
		{"{Time}", "unknown field {Time}"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			_, err := CompileAccessFormat(tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CompileAccessFormat(%q) = %v, want an error containing %q", tt.spec, err, tt.want)
			}
			if !strings.Contains(err.Error(), strconv.Quote(tt.spec)) {
				t.Errorf("error %q does not name the format", err)
			}
		})
	}
}

var benchFormats = []struct{ name, spec string }{
	{"common", "common"},
	{"combined", "combined"},
	{"json", "json"},
	{"template", `{time} {client_ip} "{method} {host} {path}" {status} {bytes} {duration} app={app} backend={backend} tls={tls} sticky={sticky} id={request_id}`},
}

// TestAccessFormatAllocs holds Append to its promise: nothing allocated
// per line once the buffer is big enough.
func TestAccessFormatAllocs(t *testing.T) {
	e := apacheEntry()
	e.TLSVersion = 0x0304
	for _, bf := range benchFormats {
		f, err := CompileAccessFormat(bf.spec)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 0, 1024)
		if n := testing.AllocsPerRun(100, func() { buf = f.Append(buf[:0], e) }); n != 0 {
			t.Errorf("%s: %v allocations per line, want 0", bf.name, n)
		}
	}
}

func BenchmarkAccessFormat(b *testing.B) {
	e := apacheEntry()
	e.TLSVersion = 0x0304
	for _, bf := range benchFormats {
		f, err := CompileAccessFormat(bf.spec)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bf.name, func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, 1024)
			for b.Loop() {
				buf = f.Append(buf[:0], e)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

// FuzzAccessTemplate: compiling any text never panics, and a format that
// compiles writes exactly one line whatever the request held.
func FuzzAccessTemplate(f *testing.F) {
	for _, bf := range benchFormats {
		f.Add(bf.spec, "GET")
	}
	for _, s := range []string{"{", "}", "{{", "}}", "{{x}}", "{time", "{}", "a{status}b{{", "{user_agent}\"{path}\""} {
		f.Add(s, "x\ny\"\\\xff")
	}
	f.Fuzz(func(t *testing.T, spec, value string) {
		format, err := CompileAccessFormat(spec)
		if err != nil {
			return
		}
		e := &AccessFields{Time: time.Unix(1e9, 5e8), ClientIP: value, Method: value, Host: value, Path: value,
			Proto: value, App: value, Backend: value, RequestID: value, Referer: value, UserAgent: value,
			User: value, Sticky: value, Status: len(value), Bytes: int64(len(value)), TLSVersion: uint16(len(value))}
		line := format.Append(nil, e)
		if len(line) == 0 || line[len(line)-1] != '\n' {
			t.Fatalf("line %q does not end in a newline", line)
		}
		if i := bytes.IndexAny(line[:len(line)-1], "\r\n"); i >= 0 {
			t.Fatalf("format %q wrote a line break at %d: %q", spec, i, line)
		}
		if spec == "json" && !json.Valid(line) {
			t.Fatalf("invalid JSON: %q", line)
		}
	})
}
