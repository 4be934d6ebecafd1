package tlsedge

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/upstream"
)

// tcpEcho is a TCP backend: with proxyProto it first reads a PROXY header
// and prefixes its answer with the client address it announced; then it
// echoes every line as "NAME: line" and, at EOF, says "NAME: bye" and
// closes (so a half-closed client still gets an answer).
func tcpEcho(t *testing.T, name string, proxyProto bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveConns(t, ln, func(c net.Conn) {
		br := bufio.NewReader(c)
		if proxyProto {
			src, _, err := upstream.ReadProxyHeader(br)
			if err != nil {
				io.WriteString(c, "bad PROXY header: "+err.Error()+"\n")
				return
			}
			io.WriteString(c, name+": client "+src.String()+"\n")
		}
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				io.WriteString(c, name+": bye\n")
				return
			}
			io.WriteString(c, name+": "+line)
		}
	})
	return ln.Addr().String()
}

// serveConns accepts on ln until the test ends and runs serve on each
// connection, which it closes afterwards.
func serveConns(t *testing.T, ln net.Listener, serve func(net.Conn)) {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TCP mode: TLS terminated with tlsedge's certificates, two services on
// one listener routed by SNI, a PROXY v2 header to one backend, half-close
// carried through, a dead backend skipped.
func TestTCPModeSNIRouting(t *testing.T) {
	db := tcpEcho(t, "db", true)
	cache := tcpEcho(t, "cache", false)
	dead := freeAddr(t)
	listen := freeAddr(t)
	cfg := &config.Config{
		Apps: []config.App{{Hosts: []string{"www.example.com"}, Backends: []config.Backend{{Addr: cache}}}},
		TCP: []config.TCPService{
			{Listen: listen, Hosts: []string{"db.example.com"}, Backends: []config.Backend{{Addr: dead}, {Addr: db}}, ProxyProtocol: 2},
			{Listen: listen, Hosts: []string{"cache.example.com"}, Backends: []config.Backend{{Addr: cache}}},
		},
	}
	g := startGateway(t, cfg)
	addr := g.srv.TCPAddrs()[0].String()
	talk := func(sni string) (string, *tls.Conn) {
		t.Helper()
		c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: sni, RootCAs: g.roots})
		if err != nil {
			t.Fatalf("TLS to %s: %v", sni, err)
		}
		io.WriteString(c, "hello\n")
		c.CloseWrite() // half-close: the backend still answers
		c.SetDeadline(time.Now().Add(10 * time.Second))
		out, _ := io.ReadAll(c)
		return string(out), c
	}
	out, c := talk("db.example.com")
	want := "db: client " + c.LocalAddr().String() + "\ndb: hello\ndb: bye\n"
	if out != want {
		t.Errorf("db service: %q, want %q", out, want)
	}
	if out, _ := talk("cache.example.com"); out != "cache: hello\ncache: bye\n" {
		t.Errorf("cache service: %q", out)
	}
	waitLog(t, g, time.Second, "up -> down", "connection refused") // the dead db backend
	eventually(t, "TCP access-log lines", func() bool {
		return strings.Count(g.access.String(), `"TCP db.example.com `+listen+`" 200`) == 1
	})
}

// stunnel's client mode: a plain listener, TLS towards the backend,
// verified against a private CA; the configuration has no apps, so no
// port 443 or 80 is taken.
func TestTCPModePlainToTLS(t *testing.T) {
	certPEM, keyPEM, _ := selfSigned(t, "db.internal", "db.internal")
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	serveConns(t, ln, func(c net.Conn) {
		line, _ := bufio.NewReader(c).ReadString('\n')
		io.WriteString(c, "over TLS: "+line)
	})
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	writeFile(t, caFile, certPEM)
	svc, err := config.ParseTCP(freeAddr(t) + "=" + ln.Addr().String() + ";plain;backend_ca=" + caFile + ";backend_sni=db.internal")
	if err != nil {
		t.Fatal(err)
	}
	// TCP services only: no HTTP(S) listener is opened.
	g := startGateway(t, &config.Config{TCP: []config.TCPService{svc}})
	if g.srv.tlsLn != nil || g.srv.httpLn != nil {
		t.Error("a TCP-only configuration opened the HTTPS or HTTP listener")
	}
	c, err := net.Dial("tcp", g.srv.TCPAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "SELECT 1\n")
	c.SetDeadline(time.Now().Add(10 * time.Second))
	got, _ := bufio.NewReader(c).ReadString('\n')
	if got != "over TLS: SELECT 1\n" {
		t.Errorf("got %q", got)
	}
}

