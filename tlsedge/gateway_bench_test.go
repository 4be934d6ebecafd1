package tlsedge

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/tlsedge/tlsedge/config"
)

// BenchmarkGatewayRoundTrip is S1 inside one process: one keep-alive TLS
// connection, a GET of 1 KiB through the whole server path — TLS, the
// HTTP/1.1 parser, routing, the default filter chain, sticky cookies,
// the upstream proxy over a kept-alive backend connection, metrics and
// the access log (formatted, written to io.Discard) — to a backend that
// answers from a fixed buffer. The client and the backend allocate
// nothing per request, so allocs/op is the gateway's:
//
//	go test -run '^$' -bench GatewayRoundTrip -benchmem ./tlsedge
//	go test -run '^$' -bench GatewayRoundTrip -cpuprofile cpu.prof ./tlsedge
func BenchmarkGatewayRoundTrip(b *testing.B) {
	origin := startFixedOrigin(b, 1024)
	for _, tc := range []struct {
		name   string
		sticky bool
		cookie bool
	}{
		{"nosticky", false, false},
		{"sticky-new-session", true, false},
		{"sticky-hit", true, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			app := config.App{Hosts: []string{"shop.example.com"}, Backends: []config.Backend{{Addr: origin}}}
			if tc.sticky {
				app.Sticky = &config.Sticky{}
			}
			cfg := &config.Config{Listen: "127.0.0.1:0", HTTPListen: config.Off, Admin: config.Off, StateDir: b.TempDir(), Apps: []config.App{app}}
			cfg.Normalize(cfg.StateDir)
			if err := cfg.Validate(); err != nil {
				b.Fatal(err)
			}
			log := logrus.New()
			log.Out = io.Discard
			srv, err := New(cfg, Options{Log: log, AccessLog: io.Discard})
			if err != nil {
				b.Fatal(err)
			}
			if err := srv.Listen(); err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx) }()
			defer func() { cancel(); <-done }()

			roots := x509.NewCertPool()
			roots.AddCert(srv.snap.Load().ca.RootCertificate())
			conn, err := tls.Dial("tcp", srv.TLSAddr().String(), &tls.Config{RootCAs: roots, ServerName: "shop.example.com", NextProtos: []string{"http/1.1"}})
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			c := &rawClient{conn: conn, r: bufio.NewReaderSize(conn, 16<<10)}
			req := "GET /small HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
			if tc.cookie {
				// The first answer's sticky cookie, sent back from then on.
				setCookie := c.do(b, []byte(req))
				name, value, _ := strings.Cut(strings.SplitN(setCookie, ";", 2)[0], "=")
				req = strings.Replace(req, "\r\n\r\n", "\r\nCookie: "+name+"="+value+"\r\n\r\n", 1)
			}
			wire := []byte(req)
			c.do(b, wire) // warm: the backend connection is open and kept
			b.ReportAllocs()
			b.SetBytes(1024)
			for b.Loop() {
				c.do(b, wire)
			}
		})
	}
}

// rawClient sends one request at a time and reads the answer's head and
// Content-Length body without allocating.
type rawClient struct {
	conn net.Conn
	r    *bufio.Reader
	body [4096]byte
}

// do sends wire and reads the response; it returns the Set-Cookie value
// of the answer (as a new string: only the setup asks for it).
func (c *rawClient) do(b *testing.B, wire []byte) string {
	if _, err := c.conn.Write(wire); err != nil {
		b.Fatal(err)
	}
	n, cookie := -1, ""
	status := true
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			b.Fatal(err)
		}
		if status {
			if !bytes.HasPrefix(line, []byte("HTTP/1.1 200")) {
				b.Fatalf("answer %q", line)
			}
			status = false
			continue
		}
		if len(line) <= 2 {
			break
		}
		k, v, _ := bytes.Cut(line, []byte(":"))
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			n = atoi(v)
		case bytes.EqualFold(k, []byte("Set-Cookie")):
			cookie = string(v)
		}
	}
	if n < 0 || n > len(c.body) {
		b.Fatalf("Content-Length %d", n)
	}
	if _, err := io.ReadFull(c.r, c.body[:n]); err != nil {
		b.Fatal(err)
	}
	return cookie
}

func atoi(b []byte) int {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// startFixedOrigin serves size bytes to every request on keep-alive
// connections, parsing only enough to find the end of each head.
func startFixedOrigin(b *testing.B, size int) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	answer := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n" + strings.Repeat("x", size))
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				r := bufio.NewReaderSize(nc, 16<<10)
				for {
					// A GET has no body: the head ends with an empty line.
					for {
						line, err := r.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
					}
					if _, err := nc.Write(answer); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}
