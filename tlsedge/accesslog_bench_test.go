package tlsedge

import (
	"testing"

	"github.com/tlsedge/tlsedge/logsink"
)

// BenchmarkAccessLogLine is the writer goroutine's cost of one access-log
// line in each format the access log offers: text (the default), json,
// and a logsink format (combined). The request path only queues the
// entry; this is what the writer does with it.
//
//	go test -run '^$' -bench AccessLog -benchmem ./tlsedge
func BenchmarkAccessLogLine(b *testing.B) {
	combined, err := logsink.CompileAccessFormat("combined")
	if err != nil {
		b.Fatal(err)
	}
	e := sampleEntry()
	e.RequestID, e.Proto = "0f3c9a2be41d7a55", "HTTP/1.1"
	e.Referer, e.UserAgent = "https://shop.example.com/", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
	for _, tc := range []struct {
		name string
		l    *accessLog
	}{
		{"text", &accessLog{}},
		{"json", &accessLog{json: true}},
		{"combined", &accessLog{custom: combined}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			buf := make([]byte, 0, 512)
			b.ReportAllocs()
			for b.Loop() {
				buf = tc.l.format(buf[:0], &e)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}
