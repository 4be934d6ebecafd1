// Command gapload holds keep-alive HTTPS connections that each send a GET,
// read the answer and pause, so that every request comes after a silence
// of -gap on its connection (bench/wake-cost.sh: what a request costs
// when its connection has parked, docs/performance.md, issue 7). It prints
// "START" once every connection is open and "requests N errors E" at the
// end.
package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8443", "target host:port")
	n := flag.Int("c", 500, "connections")
	gap := flag.Duration("gap", 150*time.Millisecond, "pause between an answer and the next request")
	dur := flag.Duration("d", 20*time.Second, "how long to send")
	path := flag.String("path", "/small", "request path")
	flag.Parse()
	cfg := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}, ServerName: "localhost"}
	conns := make([]net.Conn, 0, *n)
	for range *n {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", *addr, cfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, "gapload:", err)
			os.Exit(1)
		}
		conns = append(conns, c)
	}
	fmt.Println("START")
	end := time.Now().Add(*dur)
	var reqs, errs atomic.Int64
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			br := bufio.NewReader(c)
			time.Sleep(*gap * time.Duration(i) / time.Duration(len(conns))) // spread the first requests
			for time.Now().Before(end) {
				c.SetDeadline(time.Now().Add(10 * time.Second))                        //nolint:errcheck // a dead conn fails below
				io.WriteString(c, "GET "+*path+" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") //nolint:errcheck // the read fails
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					errs.Add(1)
					return
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					errs.Add(1)
					return
				}
				reqs.Add(1)
				time.Sleep(*gap)
			}
		}()
	}
	wg.Wait()
	fmt.Printf("requests %d errors %d\n", reqs.Load(), errs.Load())
}
