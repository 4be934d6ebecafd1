package upstream

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// tcpCA is a private certificate authority, made with crypto/x509.
type tcpCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTCPCA(t *testing.T, name string) *tcpCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tcpCA{cert: cert, key: key, pool: pool}
}

// issue returns a server certificate for name, 127.0.0.1 and ::1.
func (ca *tcpCA) issue(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tcpServed is what one Serve call of a front returned.
type tcpServed struct {
	res TCPResult
	err error
}

// tcpFront plays the listener: it accepts on a loopback address,
// terminates TLS with a certificate of its own CA (unless plain), and hands
// each connection to p.Serve. Cleanup cancels the Serve calls still
// running and waits for them.
type tcpFront struct {
	l      net.Listener
	ca     *tcpCA // nil: plain TCP
	served chan tcpServed
}

func newTCPFront(t *testing.T, ctx context.Context, p *TCPProxy, addr string, useTLS bool) *tcpFront {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	f := &tcpFront{l: l, served: make(chan tcpServed, 16)}
	var conf *tls.Config
	if useTLS {
		f.ca = newTCPCA(t, "front CA")
		conf = &tls.Config{Certificates: []tls.Certificate{f.ca.issue(t, "front.test")}}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for { // ends when Cleanup closes the listener
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				if conf != nil {
					tc := tls.Server(c, conf)
					hctx, hcancel := context.WithTimeout(ctx, 5*time.Second)
					defer hcancel()
					if err := tc.HandshakeContext(hctx); err != nil {
						_ = c.Close()
						return
					}
					c = tc
				}
				res, err := p.Serve(ctx, c)
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

// dial connects a client to the front, over TLS if the front terminates it.
func (f *tcpFront) dial(t *testing.T) net.Conn {
	t.Helper()
	var c net.Conn
	var err error
	if f.ca != nil {
		c, err = tls.Dial("tcp", f.l.Addr().String(), &tls.Config{RootCAs: f.ca.pool})
	} else {
		c, err = net.Dial("tcp", f.l.Addr().String())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// result waits for the next Serve call to return.
func (f *tcpFront) result(t *testing.T) tcpServed {
	t.Helper()
	select {
	case s := <-f.served:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
		return tcpServed{}
	}
}

// newTCPTestProxy builds a pool over backends and a TCP proxy logging into
// a test hook; cfg's Pool and Log are filled in.
func newTCPTestProxy(t *testing.T, cfg TCPConfig, backends ...BackendConfig) (*TCPProxy, *logtest.Hook) {
	t.Helper()
	pool, err := NewPool(PoolConfig{Backends: backends}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	logger, hook := logtest.NewNullLogger()
	cfg.Pool = pool
	cfg.Log = logger.WithField("app", "tcp-test")
	p, err := NewTCPProxy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p, hook
}

// tcpBufConn reads through br, which may hold bytes already read from the
// connection (a PROXY header's reader).
type tcpBufConn struct {
	net.Conn
	br *bufio.Reader
}

func (c *tcpBufConn) Read(p []byte) (int, error) { return c.br.Read(p) }

// overTLS runs serve on a TLS server connection with cert, made over c
// and whatever br already holds.
func overTLS(cert tls.Certificate, serve func(c net.Conn, br *bufio.Reader)) func(net.Conn, *bufio.Reader) {
	return func(c net.Conn, br *bufio.Reader) {
		tc := tls.Server(&tcpBufConn{c, br}, &tls.Config{Certificates: []tls.Certificate{cert}})
		if err := tc.Handshake(); err != nil {
			return
		}
		defer tc.Close()
		serve(tc, bufio.NewReader(tc))
	}
}

// echo copies everything back and half-closes when the client has.
func echo(c net.Conn, br *bufio.Reader) {
	if _, err := io.Copy(c, br); err == nil {
		_ = closeWrite(c)
	}
}

// writeAndCloseWrite sends data and half-closes c in the background; the
// returned channel gives the error.
func writeAndCloseWrite(c net.Conn, data []byte) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.(closeWriter).CloseWrite()
		}
		done <- err
	}()
	return done
}

// fronts are the two ways a client reaches the proxy.
var fronts = []struct {
	name string
	tls  bool
}{{"plain front", false}, {"tls front", true}}

func TestTCPEcho(t *testing.T) {
	ca := newTCPCA(t, "backend CA")
	plain := newRawBackend(t, echo)
	encrypted := newRawBackend(t, overTLS(ca.issue(t, "backend.test"), echo))
	for _, fr := range fronts {
		for _, be := range []struct {
			name string
			addr string
			tls  *tls.Config
		}{
			{"plain backend", plain.addr(), nil},
			{"tls backend", encrypted.addr(), &tls.Config{RootCAs: ca.pool, ServerName: "backend.test"}},
		} {
			t.Run(fr.name+"/"+be.name, func(t *testing.T) {
				p, _ := newTCPTestProxy(t, TCPConfig{TLS: be.tls}, BackendConfig{ID: "echo", Addr: be.addr})
				f := newTCPFront(t, t.Context(), p, "127.0.0.1:0", fr.tls)
				c := f.dial(t)

				data := randomBytes(t, 1<<20)
				sent := writeAndCloseWrite(c, data)
				got, err := io.ReadAll(c)
				if err != nil {
					t.Fatal(err)
				}
				if err := <-sent; err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("got %d bytes back, want the %d sent", len(got), len(data))
				}
				s := f.result(t)
				if s.err != nil {
					t.Fatal(s.err)
				}
				r := s.res
				if r.Backend.ID() != "echo" || r.Attempts != 1 || r.End != TCPEndDone || r.Err != nil {
					t.Errorf("result %+v, want backend echo, 1 attempt, done", r)
				}
				if r.Received != 1<<20 || r.Sent != 1<<20 {
					t.Errorf("counted %d received, %d sent; want 1 MiB each", r.Received, r.Sent)
				}
				if n := r.Backend.InFlight(); n != 0 {
					t.Errorf("in flight %d after the connection, want 0", n)
				}
			})
		}
	}
}

// A line protocol where the server answers and closes, and the client
// only closes after reading the answer.
func TestTCPLineProtocol(t *testing.T) {
	be := newRawBackend(t, func(c net.Conn, br *bufio.Reader) {
		if line, err := br.ReadString('\n'); err == nil && line == "HELLO\n" {
			_, _ = io.WriteString(c, "+OK hello, client\n")
		}
	})
	for _, fr := range fronts {
		t.Run(fr.name, func(t *testing.T) {
			p, _ := newTCPTestProxy(t, TCPConfig{}, BackendConfig{ID: "line", Addr: be.addr()})
			f := newTCPFront(t, t.Context(), p, "127.0.0.1:0", fr.tls)
			c := f.dial(t)
			if _, err := io.WriteString(c, "HELLO\n"); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(c)
			if err != nil || string(got) != "+OK hello, client\n" {
				t.Fatalf("read %q, %v; want the reply, then EOF", got, err)
			}
			if n := p.pool.Backend("line").InFlight(); n != 1 {
				t.Errorf("in flight %d while the client is connected, want 1", n)
			}
			_ = c.Close()
			s := f.result(t)
			if s.err != nil || s.res.End != TCPEndDone {
				t.Fatalf("Serve: %v, end %v", s.err, s.res.End)
			}
			if s.res.Received != 6 || s.res.Sent != int64(len(got)) {
				t.Errorf("counted %d received, %d sent; want 6, %d", s.res.Received, s.res.Sent, len(got))
			}
		})
	}
}

// The client half-closes after its request; the backend reads to EOF and
// only then sends a long answer, which arrives whole.
func TestTCPHalfClose(t *testing.T) {
	be := newRawBackend(t, func(c net.Conn, br *bufio.Reader) {
		req, err := io.ReadAll(br) // returns only at the client's EOF
		if err != nil {
			return
		}
		sum := sha256.Sum256(req)
		fmt.Fprintf(c, "read %d bytes to EOF, sha256 %x\n", len(req), sum)
		_, _ = c.Write(bytes.Repeat([]byte("answer after EOF\n"), 32<<10))
	})
	want := func(req []byte) string {
		return fmt.Sprintf("read %d bytes to EOF, sha256 %x\n", len(req), sha256.Sum256(req)) +
			strings.Repeat("answer after EOF\n", 32<<10)
	}
	for _, fr := range fronts {
		t.Run(fr.name, func(t *testing.T) {
			p, _ := newTCPTestProxy(t, TCPConfig{}, BackendConfig{ID: "half", Addr: be.addr()})
			f := newTCPFront(t, t.Context(), p, "127.0.0.1:0", fr.tls)
			c := f.dial(t)
			req := randomBytes(t, 100<<10)
			sent := writeAndCloseWrite(c, req)
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-sent; err != nil {
				t.Fatal(err)
			}
			if w := want(req); string(got) != w {
				t.Fatalf("got %d bytes starting %q, want %d bytes starting %q",
					len(got), got[:min(len(got), 60)], len(w), w[:60])
			}
			s := f.result(t)
			if s.err != nil || s.res.End != TCPEndDone || s.res.Received != int64(len(req)) || s.res.Sent != int64(len(got)) {
				t.Errorf("Serve: %v, result %+v", s.err, s.res)
			}
		})
	}
}

func TestTCPProxyProtocol(t *testing.T) {
	ca := newTCPCA(t, "backend CA")
	cert := ca.issue(t, "backend.test")
	// The backend reads the header, then (for TLS) handshakes, tells the
	// addresses and echoes one line.
	reportAddrs := func(useTLS bool) func(net.Conn, *bufio.Reader) {
		return func(c net.Conn, br *bufio.Reader) {
			src, dst, err := ReadProxyHeader(br)
			if err != nil {
				fmt.Fprintf(c, "ERR %v\n", err)
				return
			}
			report := func(c net.Conn, br *bufio.Reader) {
				fmt.Fprintf(c, "%v %v\n", src, dst)
				line, _ := br.ReadString('\n')
				_, _ = io.WriteString(c, line)
			}
			if useTLS {
				overTLS(cert, report)(c, br)
			} else {
				report(c, br)
			}
		}
	}
	plain := newRawBackend(t, reportAddrs(false))
	encrypted := newRawBackend(t, reportAddrs(true))

	for _, tc := range []struct {
		name    string
		version int
		front   string
		be      *rawBackend
		tls     *tls.Config
	}{
		{"v1", 1, "127.0.0.1:0", plain, nil},
		{"v2", 2, "127.0.0.1:0", plain, nil},
		{"v1 before TLS", 1, "127.0.0.1:0", encrypted, &tls.Config{RootCAs: ca.pool, ServerName: "backend.test"}},
		{"v2 before TLS", 2, "127.0.0.1:0", encrypted, &tls.Config{RootCAs: ca.pool, ServerName: "backend.test"}},
		{"v1 ipv6 client", 1, "[::1]:0", plain, nil},
		{"v2 ipv6 client", 2, "[::1]:0", plain, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := newTCPTestProxy(t, TCPConfig{ProxyProtocol: tc.version, TLS: tc.tls},
				BackendConfig{ID: "pp", Addr: tc.be.addr()})
			f := newTCPFront(t, t.Context(), p, tc.front, true)
			c := f.dial(t)
			if _, err := io.WriteString(c, "ping\n"); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			addrs, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			// The client's own address is what the backend must see as src.
			if want := c.LocalAddr().String() + " " + c.RemoteAddr().String() + "\n"; addrs != want {
				t.Errorf("backend saw %q, want %q", addrs, want)
			}
			if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
				t.Errorf("echo %q, %v; the data after the header must arrive intact", line, err)
			}
			_ = c.Close()
			if s := f.result(t); s.err != nil || s.res.Received != 5 {
				t.Errorf("Serve: %v, received %d (the header must not count)", s.err, s.res.Received)
			}
		})
	}
}

func TestTCPDeadBackendSkipped(t *testing.T) {
	clock := newFakeClock()
	live := newRawBackend(t, echo)
	dead := refusedAddr(t)
	p, hook := newTCPTestProxy(t, TCPConfig{Now: clock.Now},
		BackendConfig{ID: "dead", Addr: dead}, BackendConfig{ID: "live", Addr: live.addr()})
	f := newTCPFront(t, t.Context(), p, "127.0.0.1:0", true)

	for i, wantAttempts := range []int{2, 1, 1} { // then dead is in backoff
		c := f.dial(t)
		if _, err := io.WriteString(c, "ping\n"); err != nil {
			t.Fatal(err)
		}
		if got, err := bufio.NewReader(c).ReadString('\n'); err != nil || got != "ping\n" {
			t.Fatalf("connection %d: read %q, %v", i, got, err)
		}
		_ = c.Close()
		s := f.result(t)
		if s.err != nil || s.res.Backend.ID() != "live" || s.res.Attempts != wantAttempts {
			t.Fatalf("connection %d: %v, backend %v after %d attempts; want live after %d",
				i, s.err, s.res.Backend.ID(), s.res.Attempts, wantAttempts)
		}
	}
	if got := stateEntries(hook); len(got) != 1 || got[0] != "dead up->down" {
		t.Errorf("state lines %q, want exactly [dead up->down]", got)
	}
	d := p.pool.Backend("dead")
	if d.Up(clock.Now()) || d.InFlight() != 0 {
		t.Errorf("dead: up %v, in flight %d; want down, 0", d.Up(clock.Now()), d.InFlight())
	}

	t.Run("all down", func(t *testing.T) {
		p, _ := newTCPTestProxy(t, TCPConfig{Now: clock.Now}, BackendConfig{ID: "dead", Addr: dead})
		f := newTCPFront(t, t.Context(), p, "127.0.0.1:0", false)
		for _, want := range []error{syscall.ECONNREFUSED, ErrNoBackend} {
			c := f.dial(t)
			s := f.result(t)
			if !errors.Is(s.err, want) || s.res.Backend != nil {
				t.Errorf("Serve: %v, backend %v; want %v and none", s.err, s.res.Backend, want)
			}
			var de *DialError
			if want == syscall.ECONNREFUSED && !errors.As(s.err, &de) {
				t.Errorf("Serve: %T, want a *DialError", s.err)
			}
			if !waitClosed(c, 2*time.Second) {
				t.Error("the client connection was not closed")
			}
		}
	})
}

func TestTCPReencrypt(t *testing.T) {
	ca := newTCPCA(t, "tlsedge test backend CA")
	other := newTCPCA(t, "someone else's CA")
	answer := func(id string) func(net.Conn, *bufio.Reader) {
		return func(c net.Conn, br *bufio.Reader) {
			line, _ := br.ReadString('\n')
			_, _ = io.WriteString(c, id+" over TLS: "+line)
		}
	}
	good := BackendConfig{ID: "good", Addr: newRawBackend(t, overTLS(ca.issue(t, "backend.test"), answer("good"))).addr()}
	bad := BackendConfig{ID: "bad", Addr: newRawBackend(t, overTLS(other.issue(t, "backend.test"), answer("bad"))).addr()}
	trusted := &tls.Config{RootCAs: ca.pool, ServerName: "backend.test"}

	for _, tc := range []struct {
		name         string
		tls          *tls.Config
		backends     []BackendConfig
		wantAttempts int
		wantLog      []string // backends whose handshake failure is logged
	}{
		{"trusted CA", trusted, []BackendConfig{good}, 1, nil},
		{"ServerName from the address", &tls.Config{RootCAs: ca.pool}, []BackendConfig{good}, 1, nil},
		{"wrong CA then next backend", trusted, []BackendConfig{bad, good}, 2, []string{"bad"}},
		{"wrong CA only", trusted, []BackendConfig{bad}, 1, []string{"bad"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, hook := newTCPTestProxy(t, TCPConfig{TLS: tc.tls}, tc.backends...)
			f := newTCPFront(t, t.Context(), p, "127.0.0.1:0", true)
			c := f.dial(t)
			_, _ = io.WriteString(c, "HELLO\n")
			got, _ := io.ReadAll(c)
			_ = c.Close()
			s := f.result(t)

			if s.res.Attempts != tc.wantAttempts {
				t.Errorf("%d attempts, want %d", s.res.Attempts, tc.wantAttempts)
			}
			if tc.backends[len(tc.backends)-1].ID == "good" {
				if s.err != nil || string(got) != "good over TLS: HELLO\n" {
					t.Errorf("Serve: %v; client read %q", s.err, got)
				}
			} else {
				var ve *tls.CertificateVerificationError
				var de *DialError
				if !errors.As(s.err, &ve) || !errors.As(s.err, &de) || len(got) != 0 {
					t.Errorf("Serve: %v (%T), client read %q; want a *DialError with the verification error and nothing", s.err, s.err, got)
				}
			}

			var logged []string
			for _, e := range hook.AllEntries() {
				if e.Level != logrus.ErrorLevel {
					continue
				}
				reason, _ := e.Data["reason"].(string)
				if !strings.Contains(reason, "x509: certificate signed by unknown authority") ||
					!strings.Contains(e.Message, "backend bad") || !strings.Contains(e.Message, "TLS handshake failed") {
					t.Errorf("error line %q, reason %q: want the backend and the x509 reason", e.Message, reason)
				}
				logged = append(logged, fmt.Sprint(e.Data["backend"]))
			}
			if fmt.Sprint(logged) != fmt.Sprint(tc.wantLog) {
				t.Errorf("handshake failures logged for %v, want %v", logged, tc.wantLog)
			}
			if tc.wantLog != nil {
				if got := stateEntries(hook); fmt.Sprint(got) != "[bad up->down]" {
					t.Errorf("state lines %q, want [bad up->down]", got)
				}
			}
		})
	}
}

func TestTCPIdleTimeout(t *testing.T) {
	const idle = 200 * time.Millisecond
	backendDone := make(chan struct{}, 1)
	be := newRawBackend(t, func(c net.Conn, br *bufio.Reader) {
		_, _ = io.Copy(c, br) // ends when the proxy closes the connection
		backendDone <- struct{}{}
	})
	p, _ := newTCPTestProxy(t, TCPConfig{IdleTimeout: idle}, BackendConfig{ID: "quiet", Addr: be.addr()})
	f := newTCPFront(t, t.Context(), p, "127.0.0.1:0", true)
	c := f.dial(t)

	// Traffic every 60 ms keeps the connection open well past the timeout.
	buf := make([]byte, 1)
	start := time.Now()
	var quiet time.Time // the last byte
	for {
		if _, err := c.Write([]byte{'x'}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("closed after %v of steady traffic: %v", time.Since(start), err)
		}
		if quiet = time.Now(); quiet.Sub(start) > 3*idle {
			break
		}
		time.Sleep(60 * time.Millisecond)
	}

	// Silence closes it: the client's read ends, and not by its deadline.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(buf)
	waited := time.Since(quiet)
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("read returned %v after %v; want the connection closed", err, waited)
	}
	// Never early; late by at most a check interval plus scheduling.
	if waited < idle-20*time.Millisecond || waited > idle+idle/idleChecks+time.Second {
		t.Errorf("closed %v after the last byte, want about %v", waited, idle)
	}
	select {
	case <-backendDone:
	case <-time.After(2 * time.Second):
		t.Error("the backend connection was not closed")
	}
	if s := f.result(t); s.err != nil || s.res.End != TCPEndIdle {
		t.Errorf("Serve: %v, end %v; want idle", s.err, s.res.End)
	}
}

