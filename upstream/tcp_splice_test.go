package upstream

import (
	"bufio"
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The splice path (tcp_splice_linux.go) against real loopback
// connections. On platforms without splice the same tests check the copy
// path, and wantSplice is false.

// wantSplice is whether a plain↔plain tunnel splices here.
const wantSplice = spliceSupported

// keystream is a reproducible stream of n pseudo-random bytes (AES-CTR,
// fast enough to push 64 MiB under the race detector).
type keystream struct {
	ctr cipher.Stream
	n   int64
}

func newKeystream(seed byte, n int64) *keystream {
	block, _ := aes.NewCipher(bytes.Repeat([]byte{seed}, 16))
	return &keystream{ctr: cipher.NewCTR(block, make([]byte, aes.BlockSize)), n: n}
}

func (k *keystream) Read(p []byte) (int, error) {
	if k.n == 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), k.n)]
	clear(p)
	k.ctr.XORKeyStream(p, p)
	k.n -= int64(len(p))
	return len(p), nil
}

// streamSum is the SHA-256 of keystream(seed, n).
func streamSum(seed byte, n int64) [32]byte {
	h := sha256.New()
	_, _ = io.Copy(h, newKeystream(seed, n))
	return [32]byte(h.Sum(nil))
}

// readSum reads r to EOF and returns the count and SHA-256.
func readSum(r io.Reader) (int64, [32]byte, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return n, [32]byte(h.Sum(nil)), err
}

// newWrappedFront is a plain front that hands wrap(accepted connection) to
// p.Serve.
func newWrappedFront(t *testing.T, p *TCPProxy, wrap func(net.Conn) net.Conn) *tcpFront {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &tcpFront{l: l, served: make(chan tcpServed, 16)}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				res, err := p.Serve(ctx, wrap(c))
				f.served <- tcpServed{res, err}
			})
		}
	})
	t.Cleanup(func() {
		_ = l.Close()
		cancel()
		wg.Wait()
	})
	return f
}

// aheadConn is a wrapper that read ahead past a header, as tlsedge's gate
// connection does: its Read returns ahead first.
type aheadConn struct {
	*net.TCPConn
	ahead []byte
}

func (c *aheadConn) Read(p []byte) (int, error) {
	if len(c.ahead) > 0 {
		n := copy(p, c.ahead)
		c.ahead = c.ahead[n:]
		return n, nil
	}
	return c.TCPConn.Read(p)
}

func (c *aheadConn) UnwrapTCP() (*net.TCPConn, []byte) { return c.TCPConn, c.ahead }

var _ TCPUnwrapper = (*aheadConn)(nil)

// opaqueConn hides the *net.TCPConn, as a wrapper without UnwrapTCP does.
type opaqueConn struct{ net.Conn }

func (c opaqueConn) CloseWrite() error { return c.Conn.(closeWriter).CloseWrite() }

