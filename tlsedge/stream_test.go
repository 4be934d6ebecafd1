package tlsedge

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tlsedge/tlsedge/config"
)

// streamSize is 1 GiB with TLSEDGE_FULL_STREAM=1 (make test runs that
// without -race), 64 MiB otherwise.
func streamSize() int64 {
	if os.Getenv("TLSEDGE_FULL_STREAM") != "" {
		return 1 << 30
	}
	return 64 << 20
}

// pattern is an endless deterministic byte stream.
type pattern struct {
	n, left int64
}

func (p *pattern) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.left {
		b = b[:p.left]
	}
	for i := range b {
		b[i] = byte((p.n + int64(i)) * 31 >> 3)
	}
	p.n += int64(len(b))
	p.left -= int64(len(b))
	return len(b), nil
}

// heapWatch samples the process's in-use heap until stopped.
type heapWatch struct {
	max  atomic.Uint64
	base uint64 // heap in use when the watch began
	stop chan struct{}
	wg   sync.WaitGroup
}

// watchHeap samples the heap in use until Stop, which returns the peak
// growth over the heap at the start (after a GC): what streaming added,
// whatever earlier tests of the process left behind.
func watchHeap() *heapWatch {
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	h := &heapWatch{stop: make(chan struct{}), base: base.HeapInuse}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > h.max.Load() {
				h.max.Store(ms.HeapInuse)
			}
			select {
			case <-h.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return h
}

func (h *heapWatch) Stop() uint64 {
	close(h.stop)
	h.wg.Wait()
	if m := h.max.Load(); m > h.base {
		return m - h.base
	}
	return 0
}

const heapLimit = 64 << 20

// checkHeap asserts the memory bound. The race detector's instrumentation
// multiplies allocations, so the bound is checked in the build users run
// (make test runs these tests at 1 GiB without -race).
func checkHeap(t *testing.T, peak uint64, size int64) {
	t.Helper()
	if peak > heapLimit && !raceEnabled {
		t.Errorf("peak heap %d MiB > 64 MiB while streaming %d MiB", peak>>20, size>>20)
	}
}

func TestStreamGiBThroughGateway(t *testing.T) {
	size := streamSize()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case "GET":
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
			io.Copy(w, &pattern{left: size}) //nolint:errcheck
		case "PUT":
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			fmt.Fprintf(w, "%d %s", n, hex.EncodeToString(h.Sum(nil)))
		}
	}))
	defer origin.Close()
	g := startGateway(t, &config.Config{Apps: []config.App{{Hosts: []string{"big.example.com"}, Backends: []config.Backend{{Addr: origin.Listener.Addr().String()}}}}})
	c := g.client(false)
	c.Timeout = 10 * time.Minute
	want := sha256.New()
	io.Copy(want, &pattern{left: size}) //nolint:errcheck
	wantSum := hex.EncodeToString(want.Sum(nil))
	runtime.GC()

	t.Run("download", func(t *testing.T) {
		hw := watchHeap()
		resp, err := c.Get("https://big.example.com/big")
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		resp.Body.Close()
		peak := hw.Stop()
		if err != nil || n != size || hex.EncodeToString(h.Sum(nil)) != wantSum {
			t.Fatalf("downloaded %d of %d bytes (err %v), checksum match %v", n, size, err, hex.EncodeToString(h.Sum(nil)) == wantSum)
		}
		t.Logf("download %d MiB: peak heap in use %.1f MiB", size>>20, float64(peak)/(1<<20))
		checkHeap(t, peak, size)
	})
	t.Run("upload", func(t *testing.T) {
		hw := watchHeap()
		req, _ := http.NewRequest("PUT", "https://big.example.com/up", &pattern{left: size})
		req.ContentLength = size
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		peak := hw.Stop()
		if string(body) != fmt.Sprintf("%d %s", size, wantSum) {
			t.Fatalf("backend received %q, want %d bytes with the right checksum", body, size)
		}
		t.Logf("upload %d MiB: peak heap in use %.1f MiB", size>>20, float64(peak)/(1<<20))
		checkHeap(t, peak, size)
	})
}

// startWSBackend is a WebSocket origin that echoes "echo: MSG".
func startWSBackend(t *testing.T) string {
	t.Helper()
	up := websocket.Upgrader{}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		for {
			mt, msg, err := conn.ReadMessage()
			if err != nil {
				return
			}
			if err := conn.WriteMessage(mt, append([]byte("echo: "), msg...)); err != nil {
				return
			}
		}
	}))
	t.Cleanup(origin.Close)
	return origin.Listener.Addr().String()
}

// dialWS opens a WebSocket to host through the gateway.
func dialWS(t *testing.T, g *gateway, host string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{
		NetDialContext:  g.client(false).Transport.(*http.Transport).DialContext,
		TLSClientConfig: g.client(false).Transport.(*http.Transport).TLSClientConfig,
	}
	conn, resp, err := d.Dial("wss://"+host+"/chat", nil)
	if err != nil {
		t.Fatalf("dial through the gateway: %v (response %v)", err, resp)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestWebSocketThroughGateway(t *testing.T) {
	g := startGateway(t, &config.Config{Apps: []config.App{{Hosts: []string{"ws.example.com"}, Backends: []config.Backend{{Addr: startWSBackend(t)}}}}})
	conn := dialWS(t, g, "ws.example.com")
	for i := range 20 {
		msg := fmt.Sprintf("message %d", i)
		if err := conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := conn.ReadMessage()
		if err != nil || string(got) != "echo: "+msg {
			t.Fatalf("echo %d: %q, %v", i, got, err)
		}
	}
	conn.Close()
	eventually(t, "the upgrade in the access log", func() bool { return strings.Contains(g.access.String(), "\"GET ws.example.com /chat\" 101") })
}

// A WebSocket upgraded on a keep-alive connection after a plain request
// outlives the idle wait's read deadline, which a request without a body
// keeps on the socket after its head (lazydeadline.go): the hijack clears
// it, and the tunnel carries a message after a silence longer than it.
func TestWebSocketAfterRequestOutlivesIdleWait(t *testing.T) {
	g := startGateway(t, &config.Config{Apps: []config.App{{Hosts: []string{"ws.example.com"}, Backends: []config.Backend{{Addr: startWSBackend(t)}}}}})
	c, err := tls.Dial("tcp", g.srv.TLSAddr().String(), &tls.Config{ServerName: "ws.example.com", RootCAs: g.roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second)) //nolint:errcheck
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /chat HTTP/1.1\r\nHost: ws.example.com\r\n\r\n") //nolint:errcheck
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body) //nolint:errcheck
	resp.Body.Close()
	// The second request waited on the idle deadline (parkAfter): that
	// wait is what leaves a deadline behind.
	time.Sleep(20 * time.Millisecond)
	// "ws": the dialer speaks through the TLS connection it is given.
	d := websocket.Dialer{NetDialContext: func(context.Context, string, string) (net.Conn, error) {
		return &bufferedConn{Conn: c, r: br}, nil
	}}
	ws, _, err := d.Dial("ws://ws.example.com/chat", nil)
	if err != nil {
		t.Fatalf("upgrade after a request on the same connection: %v", err)
	}
	for i, pause := range []time.Duration{0, 3 * parkAfter} {
		time.Sleep(pause)
		msg := fmt.Sprintf("message %d", i)
		if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if _, got, err := ws.ReadMessage(); err != nil || string(got) != "echo: "+msg {
			t.Fatalf("echo after %v of silence: %q, %v", pause, got, err)
		}
	}
}

// bufferedConn reads through r, which may hold bytes read past a response.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
