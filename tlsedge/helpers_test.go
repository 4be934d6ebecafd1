package tlsedge

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/tlsedge/tlsedge/config"
)

// backend is a real HTTP server that names itself in every answer.
type backend struct {
	name string
	srv  *httptest.Server
	mu   sync.Mutex
	hits int
	last *http.Request
}

func startBackend(t *testing.T, name string) *backend {
	t.Helper()
	b := &backend{name: name}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.hits++
		b.last = r.Clone(context.Background())
		b.mu.Unlock()
		w.Header().Set("X-Backend", name)
		fmt.Fprintf(w, "%s %s", name, r.URL.Path)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) addr() string { return b.srv.Listener.Addr().String() }

func (b *backend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hits
}

// gateway is a tlsedge Server running in this process on loopback ports.
type gateway struct {
	srv    *Server
	cfg    *config.Config
	access *syncBuffer
	logs   *syncBuffer
	roots  *x509.CertPool
	cancel context.CancelFunc
	done   chan error
	// started is a reference time a test may set (load loops measure
	// from it).
	started time.Time
}

// syncBuffer is a bytes.Buffer safe for the access-log goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startGateway normalizes, validates and serves cfg. Listen addresses
// default to loopback port 0 and the state dir to a temp dir.
func startGateway(t *testing.T, cfg *config.Config) *gateway {
	t.Helper()
	return startGatewayWith(t, cfg, Options{})
}

// startGatewayWith is startGateway with options (a clock, say); the log and
// access log are the test's.
func startGatewayWith(t *testing.T, cfg *config.Config, opts Options) *gateway {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.HTTPListen == "" {
		cfg.HTTPListen = "127.0.0.1:0"
	}
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	if cfg.Admin == "" {
		cfg.Admin = config.Off // tests that want it give 127.0.0.1:0
	}
	cfg.Normalize(cfg.StateDir)
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	g := &gateway{cfg: cfg, access: &syncBuffer{}, logs: &syncBuffer{}, done: make(chan error, 1)}
	log := logrus.New()
	log.Out = io.MultiWriter(g.logs, testWriter{t})
	log.SetLevel(logrus.DebugLevel)
	opts.Log, opts.AccessLog, opts.CertPollInterval = log, g.access, 20*time.Millisecond
	srv, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	g.srv = srv
	if ca := srv.snap.Load().ca; ca != nil {
		g.roots = x509.NewCertPool()
		g.roots.AddCert(ca.RootCertificate())
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	go func() { g.done <- srv.Serve(ctx) }()
	t.Cleanup(g.stop)
	return g
}

func (g *gateway) stop() {
	if g.cancel == nil {
		return
	}
	g.cancel()
	g.cancel = nil
	<-g.done
}

// testWriter sends log lines to t.Log, so a failing test shows them.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// client returns an HTTPS client that dials the gateway whatever the URL's
// host, so tests can use real names (SNI and Host) on loopback. With fresh
// set, every request uses a new connection.
func (g *gateway) client(fresh bool) *http.Client {
	addr := g.srv.TLSAddr().String()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig:   &tls.Config{RootCAs: g.roots},
		DisableKeepAlives: fresh,
		// HTTP/1.1 (tlsedge's own server) by default; TLSEDGE_TEST_H2=1
		// runs the same tests over HTTP/2 (net/http's server).
		ForceAttemptHTTP2: useH2,
	}
	if !useH2 {
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// get fetches url with an optional Cookie header and returns the response
// with its body read.
func get(t *testing.T, c *http.Client, url, cookie string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", url, err)
	}
	return resp, string(body)
}

// eventually polls cond (bounded) instead of sleeping a fixed time.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// writeFile writes data atomically (rename), as deploy tools do.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// useH2 makes the test clients speak HTTP/2 (make test runs the package
// once each way).
var useH2 = os.Getenv("TLSEDGE_TEST_H2") != ""