// A plain TCP service behind a trusted proxy: the gate reads the PROXY
// header and whatever came in with it, and the tunnel, which splices past
// the gate's connection (clientConn.UnwrapTCP), sends those bytes first.
func TestTCPModePlainAfterProxyHeader(t *testing.T) {
	echo := tcpEcho(t, "echo", false)
	g := startGateway(t, &config.Config{
		Frontend: config.Frontend{TrustedProxies: []string{"127.0.0.1"}},
		TCP:      []config.TCPService{{Listen: freeAddr(t), Plain: true, Backends: []config.Backend{{Addr: echo}}}},
	})
	c, err := net.Dial("tcp", g.srv.TCPAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// One write: the gate's reader gets the header and the lines together.
	io.WriteString(c, "PROXY TCP4 203.0.113.7 192.0.2.1 5555 443\r\nfirst\nsecond\n")
	c.(*net.TCPConn).CloseWrite()
	if out, _ := io.ReadAll(c); string(out) != "echo: first\necho: second\necho: bye\n" {
		t.Errorf("got %q", out)
	}
}

// clientConn hands its TCP connection and the bytes it read past the
// PROXY header to a splicing tunnel; over anything but TCP it has none.
func TestClientConnUnwrapTCP(t *testing.T) {
	g, err := newFrontGate(&config.Frontend{TrustedProxies: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "PROXY TCP4 203.0.113.7 192.0.2.1 5555 443\r\nhello\n")
	c.(*net.TCPConn).CloseWrite()
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	cc, err := g.admit(nc)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	tc, ahead := cc.UnwrapTCP()
	if tc != nc {
		t.Fatalf("UnwrapTCP gave %v, want the accepted connection", tc)
	}
	rest, err := io.ReadAll(tc)
	if err != nil || string(ahead)+string(rest) != "hello\n" {
		t.Errorf("read ahead %q, then %q (%v); want hello once", ahead, rest, err)
	}

	p, q := net.Pipe()
	defer q.Close()
	if tc, _ := (&clientConn{Conn: p}).UnwrapTCP(); tc != nil {
		t.Error("a connection over a net.Pipe unwrapped to TCP")
	}
}

// With trusted proxies the gate waits for a PROXY header under the
// handshake timeout; a plain TCP service has no handshake to clear that
// deadline after, so its tunnels ended handshake_timeout after accept,
// whatever moved through them.
func TestTCPModePlainOutlivesHandshakeTimeout(t *testing.T) {
	echo := tcpEcho(t, "echo", false)
	g := startGateway(t, &config.Config{
		Frontend: config.Frontend{TrustedProxies: []string{"127.0.0.1"}, HandshakeTimeout: config.Duration(300 * time.Millisecond)},
		TCP:      []config.TCPService{{Listen: freeAddr(t), Plain: true, Backends: []config.Backend{{Addr: echo}}}},
	})
	c, err := net.Dial("tcp", g.srv.TCPAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	io.WriteString(c, "PROXY TCP4 203.0.113.7 192.0.2.1 5555 443\r\n")
	for i := range 8 { // 8 x 100 ms: well past the 300 ms
		fmt.Fprintf(c, "line %d\n", i)
		line, err := br.ReadString('\n')
		if want := fmt.Sprintf("echo: line %d\n", i); line != want {
			t.Fatalf("after %d ms: got %q (%v), want %q", i*100, line, err, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
