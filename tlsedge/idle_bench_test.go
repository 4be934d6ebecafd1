package tlsedge

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/tlsedge/tlsedge/config"
)

// BenchmarkIdleConn is the memory an idle keep-alive TLS connection holds
// in the gateway (the harness's S5, in process): N clients each do a TLS
// 1.3 handshake and one HTTP/1.1 GET of 1 KiB, then stay connected and
// silent. The clients run in a child process (this test binary again), so
// the gateway's process holds only server-side memory. Reported per
// connection, after a full GC: live heap, goroutine stacks, their sum,
// the RSS increase, and goroutines.
//
//	go test -run '^$' -bench IdleConn -benchtime 1x ./tlsedge
//
// TLSEDGE_IDLE_CONNS sets N (default 2000); TLSEDGE_IDLE_HEAPPROFILE=FILE
// writes a heap profile (every allocation sampled) while the clients are
// idle: go tool pprof -sample_index=inuse_space -top tlsedge.test FILE.
func BenchmarkIdleConn(b *testing.B) {
	n := 2000
	if s := os.Getenv(idleConnsEnv); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("%s=%q: want a count", idleConnsEnv, s)
		}
		n = v
	}
	profile := os.Getenv("TLSEDGE_IDLE_HEAPPROFILE")
	if profile != "" {
		runtime.MemProfileRate = 1
	}
	addr := startIdleGateway(b).TLSAddr().String()
	for b.Loop() {
		m := measureIdle(b, addr, n, profile)
		b.ReportMetric(m.heap, "heap-B/conn")
		b.ReportMetric(m.stack, "stack-B/conn")
		b.ReportMetric(m.heap+m.stack, "B/conn")
		b.ReportMetric(m.rss, "rss-B/conn")
		b.ReportMetric(m.goroutines, "goroutines/conn")
	}
}

const (
	idleConnsEnv  = "TLSEDGE_IDLE_CONNS"
	idleClientEnv = "TLSEDGE_IDLE_CLIENT" // the child: the gateway's address
	// With these, the child sends a request on each connection every
	// TLSEDGE_IDLE_GAP for TLSEDGE_IDLE_DUR after a second "go", and
	// prints how many (BenchmarkIdleWake).
	idleGapEnv = "TLSEDGE_IDLE_GAP"
	idleDurEnv = "TLSEDGE_IDLE_DUR"
)

// idleFigures are per-connection increases.
type idleFigures struct{ heap, stack, rss, goroutines float64 }

// startIdleGateway serves one app in front of a backend answering 1 KiB,
// as the harness's nginx does for /small, with the limits per client
// address off (every client is 127.0.0.1).
func startIdleGateway(b *testing.B) *Server {
	body := strings.Repeat("x", 1024)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, body) //nolint:errcheck // the client went away
	}))
	b.Cleanup(be.Close)
	cfg := &config.Config{
		Listen: "127.0.0.1:0", HTTPListen: config.Off, Admin: config.Off, StateDir: b.TempDir(),
		Apps:     []config.App{{Hosts: []string{"idle.test"}, Backends: []config.Backend{{Addr: be.Listener.Addr().String()}}}},
		Frontend: config.Frontend{MaxConnsPerIP: -1, MaxHandshakesPerIP: -1},
	}
	cfg.Normalize(cfg.StateDir)
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	log := logrus.New()
	log.Out = io.Discard
	log.SetLevel(logrus.WarnLevel)
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
	b.Cleanup(func() { cancel(); <-done })
	for srv.idle.Load() == nil { // Serve made its poller
		time.Sleep(time.Millisecond)
	}
	return srv
}

// idleChild is the test binary re-executed as the clients
// (runIdleClient, through TestMain), so that this process holds only the gateway
// and its backend.
type idleChild struct {
	b     *testing.B
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines *bufio.Scanner
}

func startIdleChild(b *testing.B, env ...string) *idleChild {
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	return &idleChild{b: b, cmd: cmd, stdin: stdin, lines: bufio.NewScanner(stdout)}
}

// expect waits for the child's line starting with word and returns the rest.
func (c *idleChild) expect(word string) string {
	for c.lines.Scan() {
		if rest, ok := strings.CutPrefix(c.lines.Text(), word); ok {
			return strings.TrimSpace(rest)
		}
	}
	c.b.Fatalf("idle client: no %s line (%v)", word, c.lines.Err())
	return ""
}

func (c *idleChild) send(line string) { io.WriteString(c.stdin, line+"\n") } //nolint:errcheck // its death shows in expect

// end closes its stdin (it closes its connections and exits) and waits.
func (c *idleChild) end() {
	c.stdin.Close()
	c.cmd.Wait() //nolint:errcheck // the measurements are taken
}

// measureIdle: the child warms the gateway up (pools, backend
// connections), then opens n idle connections on "go".
func measureIdle(b *testing.B, addr string, n int, profile string) idleFigures {
	c := startIdleChild(b, idleClientEnv+"="+addr, idleConnsEnv+"="+strconv.Itoa(n))
	defer c.end()
	c.expect("WARM")
	before := idleSnapshot()
	c.send("go")
	if got := c.expect("READY"); got != strconv.Itoa(n) {
		b.Fatalf("idle client: %s of %d connections open", got, n)
	}
	time.Sleep(time.Second) // the last connections park
	after := idleSnapshot()
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	return idleFigures{
		heap:       per(after.HeapAlloc, before.HeapAlloc),
		stack:      per(after.StackInuse, before.StackInuse),
		rss:        per(after.rss, before.rss),
		goroutines: per(after.goroutines, before.goroutines),
	}
}

