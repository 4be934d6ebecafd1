package tlsedge

import (
	"bytes"
	"context"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/config"
)

// h2specPkg is built when H2SPEC does not name a binary, at the version
// go.mod's tool directive pins.
const h2specPkg = "github.com/summerwind/h2spec/cmd/h2spec"

// h2specBinary is $H2SPEC, or h2spec built at the version go.mod pins.
func h2specBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("H2SPEC"); bin != "" {
		return bin
	}
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "h2spec")
	cmd := exec.Command("go", "build", "-o", bin, h2specPkg)
	cmd.Dir = filepath.Dir(string(bytes.TrimSpace(gomod)))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("set H2SPEC to an h2spec binary, or add `tool %s` to go.mod: go build: %v\n%s", h2specPkg, err, out)
	}
	return bin
}

// TestH2SpecServer runs every h2spec case against the HTTP/2 server with
// a test handler: all must pass.
func TestH2SpecServer(t *testing.T) {
	bin := h2specBinary(t)
	cert, roots := testH2Cert(t)
	s := startH2TestServer(t, cert, roots, h2TestHandler())
	t.Log(runH2Spec(t, bin, s.addr))
}

// runH2Spec runs every h2spec case against the TLS listener at addr and
// returns its summary line; any failed or skipped case fails the test.
func runH2Spec(t *testing.T, bin, addr string) string {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-h", "127.0.0.1", "-p", port, "-t", "-k", "-o", "2").CombinedOutput()
	summary := ""
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, " tests, ") {
			summary = strings.TrimSpace(line)
		}
	}
	if err != nil || !strings.Contains(summary, " 0 skipped, 0 failed") {
		t.Fatalf("h2spec: %v\n%s", err, out)
	}
	return summary
}

// benchH2Cert is net/http/httptest's certificate (selfSigned wants a
// *testing.T): for 127.0.0.1 and example.com.
func benchH2Cert() (*httptest.Server, *x509.CertPool) {
	ts := httptest.NewUnstartedServer(nil)
	ts.StartTLS()
	ts.Close()
	roots := x509.NewCertPool()
	roots.AddCert(ts.Certificate())
	return ts, roots
}

// BenchmarkH2Server: requests over one HTTP/2 connection with Go's
// client: "hello" has a browser's header set and a 6-byte answer, "1MiB"
// a 1 MiB answer. Allocations are the whole process's: client and server.
func BenchmarkH2Server(b *testing.B) {
	ts, roots := benchH2Cert()
	s := startH2TestServer(b, ts.TLS.Certificates[0], roots, h2TestHandler())
	c := s.client()
	defer c.CloseIdleConnections()
	c.Transport.(*http.Transport).TLSClientConfig.ServerName = "example.com"
	for _, w := range []struct {
		name, path string
		size       int64
	}{{"hello", "/", 6}, {"1MiB", "/big", 1 << 20}} {
		b.Run(w.name, func(b *testing.B) {
			req, _ := http.NewRequest("GET", "https://"+s.addr+w.path, nil)
			req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
			req.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
			req.Header.Set("Accept-Language", "en-US,en;q=0.5")
			req.Header.Set("Cookie", "session=0123456789abcdef0123456789abcdef; theme=dark")
			b.SetBytes(w.size)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := c.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				if n, _ := io.Copy(io.Discard, resp.Body); n != w.size {
					b.Fatalf("got %d bytes, want %d", n, w.size)
				}
				resp.Body.Close()
			}
		})
	}
}

// TestH2SpecGateway runs every h2spec case against tlsedge's own TLS
// listener, with the default filter chain and a real backend whose
// answer is long enough for the flow-control cases: all must pass, none
// skipped.
func TestH2SpecGateway(t *testing.T) {
	t.Parallel()
	bin := h2specBinary(t)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)                   //nolint:errcheck
		w.Write(bytes.Repeat([]byte("tlsedge "), 64)) //nolint:errcheck
	}))
	t.Cleanup(origin.Close)
	g := startGateway(t, &config.Config{Apps: []config.App{{Hosts: []string{"127.0.0.1"}, Backends: []config.Backend{{Addr: origin.Listener.Addr().String()}}}}})
	t.Log(runH2Spec(t, bin, g.srv.TLSAddr().String()))
}