// 64 MiB each way at once, through a spliced tunnel, arrive intact and
// counted.
func TestTCPSpliceLargeBothWays(t *testing.T) {
	const size = 64 << 20
	wantUp, wantDown := streamSum(1, size), streamSum(2, size)
	type got struct {
		n   int64
		sum [32]byte
		err error
	}
	atBackend := make(chan got, 1)
	be := newRawBackend(t, func(c net.Conn, br *bufio.Reader) {
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		sent := make(chan error, 1)
		go func() {
			_, err := io.Copy(c, newKeystream(2, size))
			if err == nil {
				err = c.(closeWriter).CloseWrite()
			}
			sent <- err
		}()
		n, sum, err := readSum(br)
		if serr := <-sent; err == nil {
			err = serr
		}
		atBackend <- got{n, sum, err}
	})
	p, _ := newTCPTestProxy(t, TCPConfig{}, BackendConfig{ID: "big", Addr: be.addr()})
	f := newTCPFront(t, t.Context(), p, "127.0.0.1:0", false)
	c := f.dial(t)
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))

	start := time.Now()
	sent := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, newKeystream(1, size))
		if err == nil {
			err = c.(closeWriter).CloseWrite()
		}
		sent <- err
	}()
	n, sum, err := readSum(c)
	if err != nil || n != size || sum != wantDown {
		t.Errorf("client read %d bytes (%v), sum match %v; want %d intact", n, err, sum == wantDown, size)
	}
	if err := <-sent; err != nil {
		t.Errorf("client write: %v", err)
	}
	b := <-atBackend
	if b.err != nil || b.n != size || b.sum != wantUp {
		t.Errorf("backend read %d bytes (%v), sum match %v; want %d intact", b.n, b.err, b.sum == wantUp, size)
	}
	t.Logf("2×64 MiB in %v", time.Since(start))
	s := f.result(t)
	if s.err != nil || s.res.End != TCPEndDone || s.res.Err != nil {
		t.Errorf("Serve: %v, end %v (%v); want done", s.err, s.res.End, s.res.Err)
	}
	if s.res.Received != size || s.res.Sent != size {
		t.Errorf("counted %d received, %d sent; want %d each", s.res.Received, s.res.Sent, size)
	}
	if s.res.spliced != wantSplice {
		t.Errorf("spliced %v, want %v", s.res.spliced, wantSplice)
	}
}

// Either side may finish sending first; the other direction goes on.
func TestTCPSpliceHalfClose(t *testing.T) {
	answer := bytes.Repeat([]byte("answer after EOF\n"), 64<<10) // 1.1 MiB
	late := bytes.Repeat([]byte("sent after the backend's FIN\n"), 32<<10)
	lateAtBackend := make(chan []byte, 1)
	be := newRawBackend(t, func(c net.Conn, br *bufio.Reader) {
		switch line, _ := br.ReadString('\n'); line {
		case "client first\n": // answers once the client is done
			if _, err := io.ReadAll(br); err == nil {
				_, _ = c.Write(answer)
			}
		case "backend first\n": // done at once, then listens
			_, _ = io.WriteString(c, "bye\n")
			_ = c.(closeWriter).CloseWrite()
			b, _ := io.ReadAll(br)
			lateAtBackend <- b
		}
	})
	p, _ := newTCPTestProxy(t, TCPConfig{}, BackendConfig{ID: "half", Addr: be.addr()})
	f := newTCPFront(t, t.Context(), p, "127.0.0.1:0", false)

	t.Run("client first", func(t *testing.T) {
		c := f.dial(t)
		if err := <-writeAndCloseWrite(c, []byte("client first\nmore\n")); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		if err != nil || !bytes.Equal(got, answer) {
			t.Fatalf("read %d bytes (%v), want the %d-byte answer after the half-close", len(got), err, len(answer))
		}
		s := f.result(t)
		if s.err != nil || s.res.End != TCPEndDone || s.res.Received != 18 || s.res.Sent != int64(len(answer)) || s.res.spliced != wantSplice {
			t.Errorf("Serve: %v, result %+v", s.err, s.res)
		}
	})
	t.Run("backend first", func(t *testing.T) {
		c := f.dial(t)
		if _, err := io.WriteString(c, "backend first\n"); err != nil {
			t.Fatal(err)
		}
		// EOF from the proxy while the client can still send.
		if got, err := io.ReadAll(c); err != nil || string(got) != "bye\n" {
			t.Fatalf("read %q, %v; want bye, then EOF", got, err)
		}
		if err := <-writeAndCloseWrite(c, late); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-lateAtBackend:
			if !bytes.Equal(got, late) {
				t.Errorf("backend got %d bytes after its FIN, want %d", len(got), len(late))
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the backend did not get the client's EOF")
		}
		s := f.result(t)
		if s.err != nil || s.res.End != TCPEndDone || s.res.Received != int64(14+len(late)) || s.res.Sent != 4 || s.res.spliced != wantSplice {
			t.Errorf("Serve: %v, result %+v", s.err, s.res)
		}
	})
}

