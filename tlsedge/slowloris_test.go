package tlsedge

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/config"
)

// dialFrom opens a TCP connection to addr from a given loopback address,
// so that a test can be several clients (Linux routes all of 127/8 to lo).
func dialFrom(src, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return d.Dial("tcp", addr)
}

// TestSlowloris holds 100 TLS connections that drip one header byte every
// 2 s and 100 TCP connections that never start TLS, for 40 s, re-opening
// each one tlsedge closes. Every one must be closed within its timeout
// (header 10 s, handshake 10 s, plus slack for a loaded machine), and a
// client asking every 0.5 s from another address gets every answer.
func TestSlowloris(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "b1")
	g := startGateway(t, &config.Config{Apps: []config.App{{Hosts: []string{"slow.example.com"}, Backends: []config.Backend{{Addr: be.addr()}}}}})
	addr := g.srv.TLSAddr().String()
	const (
		attackers = 100
		runFor    = 40 * time.Second
		slack     = 5 * time.Second
	)
	deadline := time.Now().Add(runFor)
	var (
		wg                   sync.WaitGroup
		closedTLS, closedTCP atomic.Int64
		late                 atomic.Int64
	)
	// waitClosed reads until the server closes c; it reports how long that
	// took, or false when c outlived limit.
	waitClosed := func(c net.Conn, start time.Time, limit time.Duration) bool {
		c.SetReadDeadline(start.Add(limit + slack)) //nolint:errcheck
		_, err := io.Copy(io.Discard, c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return false
		}
		return true
	}
	tcpAttacker := func() {
		defer wg.Done()
		for time.Now().Before(deadline) {
			c, err := dialFrom("127.0.0.3", addr)
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			start := time.Now()
			if waitClosed(c, start, config.DefaultHandshakeTimeout) {
				closedTCP.Add(1)
			} else {
				late.Add(1)
			}
			c.Close()
		}
	}
	tlsAttacker := func() {
		defer wg.Done()
		head := []byte("GET / HTTP/1.1\r\nHost: slow.example.com\r\nX-Pad: " + string(make([]byte, 0)) + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
		for time.Now().Before(deadline) {
			nc, err := dialFrom("127.0.0.4", addr)
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			tc := tls.Client(nc, &tls.Config{ServerName: "slow.example.com", RootCAs: g.roots, NextProtos: []string{"http/1.1"}})
			if err := tc.Handshake(); err != nil {
				t.Errorf("handshake: %v", err)
				nc.Close()
				return
			}
			start := time.Now()
			closed := make(chan struct{})
			go func() {
				defer close(closed)
				if waitClosed(tc, start, config.DefaultHeaderTimeout) {
					closedTLS.Add(1)
				} else {
					late.Add(1)
				}
			}()
		drip:
			for i := 0; i < len(head); i++ {
				if _, err := tc.Write(head[i : i+1]); err != nil {
					break
				}
				select {
				case <-closed:
					break drip
				case <-time.After(2 * time.Second):
				}
			}
			<-closed
			tc.Close()
		}
	}
	for i := 0; i < attackers; i++ {
		wg.Add(2)
		go tcpAttacker()
		go tlsAttacker()
	}

	// The normal client: its own address, a fresh connection now and then.
	tr := &http.Transport{
		DialContext:     func(context.Context, string, string) (net.Conn, error) { return dialFrom("127.0.0.2", addr) },
		TLSClientConfig: &tls.Config{ServerName: "slow.example.com", RootCAs: g.roots},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	asked, answered := 0, 0
	for time.Now().Before(deadline) {
		asked++
		if asked%10 == 0 {
			tr.CloseIdleConnections()
		}
		resp, err := client.Get("https://slow.example.com/normal")
		if err != nil {
			t.Errorf("normal request %d: %v", asked, err)
		} else {
			io.Copy(io.Discard, resp.Body) //nolint:errcheck
			resp.Body.Close()
			if resp.StatusCode == 200 {
				answered++
			} else {
				t.Errorf("normal request %d: status %d", asked, resp.StatusCode)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	wg.Wait()
	t.Logf("normal client: %d/%d answered; closed by tlsedge: %d TLS drippers, %d silent TCP; outlived their timeout: %d",
		answered, asked, closedTLS.Load(), closedTCP.Load(), late.Load())
	if answered != asked || asked < 60 {
		t.Errorf("the normal client got %d answers of %d", answered, asked)
	}
	if late.Load() != 0 {
		t.Errorf("%d slow connections outlived their timeout", late.Load())
	}
	// Every attacker was cut at least 3 times in 40 s (10 s timeouts).
	if closedTLS.Load() < 3*attackers || closedTCP.Load() < 3*attackers {
		t.Errorf("closed %d TLS and %d TCP slow connections, want at least %d each", closedTLS.Load(), closedTCP.Load(), 3*attackers)
	}
}
