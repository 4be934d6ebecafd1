package upstream

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestWebSocketEcho(t *testing.T) {
	up := websocket.Upgrader{}
	be := newTestBackend(t, "ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for { // ends when the client closes
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(mt, append([]byte("echo:"), msg...)); err != nil {
				return
			}
		}
	})
	p, _ := newTestProxy(t, PoolConfig{Backends: []BackendConfig{be.config(1)}}, nil)
	front := newFront(t, p, nil)

	c, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(front.URL, "http")+"/chat", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get("X-Chosen"); got != "ws" {
		t.Errorf("101 response X-Chosen = %q", got)
	}
	for i := range 20 {
		msg := fmt.Sprintf("message %d %s", i, strings.Repeat("x", i*100))
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "echo:"+msg {
			t.Fatalf("got %q", got)
		}
	}
	b := p.pool.Backend("ws")
	if b.InFlight() != 1 {
		t.Errorf("in flight during the session = %d, want 1", b.InFlight())
	}
	_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	c.Close()
}

// Server-sent events must reach the client as they are written, not when the
// backend finishes: the backend waits for the client to see event 1 before it
// writes event 2, so buffering anywhere on the way deadlocks into the guard.
func TestServerSentEventsStream(t *testing.T) {
	seen := make(chan struct{})
	be := newTestBackend(t, "sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: one\n\n")
		http.NewResponseController(w).Flush()
		select {
		case <-seen:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "data: two\n\n")
	})
	p, _ := newTestProxy(t, PoolConfig{Backends: []BackendConfig{be.config(1)}}, nil)
	front := newFront(t, p, nil)
	resp, err := front.Client().Get(front.URL)
	if err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 4) // room for every event: the reader never blocks
	var wg sync.WaitGroup
	// The reader ends at the end of the body, or when the deferred Close
	// cuts it short; the test waits for it either way.
	defer wg.Wait()
	defer resp.Body.Close()
	wg.Go(func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if sc.Text() != "" {
				lines <- sc.Text()
			}
		}
	})
	// The timeout only turns a deadlock into a failure; nothing is timed.
	guard := time.After(10 * time.Second)
	for i, want := range []string{"data: one", "data: two"} {
		select {
		case got := <-lines:
			if got != want {
				t.Fatalf("event %d = %q, want %q", i, got, want)
			}
		case <-guard:
			t.Fatalf("event %d never arrived: the response is buffered", i)
		}
		if i == 0 {
			close(seen)
		}
	}
}

// pattern generates a deterministic byte stream of length n: every 8-byte
// word is its own offset, so loss, duplication and reordering all change the
// checksum. It keeps a running CRC of what it produced and serves reads of
// any size from one generated block.
type pattern struct {
	off, n   int64
	crc      uint32
	block    [32 << 10]byte
	blockOff int64 // offset of block, valid once filled
	filled   bool
}

func (p *pattern) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	start := p.off - p.off%int64(len(p.block))
	if !p.filled || start != p.blockOff {
		for i := 0; i < len(p.block); i += 8 {
			binary.LittleEndian.PutUint64(p.block[i:], uint64(start)+uint64(i))
		}
		p.blockOff, p.filled = start, true
	}
	src := p.block[p.off-start:]
	src = src[:min(int64(len(src)), p.n-p.off)]
	n := copy(b, src)
	p.off += int64(n)
	p.crc = crc32.Update(p.crc, crc32.IEEETable, b[:n])
	return n, nil
}

// counter counts and checksums what it is given.
type counter struct {
	n   int64
	crc uint32
}

func (c *counter) Write(b []byte) (int, error) {
	c.n += int64(len(b))
	c.crc = crc32.Update(c.crc, crc32.IEEETable, b)
	return len(b), nil
}

// bigSize is 1 GiB, or 64 MiB with -short (for -race runs).
func bigSize() int64 {
	if testing.Short() {
		return 64 << 20
	}
	return 1 << 30
}

// heapWatch samples HeapInuse until stopped and reports the maximum.
func heapWatch() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak.Load()
	}
}

const heapLimit = 64 << 20

func TestGiBDownload(t *testing.T) {
	size := bigSize()
	// The checksum of what the backend will send, from a second generator:
	// the backend's own finishes after the client may have read the end.
	want := &pattern{n: size}
	if _, err := io.Copy(io.Discard, want); err != nil {
		t.Fatal(err)
	}
	be := newTestBackend(t, "big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		_, _ = io.CopyBuffer(w, &pattern{n: size}, make([]byte, 32<<10))
	})
	p, _ := newTestProxy(t, PoolConfig{Backends: []BackendConfig{be.config(1)}}, nil)
	front := newFront(t, p, nil)
	runtime.GC()
	stop := heapWatch()
	start := time.Now()
	resp, err := front.Client().Get(front.URL)
	if err != nil {
		t.Fatal(err)
	}
	var got counter
	_, err = io.CopyBuffer(&got, resp.Body, make([]byte, 32<<10))
	resp.Body.Close()
	peak := stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d MiB in %v, peak HeapInuse %d MiB", size>>20, time.Since(start).Round(time.Millisecond), peak>>20)
	if got.n != size || got.crc != want.crc {
		t.Errorf("received %d bytes crc %08x, want %d bytes crc %08x", got.n, got.crc, size, want.crc)
	}
	if peak > heapLimit {
		t.Errorf("peak HeapInuse %d MiB, want under %d MiB", peak>>20, heapLimit>>20)
	}
}

func TestGiBUpload(t *testing.T) {
	size := bigSize()
	be := newTestBackend(t, "big", func(w http.ResponseWriter, r *http.Request) {
		var c counter
		if _, err := io.CopyBuffer(&c, r.Body, make([]byte, 32<<10)); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%d %08x", c.n, c.crc)
	})
	p, _ := newTestProxy(t, PoolConfig{Backends: []BackendConfig{be.config(1)}}, nil)
	front := newFront(t, p, nil)
	runtime.GC()
	stop := heapWatch()
	start := time.Now()
	src := &pattern{n: size}
	// No Content-Length: the upload is chunked end to end, the harder case
	// for a proxy that must not buffer it.
	resp, err := front.Client().Post(front.URL, "application/octet-stream", src)
	if err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	peak := stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d MiB in %v, peak HeapInuse %d MiB", size>>20, time.Since(start).Round(time.Millisecond), peak>>20)
	if want := fmt.Sprintf("%d %08x", size, src.crc); string(reply) != want {
		t.Errorf("backend received %q, want %q", reply, want)
	}
	if peak > heapLimit {
		t.Errorf("peak HeapInuse %d MiB, want under %d MiB", peak>>20, heapLimit>>20)
	}
}