// The idle timeout ends a silent spliced tunnel and spares one where a
// byte moves, either way, every fifth of it.
func TestTCPSpliceIdle(t *testing.T) {
	const idle = 300 * time.Millisecond
	const every, trickle = idle / 5, 4 * idle
	be := newRawBackend(t, func(c net.Conn, br *bufio.Reader) {
		mode, err := br.ReadByte()
		if err != nil {
			return
		}
		if mode == 'T' { // trickle to the client
			for start := time.Now(); time.Since(start) < trickle; time.Sleep(every) {
				if _, err := c.Write([]byte{'.'}); err != nil {
					return
				}
			}
			_, _ = c.Write([]byte{'!'})
		}
		_, _ = io.Copy(io.Discard, br) // until the proxy closes
	})
	p, _ := newTCPTestProxy(t, TCPConfig{IdleTimeout: idle}, BackendConfig{ID: "idle", Addr: be.addr()})
	f := newTCPFront(t, t.Context(), p, "127.0.0.1:0", false)

	// endsIdle waits for the proxy to close c and checks that it did so
	// about idle after last, for the idle timeout.
	endsIdle := func(t *testing.T, c net.Conn, last time.Time) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.Copy(io.Discard, c)
		waited := time.Since(last)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("not closed %v after the last byte", waited)
		}
		if waited < idle-20*time.Millisecond || waited > idle+idle/idleChecks+time.Second {
			t.Errorf("closed %v after the last byte, want about %v", waited, idle)
		}
		s := f.result(t)
		if s.err != nil || s.res.End != TCPEndIdle || s.res.spliced != wantSplice {
			t.Errorf("Serve: %v, end %v, spliced %v; want idle, %v", s.err, s.res.End, s.res.spliced, wantSplice)
		}
	}
	// open fails the test if the tunnel ended.
	open := func(t *testing.T) {
		t.Helper()
		select {
		case s := <-f.served:
			t.Fatalf("ended while bytes moved: %+v", s.res)
		default:
		}
	}

	t.Run("silent", func(t *testing.T) {
		c := f.dial(t)
		if _, err := c.Write([]byte{'S'}); err != nil {
			t.Fatal(err)
		}
		endsIdle(t, c, time.Now())
	})
	t.Run("trickle to backend", func(t *testing.T) {
		c := f.dial(t)
		if _, err := c.Write([]byte{'S'}); err != nil {
			t.Fatal(err)
		}
		var last time.Time
		for start := time.Now(); time.Since(start) < trickle; {
			time.Sleep(every)
			if _, err := c.Write([]byte{'.'}); err != nil {
				t.Fatalf("write after %v: %v", time.Since(start), err)
			}
			last = time.Now()
		}
		open(t)
		endsIdle(t, c, last)
	})
	t.Run("trickle to client", func(t *testing.T) {
		c := f.dial(t)
		if _, err := c.Write([]byte{'T'}); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		for {
			b, err := br.ReadByte()
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if b == '!' {
				break
			}
		}
		last := time.Now()
		open(t)
		endsIdle(t, c, last)
	})
}

// A backend reset, whether the proxy is reading from it or writing to
// it, ends the tunnel blamed on the backend.
func TestTCPSpliceBackendReset(t *testing.T) {
	be := newRawBackend(t, func(c net.Conn, br *bufio.Reader) {
		line, _ := br.ReadString('\n')
		if line == "then read a lot\n" {
			_, _ = io.CopyN(io.Discard, br, 1<<20)
		}
		_ = c.(*net.TCPConn).SetLinger(0)
		_ = c.Close() // a RST
	})
	for _, tc := range []struct {
		name  string
		first string
		flood bool // the client keeps sending: the proxy is writing
	}{
		{"while idle", "reset please\n", false},
		{"while written to", "then read a lot\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := newTCPTestProxy(t, TCPConfig{}, BackendConfig{ID: "b", Addr: be.addr()})
			f := newTCPFront(t, t.Context(), p, "127.0.0.1:0", false)
			c := f.dial(t)
			if _, err := io.WriteString(c, tc.first); err != nil {
				t.Fatal(err)
			}
			if tc.flood {
				go func() { _, _ = io.Copy(c, newKeystream(3, 1<<30)) }() // until closed
			}
			s := f.result(t)
			if s.err != nil || s.res.End != TCPEndBackendError ||
				!(errors.Is(s.res.Err, syscall.ECONNRESET) || errors.Is(s.res.Err, syscall.EPIPE)) {
				t.Errorf("Serve: %v, end %v (%v); want backend_error with ECONNRESET or EPIPE", s.err, s.res.End, s.res.Err)
			}
			if s.res.spliced != wantSplice {
				t.Errorf("spliced %v, want %v", s.res.spliced, wantSplice)
			}
			t.Logf("ended by %v", s.res.Err)
			if !waitClosed(c, 2*time.Second) {
				t.Error("the client connection was not closed")
			}
		})
	}
}

