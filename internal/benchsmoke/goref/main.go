// Command goref is the naive Go reference proxy that make bench-smoke
// measures tlsedge against: a crypto/tls listener, net/http's server and
// httputil.ReverseProxy with a tuned Transport, round robin over the
// backends. "What a straightforward Go implementation gets", the floor
// tlsedge must stay above.
//
// It is a copy of the shared benchmark harness's go/goref (the peer the
// harness's reports give ratios to), kept here so that make test needs
// nothing outside this repository. Keep the two alike: a change to one
// that the other lacks makes the smoke run's ratio and the harness's
// disagree.
package main

import (
	"crypto/tls"
	"flag"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type bufPool struct{ p sync.Pool }

func (b *bufPool) Get() []byte {
	if v := b.p.Get(); v != nil {
		return *v.(*[]byte)
	}
	return make([]byte, 32<<10)
}
func (b *bufPool) Put(x []byte) { b.p.Put(&x) }

func main() {
	listen := flag.String("listen", "127.0.0.1:8443", "TLS listen address")
	backends := flag.String("backends", "127.0.0.1:9001,127.0.0.1:9002", "comma-separated backend host:port")
	certFile := flag.String("cert", "", "certificate PEM")
	keyFile := flag.String("key", "", "private key PEM")
	flag.Parse()
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Fatal(err)
	}
	var targets []*url.URL
	for _, b := range strings.Split(*backends, ",") {
		targets = append(targets, &url.URL{Scheme: "http", Host: b})
	}
	var next atomic.Uint64
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		WriteBufferSize:     32 << 10,
		ReadBufferSize:      32 << 10,
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(targets[next.Add(1)%uint64(len(targets))])
			pr.SetXForwarded()
			pr.Out.Host = pr.In.Host
		},
		Transport:  tr,
		BufferPool: &bufPool{},
	}
	srv := &http.Server{
		Handler:           rp,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       300 * time.Second,
		TLSConfig: &tls.Config{
			Certificates:     []tls.Certificate{cert},
			MinVersion:       tls.VersionTLS13,
			CurvePreferences: []tls.CurveID{tls.X25519},
		},
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(srv.ServeTLS(ln, "", "")) // ServeTLS adds ALPN h2 + http/1.1
}
