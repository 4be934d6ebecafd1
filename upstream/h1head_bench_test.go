package upstream

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"testing"

	"github.com/tlsedge/tlsedge/httpsyntax"
)

// nginxHead is the head the harness's nginx origin sends with /small: a
// static file's eight fields.
const nginxHead = "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 01 Dec 2026 00:31:53 GMT\r\n" +
	"Content-Type: application/octet-stream\r\nContent-Length: 1024\r\n" +
	"Last-Modified: Tue, 01 Dec 2026 00:31:50 GMT\r\nConnection: keep-alive\r\n" +
	"ETag: \"692d1e46-400\"\r\nAccept-Ranges: bytes\r\n\r\n"

// BenchmarkResponseHead is what the proxy does with each response head on
// the raw path (S1, S4): read and validate it, then pick the lines the
// frontend sends as they are.
func BenchmarkResponseHead(b *testing.B) {
	head := []byte(nginxHead)
	src := bytes.NewReader(nil)
	br := bufio.NewReaderSize(src, 4096)
	var scratch []byte
	var rf httpsyntax.RawFields
	b.ReportAllocs()
	b.SetBytes(int64(len(nginxHead)))
	for b.Loop() {
		src.Reset(head)
		br.Reset(src)
		var h respHead
		out, err := readResponseHead(br, &h, scratch, maxResponseHeaderBytes)
		if err != nil {
			b.Fatal(err)
		}
		scratch = out
		if ok, _ := fillRaw(&rf, &h, h.framing(http.MethodGet)); !ok || rf.Len() != 8 {
			b.Fatalf("fillRaw %v, %d lines", ok, rf.Len())
		}
	}
}

// BenchmarkRequestHead writes the head of a request as h2load sends it
// (S4), with the forwarding fields the proxy adds.
func BenchmarkRequestHead(b *testing.B) {
	r, err := http.NewRequest(http.MethodGet, "https://127.0.0.1:8443/small", nil)
	if err != nil {
		b.Fatal(err)
	}
	r.RemoteAddr = "127.0.0.1:50123"
	r.TLS = &tls.ConnectionState{}
	r.Header = http.Header{
		"User-Agent":      {"h2load nghttp2/1.52.0"},
		"Accept-Encoding": {"gzip, deflate"},
		"X-Request-Id":    {"6eda2d64069f2f74-1"},
	}
	bw := bufio.NewWriterSize(io.Discard, 4096)
	b.ReportAllocs()
	for b.Loop() {
		if err := writeRequestHead(bw, r, "127.0.0.1:9001"); err != nil {
			b.Fatal(err)
		}
		if err := bw.Flush(); err != nil {
			b.Fatal(err)
		}
	}
}
