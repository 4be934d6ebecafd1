// Command gofloor is the floor of Go's runtime and crypto/tls for S1: the
// least an HTTPS-to-HTTP proxy written in Go can do per keep-alive request.
// It is not a proxy anyone should run. Per client connection it keeps one
// backend connection of its own (no pool, no lock), copies each request head
// to it unparsed except for the blank line that ends it (GET only, no
// bodies), and copies back the response head and a Content-Length body with
// one TLS write. No header maps, no filters, no cookies, no deadlines, no
// log, no metrics. What tlsedge spends per request above this floor is what
// its own code costs; what the floor spends above haproxy is Go's.
//
//	gofloor -listen 127.0.0.1:8443 -backends 127.0.0.1:9001,127.0.0.1:9002 -cert c -key k
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"flag"
	"io"
	"log"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8443", "address to listen on")
	backends := flag.String("backends", "127.0.0.1:9001", "comma-separated backend addresses")
	certFile := flag.String("cert", "", "certificate PEM")
	keyFile := flag.String("key", "", "key PEM")
	flag.Parse()
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Fatal(err)
	}
	ln, err := tls.Listen("tcp", *listen, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
	if err != nil {
		log.Fatal(err)
	}
	addrs := strings.Split(*backends, ",")
	var next atomic.Uint32
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go serve(c, addrs[int(next.Add(1))%len(addrs)])
	}
}

func serve(c net.Conn, backend string) {
	defer c.Close()
	be, err := net.Dial("tcp", backend)
	if err != nil {
		return
	}
	defer be.Close()
	cr := bufio.NewReaderSize(c, 4096)
	br := bufio.NewReaderSize(be, 4096)
	var req, resp []byte
	for {
		req = req[:0]
		if req, err = appendHead(req, cr); err != nil {
			return
		}
		if _, err := be.Write(req); err != nil {
			return
		}
		resp = resp[:0]
		if resp, err = appendHead(resp, br); err != nil {
			return
		}
		n, err := contentLength(resp)
		if err != nil {
			return
		}
		start := len(resp)
		resp = slices.Grow(resp, n)[:start+n]
		if _, err := io.ReadFull(br, resp[start:]); err != nil {
			return
		}
		if _, err := c.Write(resp); err != nil {
			return
		}
	}
}

// appendHead appends the lines of a head up to and with the blank line.
func appendHead(dst []byte, r *bufio.Reader) ([]byte, error) {
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return dst, err
		}
		dst = append(dst, line...)
		if len(line) <= 2 {
			return dst, nil
		}
	}
}

var errNoLength = errors.New("gofloor: response without Content-Length")

func contentLength(head []byte) (int, error) {
	for line := range bytes.SplitSeq(head, []byte("\r\n")) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && strings.EqualFold(string(name), "Content-Length") {
			return strconv.Atoi(string(bytes.TrimSpace(value)))
		}
	}
	return 0, errNoLength
}
