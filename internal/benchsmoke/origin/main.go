// Command origin is the plain-HTTP/1.1 origin behind both proxies of make
// bench-smoke: /small (1 KiB) and /large (1 MiB), keep-alive, on every
// address given in -listen.
//
// It answers from canned bytes without net/http: the origin shares core 1
// with the loader, and every cycle it spends there is one the loader does
// not get. The harness's Go origin (go/backend, net/http) serves about
// 50,000 requests per CPU-second on the 2-core test machine, this one about
// 130,000: with the former, the loader's core ran out first in S1 and
// tlsedge measured at about 1.04x goref, a ratio that says nothing about
// either proxy. (nginx, the harness's default origin, would be one more
// Debian package, with a service of its own.)
//
// It speaks just enough HTTP/1.1 for proxies: request heads without a body
// (a Content-Length other than 0 or a Transfer-Encoding closes the
// connection after a 400), GET and HEAD, keep-alive unless the request
// says Connection: close, no pipelining limits.
package main

import (
	"bytes"
	"flag"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// maxHead bounds a request head; a longer one closes the connection.
const maxHead = 64 << 10

// page is one URL's canned answer: the head (with a Date refreshed every
// second) and the body.
type page struct {
	head atomic.Pointer[[]byte]
	body []byte
}

func (p *page) refresh(now time.Time) {
	h := []byte("HTTP/1.1 200 OK\r\nServer: benchsmoke-origin\r\nDate: " + now.UTC().Format(http.TimeFormat) +
		"\r\nContent-Type: application/octet-stream\r\nContent-Length: " + strconv.Itoa(len(p.body)) + "\r\n\r\n")
	p.head.Store(&h)
}

var (
	small = &page{body: bytes.Repeat([]byte("s"), 1024)}
	large = &page{body: bytes.Repeat([]byte("L"), 1<<20)}
	pages = map[string]*page{"/small": small, "/large": large}
)

const (
	notFound   = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
	badRequest = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9001,127.0.0.1:9002", "comma-separated listen addresses")
	flag.Parse()
	now := time.Now()
	for _, p := range pages {
		p.refresh(now)
	}
	go func() {
		for now := range time.Tick(time.Second) {
			for _, p := range pages {
				p.refresh(now)
			}
		}
	}()
	addrs := strings.Split(*listen, ",")
	errc := make(chan error, len(addrs))
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					errc <- err
					return
				}
				go serve(c)
			}
		}()
	}
	log.Fatal(<-errc)
}

// serve answers the requests of one connection until it closes or sends
// something this origin does not take.
func serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 0, 8<<10)
	var out []byte
	for {
		if len(buf) == cap(buf) {
			if cap(buf) >= maxHead {
				return
			}
			buf = append(buf, make([]byte, cap(buf))...)[:len(buf)]
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		if n == 0 && err != nil {
			return
		}
		buf = buf[:len(buf)+n]
		out = out[:0]
		closing := false
		for !closing {
			end := bytes.Index(buf, []byte("\r\n\r\n"))
			if end < 0 {
				break
			}
			head := buf[:end+2] // each line with its CRLF
			var p *page
			var get bool
			p, get, closing = parse(head)
			switch {
			case p == nil && closing:
				out = append(out, badRequest...)
			case p == nil:
				out = append(out, notFound...)
			default:
				out = append(out, *p.head.Load()...)
				if get {
					if len(p.body) > 64<<10 { // large: no copy
						if !flush(c, out) || !flush(c, p.body) {
							return
						}
						out = out[:0]
					} else {
						out = append(out, p.body...)
					}
				}
			}
			buf = buf[:copy(buf, buf[end+4:])]
		}
		if !flush(c, out) || closing {
			return
		}
	}
}

// parse reads a request head: the page asked for (nil: none), whether the
// body goes too (GET, not HEAD), and whether the connection closes after
// the answer. A head this origin refuses comes back as (nil, _, true).
func parse(head []byte) (p *page, get, closing bool) {
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	method, line, _ := bytes.Cut(line, []byte(" "))
	target, proto, _ := bytes.Cut(line, []byte(" "))
	if !bytes.HasPrefix(proto, []byte("HTTP/1.")) {
		return nil, false, true
	}
	closing = string(proto) == "HTTP/1.0"
	for len(rest) > 0 {
		var h []byte
		h, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, _ := bytes.Cut(h, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")) && string(value) != "0",
			bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return nil, false, true // a body: not for this origin
		case bytes.EqualFold(name, []byte("Connection")):
			closing = bytes.EqualFold(value, []byte("close"))
		}
	}
	if path, _, _ := bytes.Cut(target, []byte("?")); string(method) == "GET" || string(method) == "HEAD" {
		p = pages[string(path)]
		get = p != nil && string(method) == "GET"
	}
	return p, get, closing
}

func flush(c net.Conn, b []byte) bool {
	if len(b) == 0 {
		return true
	}
	_, err := c.Write(b)
	return err == nil
}
