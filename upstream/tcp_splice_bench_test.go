//go:build unix

package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkTCPTunnel pushes 256 MiB one way through a plain↔plain tunnel
// per op: copy (pooled buffers) or splice. The client and the backend
// run in a child process (the test binary again, tcpEndpointsEnv), so
// cpu-ms/GiB, getrusage user+sys of this process, is the proxy's alone.
// direct is the client writing to the backend without a proxy: the
// throughput ceiling of the two endpoints on this machine.
func BenchmarkTCPTunnel(b *testing.B) {
	const size = 256 << 20
	ep := startTCPEndpoints(b)
	pool, err := NewPool(PoolConfig{Backends: []BackendConfig{{ID: "sink", Addr: ep.backend}}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	for _, bc := range []struct {
		name     string
		direct   bool
		splice   bool
		pipeSize int
	}{
		{name: "direct", direct: true},
		{name: "copy"},
		{name: "splice", splice: true, pipeSize: splicePipeSize},
		{name: "splice-64K", splice: true}, // the kernel's default, never grown
		{name: "splice-1M", splice: true, pipeSize: 1 << 20},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if bc.splice && !spliceSupported {
				b.Skip("no splice on this platform")
			}
			addr := ep.backend
			if !bc.direct {
				p, err := NewTCPProxy(TCPConfig{Pool: pool})
				if err != nil {
					b.Fatal(err)
				}
				p.splice, p.pipeSize = bc.splice, bc.pipeSize
				addr = benchFront(b, p)
			}
			b.SetBytes(size)
			cpu0 := cpuTime(b)
			for b.Loop() {
				ep.push(b, addr, size)
			}
			gib := float64(b.N) * size / (1 << 30)
			b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/1000/gib, "cpu-ms/GiB")
		})
	}
}

// TestMain: with tcpEndpointsEnv set the test binary is the endpoints
// process of BenchmarkTCPTunnel, not a test run.
func TestMain(m *testing.M) {
	if os.Getenv(tcpEndpointsEnv) != "" {
		os.Exit(runTCPEndpoints())
	}
	os.Exit(m.Run())
}

const tcpEndpointsEnv = "TLSEDGE_TCP_BENCH_ENDPOINTS"

// tcpEndpoints drives the child process.
type tcpEndpoints struct {
	backend string
	in      io.Writer
	out     *bufio.Reader
}

func startTCPEndpoints(b *testing.B) *tcpEndpoints {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), tcpEndpointsEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = in.Close(); _ = cmd.Wait() }) // EOF ends the child
	ep := &tcpEndpoints{in: in, out: bufio.NewReader(out)}
	ep.backend = ep.line(b)
	return ep
}

func (ep *tcpEndpoints) line(b *testing.B) string {
	l, err := ep.out.ReadString('\n')
	if err != nil {
		b.Fatalf("endpoints process: %v", err)
	}
	return strings.TrimSpace(l)
}

// push has the child send size bytes through addr and waits until the
// backend got them and the connection is closed.
func (ep *tcpEndpoints) push(b *testing.B, addr string, size int64) {
	fmt.Fprintf(ep.in, "%s %d\n", addr, size)
	if got := ep.line(b); got != strconv.FormatInt(size, 10) {
		b.Fatalf("the backend got %s, want %d bytes", got, size)
	}
}

// runTCPEndpoints runs a backend that reads each connection to EOF and
// prints its address; then, for each line "ADDR SIZE" on stdin, it
// connects to ADDR, sends SIZE bytes, half-closes, waits for the other
// end's FIN and prints what the backend read (or the error).
func runTCPEndpoints() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	got := make(chan string, 1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 256<<10)
				var n int64
				for {
					m, err := c.Read(buf)
					n += int64(m)
					if errors.Is(err, io.EOF) {
						got <- strconv.FormatInt(n, 10)
						return
					} else if err != nil {
						got <- err.Error()
						return
					}
				}
			}()
		}
	}()
	fmt.Println(l.Addr())
	buf := make([]byte, 1<<20)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		addr, size, _ := strings.Cut(sc.Text(), " ")
		n, _ := strconv.Atoi(size)
		if err := pushBytes(addr, n, buf); err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(<-got)
	}
	return 0
}

func pushBytes(addr string, n int, buf []byte) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	for sent := 0; sent < n; sent += len(buf) {
		if _, err := c.Write(buf[:min(len(buf), n-sent)]); err != nil {
			return err
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, c) // the tunnel is over before the next op
	return err
}

// benchFront accepts plain connections and serves them with p.
func benchFront(b *testing.B, p *TCPProxy) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { _, _ = p.Serve(ctx, c) })
		}
	})
	b.Cleanup(func() { _ = l.Close(); cancel(); wg.Wait() })
	return l.Addr().String()
}

// cpuTime is the process's user+sys time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
