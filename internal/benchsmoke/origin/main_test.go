package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		head         string
		page         *page
		get, closing bool
	}{
		{"GET /small HTTP/1.1\r\nHost: x\r\n", small, true, false},
		{"GET /small?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n", small, true, true},
		{"HEAD /large HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\n", large, false, false},
		{"GET /other HTTP/1.1\r\nHost: x\r\n", nil, false, false},
		{"POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n", nil, false, true},
		{"GET /small HTTP/1.1\r\nTransfer-Encoding: chunked\r\n", nil, false, true},
		{"GET /small HTTP/1.0\r\n", small, true, true},
		{"GET /small SPDY/3\r\n", nil, false, true},
	}
	for _, tt := range tests {
		p, get, closing := parse([]byte(tt.head))
		if p != tt.page || get != tt.get || closing != tt.closing {
			t.Errorf("parse(%q) = %p, %v, %v; want %p, %v, %v", tt.head, p, get, closing, tt.page, tt.get, tt.closing)
		}
	}
}

// Pipelined requests, split across writes, answered in order on one
// connection; a request with a body gets a 400 and the connection closes.
func TestServe(t *testing.T) {
	small.refresh(time.Now())
	large.refresh(time.Now())
	client, server := net.Pipe()
	go serve(server)
	defer client.Close()
	go func() {
		io.WriteString(client, "GET /small HTTP/1.1\r\nHost: o\r\n\r\nHEAD /large HTTP/1.1\r\nHo")              //nolint:errcheck
		io.WriteString(client, "st: o\r\n\r\nGET /large HTTP/1.1\r\nHost: o\r\n\r\nGET /nope HTTP/1.1\r\n\r\n") //nolint:errcheck
		io.WriteString(client, "POST /small HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi")                           //nolint:errcheck
	}()
	br := bufio.NewReader(client)
	for _, want := range []struct {
		method string
		status int
		body   int
	}{{"GET", 200, 1024}, {"HEAD", 200, 0}, {"GET", 200, 1 << 20}, {"GET", 404, 0}, {"POST", 400, 0}} {
		resp, err := http.ReadResponse(br, &http.Request{Method: want.method})
		if err != nil {
			t.Fatalf("%s: %v", want.method, err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil || resp.StatusCode != want.status || int(n) != want.body {
			t.Fatalf("%s: status %d, %d bytes, %v; want %d, %d bytes", want.method, resp.StatusCode, n, err, want.status, want.body)
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after the 400: %v, want EOF", err)
	}
}