// BenchmarkIdleWake is what parking costs: the CPU of this process (the
// gateway and its backend) per request when every request comes after
// a pause longer than parkAfter, so that each wakes a parked connection,
// against the same gateway with parking off. 200 connections, one
// request each every 1.5 parkAfter, for 5 s:
//
//	go test -run '^$' -bench IdleWake -benchtime 1x ./tlsedge
func BenchmarkIdleWake(b *testing.B) {
	const conns, dur = 200, 5 * time.Second
	gap := parkAfter * 3 / 2
	parked := startIdleGateway(b).TLSAddr().String()
	g := startIdleGateway(b)
	unparked := g.TLSAddr().String()
	// The second never parks: its poller leaves before any connection.
	b.Cleanup(g.idle.Swap(nil).shutdown)
	for b.Loop() {
		for _, v := range []struct{ name, addr string }{{"parked", parked}, {"unparked", unparked}} {
			c := startIdleChild(b, idleClientEnv+"="+v.addr, idleConnsEnv+"="+strconv.Itoa(conns),
				idleGapEnv+"="+gap.String(), idleDurEnv+"="+dur.String())
			c.expect("WARM")
			c.send("go")
			c.expect("READY")
			t0 := cpuTime()
			c.send("go")
			n, _ := strconv.Atoi(c.expect("DONE"))
			cpu := cpuTime() - t0
			c.end()
			if n == 0 {
				b.Fatal("idle client: no requests")
			}
			b.ReportMetric(float64(cpu.Microseconds())/float64(n), v.name+"-us/req")
		}
	}
}

// cpuTime is the CPU this process has used (user and system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type idleStats struct {
	runtime.MemStats
	rss, goroutines uint64
}

func idleSnapshot() idleStats {
	var s idleStats
	s.rss = rssBytes() // before the GC: what the process holds, as the harness sees it
	runtime.GC()
	runtime.GC() // the second frees what the first's finalizers released
	runtime.ReadMemStats(&s.MemStats)
	s.goroutines = uint64(runtime.NumGoroutine())
	return s
}

// rssBytes is the resident set of this process (Linux; 0 elsewhere).
func rssBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

// runIdleClient is BenchmarkIdleConn's child process (TestMain runs it
// when idleClientEnv names the gateway): it opens the connections, holds
// them, and exits when its standard input closes. Its exit code is 1 when
// it could not open them.
func runIdleClient(addr string) int {
	n, _ := strconv.Atoi(os.Getenv(idleConnsEnv))
	cfg := &tls.Config{InsecureSkipVerify: true, ServerName: "idle.test", MinVersion: tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.X25519}, NextProtos: []string{"http/1.1"}}
	// Warm-up as the harness does it (wrk -c16): pools, backend
	// connections, the handshake path.
	if err := openIdle(addr, cfg, 16, 4, func(c net.Conn) { c.Close() }); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("WARM")
	in := bufio.NewReader(os.Stdin)
	if _, err := in.ReadString('\n'); err != nil {
		return 0
	}
	var mu sync.Mutex
	var conns []net.Conn
	err := openIdle(addr, cfg, n, 16, func(c net.Conn) { mu.Lock(); conns = append(conns, c); mu.Unlock() })
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("READY", len(conns))
	if gap, err := time.ParseDuration(os.Getenv(idleGapEnv)); err == nil {
		dur, _ := time.ParseDuration(os.Getenv(idleDurEnv))
		if _, err := in.ReadString('\n'); err != nil {
			return 0
		}
		fmt.Println("DONE", pauseAndAsk(conns, gap, dur))
	}
	io.Copy(io.Discard, in) //nolint:errcheck // stdin closed: done
	for _, c := range conns {
		c.Close()
	}
	return 0
}

// pauseAndAsk sends a GET on every connection every gap (spread over the
// first gap) until dur passes, and returns how many were answered.
func pauseAndAsk(conns []net.Conn, gap, dur time.Duration) int64 {
	var done atomic.Int64
	end := time.Now().Add(dur)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			br := bufio.NewReader(c)
			time.Sleep(gap * time.Duration(i) / time.Duration(len(conns)))
			for time.Now().Before(end) {
				time.Sleep(gap)
				c.SetDeadline(time.Now().Add(10 * time.Second))                     //nolint:errcheck // a dead conn fails below
				io.WriteString(c, "GET /small HTTP/1.1\r\nHost: idle.test\r\n\r\n") //nolint:errcheck // the read fails
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					return
				}
				io.Copy(io.Discard, resp.Body) //nolint:errcheck // counted only when whole
				resp.Body.Close()
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	return done.Load()
}

// openIdle opens n connections, par at a time, each with one GET
// answered, and hands each to keep.
func openIdle(addr string, cfg *tls.Config, n, par int, keep func(net.Conn)) error {
	jobs := make(chan struct{})
	errc := make(chan error, par)
	var wg sync.WaitGroup
	for range par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				c, err := openOne(addr, cfg)
				if err != nil {
					errc <- err
					for range jobs {
					}
					return
				}
				keep(c)
			}
		}()
	}
	for range n {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

func openOne(addr string, cfg *tls.Config) (net.Conn, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))                     //nolint:errcheck // a dead conn fails below
	io.WriteString(c, "GET /small HTTP/1.1\r\nHost: idle.test\r\n\r\n") //nolint:errcheck // the response read fails
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{}) //nolint:errcheck
	return c, nil
}