func TestTCPContextCancel(t *testing.T) {
	backendDone := make(chan struct{}, 1)
	be := newRawBackend(t, func(c net.Conn, br *bufio.Reader) {
		_, _ = io.Copy(c, br)
		backendDone <- struct{}{}
	})
	p, _ := newTCPTestProxy(t, TCPConfig{}, BackendConfig{ID: "b", Addr: be.addr()})
	ctx, cancel := context.WithCancel(t.Context())
	f := newTCPFront(t, ctx, p, "127.0.0.1:0", true)
	c := f.dial(t)
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		t.Fatal(err)
	}
	if got, err := bufio.NewReader(c).ReadString('\n'); err != nil || got != "ping\n" {
		t.Fatalf("read %q, %v", got, err)
	}

	cancel()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("client read %v after cancel; want the connection closed", err)
	}
	select {
	case <-backendDone:
	case <-time.After(2 * time.Second):
		t.Error("the backend connection was not closed")
	}
	s := f.result(t)
	if s.err != nil || s.res.End != TCPEndCanceled {
		t.Errorf("Serve: %v, end %v; want canceled", s.err, s.res.End)
	}
	if n := p.pool.Backend("b").InFlight(); n != 0 {
		t.Errorf("in flight %d, want 0", n)
	}
}