// Only plain TCP on both sides splices; TLS on either side, a wrapper
// that hides its connection or a proxy with splicing off copy. Bytes a
// wrapper read ahead go first.
func TestTCPSplicePathChosen(t *testing.T) {
	ca := newTCPCA(t, "backend CA")
	plain := newRawBackend(t, echo)
	encrypted := newRawBackend(t, overTLS(ca.issue(t, "backend.test"), echo))
	backendTLS := &tls.Config{RootCAs: ca.pool, ServerName: "backend.test"}
	for _, tc := range []struct {
		name      string
		frontTLS  bool
		wrap      func(net.Conn) net.Conn // nil: newTCPFront
		backend   *rawBackend
		tls       *tls.Config
		noSplice  bool
		wantAhead string
		want      bool
	}{
		{name: "plain to plain", backend: plain, want: wantSplice},
		{name: "tls front", frontTLS: true, backend: plain},
		{name: "tls backend", backend: encrypted, tls: backendTLS},
		{name: "tls both", frontTLS: true, backend: encrypted, tls: backendTLS},
		{name: "unwrapper with bytes ahead", backend: plain, want: wantSplice, wantAhead: "AHEAD:",
			wrap: func(c net.Conn) net.Conn { return &aheadConn{c.(*net.TCPConn), []byte("AHEAD:")} }},
		{name: "unwrapper copying", backend: plain, noSplice: true, wantAhead: "AHEAD:",
			wrap: func(c net.Conn) net.Conn { return &aheadConn{c.(*net.TCPConn), []byte("AHEAD:")} }},
		{name: "opaque wrapper", backend: plain,
			wrap: func(c net.Conn) net.Conn { return opaqueConn{c} }},
		{name: "splicing off", backend: plain, noSplice: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := newTCPTestProxy(t, TCPConfig{TLS: tc.tls}, BackendConfig{ID: "echo", Addr: tc.backend.addr()})
			p.splice = !tc.noSplice
			var f *tcpFront
			if tc.wrap != nil {
				f = newWrappedFront(t, p, tc.wrap)
			} else {
				f = newTCPFront(t, t.Context(), p, "127.0.0.1:0", tc.frontTLS)
			}
			c := f.dial(t)
			data := randomBytes(t, 256<<10)
			sent := writeAndCloseWrite(c, data)
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-sent; err != nil {
				t.Fatal(err)
			}
			if want := append([]byte(tc.wantAhead), data...); !bytes.Equal(got, want) {
				t.Fatalf("echoed %d bytes, want %d (%d ahead, then the data)", len(got), len(want), len(tc.wantAhead))
			}
			s := f.result(t)
			n := int64(len(tc.wantAhead) + len(data))
			if s.err != nil || s.res.End != TCPEndDone || s.res.Received != n || s.res.Sent != n {
				t.Errorf("Serve: %v, result %+v; want done, %d each way", s.err, s.res, n)
			}
			if s.res.spliced != tc.want {
				t.Errorf("spliced %v, want %v", s.res.spliced, tc.want)
			}
		})
	}
}
