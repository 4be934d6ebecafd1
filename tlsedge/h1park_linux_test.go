package tlsedge

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/config"
)

// parkGateway serves raw.example.com over a backend answering "ok", with
// the given idle timeout.
func parkGateway(t *testing.T, idle time.Duration) *gateway {
	t.Helper()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok") //nolint:errcheck
	}))
	t.Cleanup(origin.Close)
	g := startGateway(t, &config.Config{
		Frontend: config.Frontend{IdleTimeout: config.Duration(idle)},
		Apps:     []config.App{{Hosts: []string{"raw.example.com"}, Backends: []config.Backend{{Addr: origin.Listener.Addr().String()}}}},
	})
	for t0 := time.Now(); g.srv.idle.Load() == nil; time.Sleep(5 * time.Millisecond) {
		if time.Since(t0) > 2*time.Second {
			t.Fatal("no idle poller: connections cannot park")
		}
	}
	return g
}

func (p *idlePoller) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.parked)
}

// waitParked waits until n connections are parked, or fails.
func waitParked(t *testing.T, g *gateway, n int) {
	t.Helper()
	deadline := time.Now().Add(parkAfter + 3*time.Second)
	for g.srv.idle.Load().len() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections parked, want %d", g.srv.idle.Load().len(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func getOK(t *testing.T, c io.Writer, br *bufio.Reader, path string) {
	t.Helper()
	io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: raw.example.com\r\n\r\n") //nolint:errcheck // the read fails
	resp, body := readResp(t, br, "GET")
	if resp.StatusCode != http.StatusOK || body != "ok" {
		t.Fatalf("GET %s: %d %q", path, resp.StatusCode, body)
	}
}

// A connection silent for parkAfter parks (no goroutine, no serving
// state) and is served again when the client speaks: repeatedly (the
// socket is re-armed), pipelined requests included; closing it while
// parked is noticed.
func TestH1ParkAndWake(t *testing.T) {
	g := parkGateway(t, time.Minute)
	c, br := rawConn(t, g)
	getOK(t, c, br, "/first")
	for i := range 3 {
		waitParked(t, g, 1)
		if i < 2 {
			getOK(t, c, br, "/again")
			continue
		}
		io.WriteString(c, "GET /p1 HTTP/1.1\r\nHost: raw.example.com\r\n\r\nGET /p2 HTTP/1.1\r\nHost: raw.example.com\r\n\r\n") //nolint:errcheck
		for range 2 {
			if resp, body := readResp(t, br, "GET"); resp.StatusCode != http.StatusOK || body != "ok" {
				t.Fatalf("pipelined after parking: %d %q", resp.StatusCode, body)
			}
		}
	}
	waitParked(t, g, 1)
	c.Close()
	waitParked(t, g, 0)
	waitTracked(t, g, 0)
}

// A connection whose requests come closer together than parkAfter does
// not park, however long it has been busy: the idle wait's deadline that
// requests without a body keep on the socket (lazydeadline.go) is moved
// on, not left to expire. (A deadline left to expire parks it every
// 150 ms or so, during silences of a few milliseconds: four or five times
// here.) A silence a stalled machine stretched to half of parkAfter is
// not counted: the connection may rightly park in one that long.
func TestH1BusyConnectionDoesNotPark(t *testing.T) {
	g := parkGateway(t, time.Minute)
	c, br := rawConn(t, g)
	parks, counted := 0, 0
	for i := 0; i < 200 && counted < 60; i++ { // gaps of parkAfter/10, 6*parkAfter in all
		getOK(t, c, br, "/busy")
		answered := time.Now()
		time.Sleep(parkAfter / 10)
		parked := g.srv.idle.Load().len() != 0
		if time.Since(answered) >= parkAfter/2 {
			continue
		}
		counted++
		if parked {
			parks++
		}
	}
	if counted < 20 {
		t.Fatalf("only %d of 200 silences of %v stayed under %v: the machine is too slow for this test", counted, parkAfter/10, parkAfter/2)
	}
	if parks > 0 {
		t.Errorf("a connection with requests %v apart parked in %d of %d silences", parkAfter/10, parks, counted)
	}
}

func waitTracked(t *testing.T, g *gateway, n int) {
	t.Helper()
	t0 := time.Now()
	for g.srv.conns.len() != n {
		if time.Since(t0) > 3*time.Second {
			t.Fatalf("%d connections tracked, want %d", g.srv.conns.len(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (t *connTracker) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// A parked connection is closed when its idle timeout passes, counted
// from the end of the last response, and bytes that trickle in without
// completing a TLS record do not restart that clock.
func TestH1ParkedIdleTimeout(t *testing.T) {
	const idle = 900 * time.Millisecond
	g := parkGateway(t, idle)
	for _, trickle := range []bool{false, true} {
		raw, err := net.Dial("tcp", g.srv.TLSAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		c := tls.Client(raw, &tls.Config{ServerName: "raw.example.com", RootCAs: g.roots, NextProtos: []string{"http/1.1"}})
		c.SetDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
		br := bufio.NewReader(c)
		getOK(t, c, br, "/")
		answered := time.Now()
		waitParked(t, g, 1)
		if trickle {
			// The header of a record that never comes, a byte every
			// 150 ms: each wakes the connection, none completes a record.
			for _, b := range []byte{0x17, 0x03, 0x03, 0x40, 0x00} {
				time.Sleep(150 * time.Millisecond)
				if _, err := raw.Write([]byte{b}); err != nil {
					break // closed already
				}
			}
		}
		_, err = br.ReadByte()
		took := time.Since(answered)
		if !errors.Is(err, io.EOF) {
			t.Fatalf("trickle=%v: read on an idle connection: %v, want EOF", trickle, err)
		}
		// The trickle's last byte comes 750 ms after parking; restarting
		// the clock would close after 750 ms + idle.
		if took < idle-50*time.Millisecond || took > idle+600*time.Millisecond {
			t.Errorf("trickle=%v: closed %v after the response, want about %v", trickle, took.Round(time.Millisecond), idle)
		}
		t.Logf("trickle=%v: closed %v after the response", trickle, took.Round(time.Millisecond))
		waitParked(t, g, 0)
	}
	waitTracked(t, g, 0)
}

// A shutdown closes parked connections at once.
func TestH1ShutdownClosesParked(t *testing.T) {
	g := parkGateway(t, time.Minute)
	c, br := rawConn(t, g)
	getOK(t, c, br, "/")
	waitParked(t, g, 1)
	t0 := time.Now()
	g.stop()
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("shutdown took %v with a parked connection", d)
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("parked connection after shutdown: %v, want EOF", err)
	}
}

// A connection the poller refuses (here: closed, the server still up)
// waits in its goroutine as without a poller: it is served after a pause
// and closed at its idle timeout.
func TestH1ParkRefused(t *testing.T) {
	const idle = 900 * time.Millisecond
	g := parkGateway(t, idle)
	g.srv.idle.Load().closeAll()
	c, br := rawConn(t, g)
	getOK(t, c, br, "/")
	time.Sleep(3 * parkAfter)
	getOK(t, c, br, "/after-a-pause")
	answered := time.Now()
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("read on an idle connection: %v, want EOF", err)
	}
	if took := time.Since(answered); took < idle-50*time.Millisecond || took > idle+600*time.Millisecond {
		t.Errorf("closed %v after the response, want about %v", took.Round(time.Millisecond), idle)
	}
	waitTracked(t, g, 0)
}