// A reset on either side ends the connection at once, blamed on that side.
func TestTCPResetEnds(t *testing.T) {
	reset := func(c net.Conn) {
		_ = c.(*net.TCPConn).SetLinger(0)
		_ = c.Close()
	}
	backendDone := make(chan struct{}, 1)
	be := newRawBackend(t, func(c net.Conn, br *bufio.Reader) {
		line, _ := br.ReadString('\n')
		if line == "reset please\n" {
			reset(c)
		} else {
			_, _ = io.Copy(io.Discard, br)
		}
		backendDone <- struct{}{}
	})
	for _, tc := range []struct {
		name string
		do   func(c net.Conn)
		want TCPEnd
	}{
		{"backend", func(c net.Conn) { _, _ = io.WriteString(c, "reset please\n") }, TCPEndBackendError},
		{"client", func(c net.Conn) { _, _ = io.WriteString(c, "hello\n"); time.Sleep(50 * time.Millisecond); reset(c) }, TCPEndClientError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := newTCPTestProxy(t, TCPConfig{}, BackendConfig{ID: "b", Addr: be.addr()})
			f := newTCPFront(t, t.Context(), p, "127.0.0.1:0", false)
			c := f.dial(t)
			tc.do(c)
			s := f.result(t)
			if s.err != nil || s.res.End != tc.want || !errors.Is(s.res.Err, syscall.ECONNRESET) {
				t.Errorf("Serve: %v, end %v (%v); want %v with ECONNRESET", s.err, s.res.End, s.res.Err, tc.want)
			}
			select {
			case <-backendDone:
			case <-time.After(2 * time.Second):
				t.Error("the backend connection was not closed")
			}
			if tc.want == TCPEndBackendError && !waitClosed(c, 2*time.Second) {
				t.Error("the client connection was not closed")
			}
		})
	}
}

