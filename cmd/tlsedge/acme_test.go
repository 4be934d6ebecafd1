package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/internal/acmetest"
	"github.com/tlsedge/tlsedge/internal/redistest"
)

// These tests run tlsedge processes against a real Pebble CA and a real
// Redis: what several instances share is only what crosses process
// boundaries (certmagic keeps challenge data in memory within one process).

const shopHost = "shop.tlsedge.test"

// instance is one running tlsedge process whose log the test reads.
type instance struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  strings.Builder
	addr string // the HTTPS address it listens on
}

// startInstance runs tlsedge with args (text logs at debug level) and
// waits until it listens.
func startInstance(t *testing.T, args ...string) *instance {
	t.Helper()
	in := &instance{cmd: tlsedgeCmd(t, append([]string{"--log-format", "text", "--log-level", "debug", "--access-log", "off"}, args...)...)}
	stderr, err := in.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			in.mu.Lock()
			in.log.WriteString(sc.Text() + "\n")
			in.mu.Unlock()
		}
		io.Copy(io.Discard, stderr) //nolint:errcheck // keep the pipe drained
	}()
	t.Cleanup(func() {
		in.cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck // may have exited
		done := make(chan struct{})
		go func() { in.cmd.Wait(); close(done) }() //nolint:errcheck // exit status is not the point here
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			in.cmd.Process.Kill() //nolint:errcheck
			<-done
		}
		if t.Failed() {
			t.Logf("tlsedge %v log:\n%s", args, in.logs())
		}
	})
	line := in.waitLine(t, 20*time.Second, "listening for HTTPS")
	if _, rest, ok := strings.Cut(line, "address=\""); ok {
		in.addr, _, _ = strings.Cut(rest, "\"")
	}
	return in
}

func (in *instance) logs() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.log.String()
}

// waitLine waits (bounded) for a log line containing every part.
func (in *instance) waitLine(t *testing.T, timeout time.Duration, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, line := range strings.Split(in.logs(), "\n") {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(line, p)
			}
			if ok {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q within %v", parts, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leafAt does one handshake with SNI host, trusting only roots.
func leafAt(addr, host string, roots *x509.CertPool) (*x509.Certificate, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 20 * time.Second}, "tcp", addr, &tls.Config{ServerName: host, RootCAs: roots})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

func serialOf(c *x509.Certificate) string { return acmetest.Serial(c) }

// acmeArgs: ACME from ca for the app on shopHost.
func acmeArgs(ca *acmetest.CA, backend string, extra ...string) []string {
	return append([]string{
		"--acme-email", "ops@tlsedge.test", "--acme-ca", ca.DirectoryURL(), "--acme-ca-root", ca.APIRootFile(),
		"--app", shopHost + "=" + backend,
	}, extra...)
}

func startOrigin(t *testing.T) string {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "origin") }))
	t.Cleanup(origin.Close)
	return origin.Listener.Addr().String()
}

// Two instances on one Redis: one orders, both serve the same certificate;
// `tlsedge certs` lists it from Redis.
func TestTwoInstancesShareRedis(t *testing.T) {
	rd := redistest.Start(t)
	ca := acmetest.Start(t, acmetest.Options{})
	origin := startOrigin(t)
	a := startInstance(t, acmeArgs(ca, origin, "--storage", rd.URL(), "--listen", ca.TLSAddr(), "--http-listen", ca.HTTPAddr())...)
	b := startInstance(t, acmeArgs(ca, origin, "--storage", rd.URL(), "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")...)

	roots := ca.Roots(t)
	leafA, err := leafAt(a.addr, shopHost, roots)
	if err != nil {
		t.Fatalf("instance A: %v", err)
	}
	leafB, err := leafAt(b.addr, shopHost, roots)
	if err != nil {
		t.Fatalf("instance B: %v", err)
	}
	if serialOf(leafA) != serialOf(leafB) {
		t.Errorf("instances serve serials %s and %s", serialOf(leafA), serialOf(leafB))
	}
	if n := ca.Orders(); n != 1 {
		t.Errorf("%d orders for one name across two instances, want 1", n)
	}
	if n := strings.Count(a.logs()+b.logs(), `msg="certificate obtained"`); n != 1 {
		t.Errorf("%d instances say they obtained the certificate, want 1", n)
	}

	out, errOut, code := runCmd(t, "certs", "--storage", rd.URL())
	if code != 0 || !strings.Contains(out, shopHost) || !strings.Contains(out, serialOf(leafA)) || !strings.Contains(out, "redis://127.0.0.1") {
		t.Errorf("tlsedge certs: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("tlsedge certs:\n%s", out)
}

// The instance Pebble validates against did not place the order: it
// answers from the challenge data the other instance put in Redis.
func TestDistributedChallenge(t *testing.T) {
	for _, tc := range []struct{ name, disable string }{
		{"http-01", "--acme-disable-tlsalpn01"},
		{"tls-alpn-01", "--acme-disable-http01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rd := redistest.Start(t)
			ca := acmetest.Start(t, acmetest.Options{})
			origin := startOrigin(t)
			// A listens where Pebble validates but manages no name: its
			// only app is a catch-all served on demand for shopHost.
			a := startInstance(t, "--acme-email", "ops@tlsedge.test", "--acme-ca", ca.DirectoryURL(), "--acme-ca-root", ca.APIRootFile(),
				"--storage", rd.URL(), "--listen", ca.TLSAddr(), "--http-listen", ca.HTTPAddr(),
				"--on-demand", "--on-demand-allow", shopHost, "--app", "*="+origin)
			// B orders; Pebble never connects to it.
			b := startInstance(t, acmeArgs(ca, origin, "--storage", rd.URL(), "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", tc.disable)...)

			roots := ca.Roots(t)
			leafB, err := leafAt(b.addr, shopHost, roots)
			if err != nil {
				t.Fatalf("instance B: %v", err)
			}
			a.waitLine(t, 5*time.Second, "served key authentication", "distributed=true", "challenge="+tc.name)
			leafA, err := leafAt(a.addr, shopHost, roots)
			if err != nil {
				t.Fatalf("instance A: %v", err)
			}
			if serialOf(leafA) != serialOf(leafB) || ca.Orders() != 1 {
				t.Errorf("serials %s and %s after %d orders; want one certificate", serialOf(leafA), serialOf(leafB), ca.Orders())
			}
		})
	}
}