func TestNewTCPProxy(t *testing.T) {
	pool, err := NewPool(PoolConfig{Backends: []BackendConfig{{Addr: "127.0.0.1:1"}, {Addr: "127.0.0.1:2"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	for _, tc := range []struct {
		name string
		cfg  TCPConfig
	}{
		{"no pool", TCPConfig{}},
		{"negative dial timeout", TCPConfig{Pool: pool, DialTimeout: -1}},
		{"negative attempts", TCPConfig{Pool: pool, MaxAttempts: -1}},
		{"PROXY v3", TCPConfig{Pool: pool, ProxyProtocol: 3}},
		{"PROXY -1", TCPConfig{Pool: pool, ProxyProtocol: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewTCPProxy(tc.cfg); err == nil {
				t.Error("accepted")
			}
		})
	}

	p, err := NewTCPProxy(TCPConfig{Pool: pool, TLS: &tls.Config{}})
	if err != nil {
		t.Fatal(err)
	}
	if p.dialTimeout != DefaultDialTimeout || p.idle != DefaultTCPIdleTimeout || p.maxAttempts != 2 {
		t.Errorf("defaults: dial %v, idle %v, attempts %d", p.dialTimeout, p.idle, p.maxAttempts)
	}
	if sn := p.tls[pool.Backends()[1]].ServerName; sn != "127.0.0.1" {
		t.Errorf("ServerName %q, want the backend's host", sn)
	}
	p, err = NewTCPProxy(TCPConfig{Pool: pool, IdleTimeout: -1, MaxAttempts: 5})
	if err != nil {
		t.Fatal(err)
	}
	if p.idle != 0 || p.maxAttempts != 2 || p.tls != nil {
		t.Errorf("idle %v (want 0: never), attempts %d (want 2), tls %v", p.idle, p.maxAttempts, p.tls)
	}
	if got := fmt.Sprint(TCPEndDone, TCPEndIdle, TCPEndCanceled, TCPEndClientError, TCPEndBackendError, TCPEnd(9)); got != "done idle canceled client_error backend_error TCPEnd(9)" {
		t.Errorf("TCPEnd names %q", got)
	}
}
