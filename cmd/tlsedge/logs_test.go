package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// logClient is an HTTPS client for an instance whose local CA is in state.
func logClient(t *testing.T, in *instance, state string) func(path string) {
	t.Helper()
	c := localhostClient(t, in, state)
	return func(path string) {
		req, _ := http.NewRequest("GET", "https://localhost"+path, nil)
		req.Header.Set("User-Agent", "logtest/1.0")
		req.Header.Set("Referer", "https://ref.example/")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body) //nolint:errcheck
		resp.Body.Close()
	}
}

// The access log to syslog (RFC 5424 over UDP) in Apache's combined
// format: one message per request.
func TestAccessLogToSyslog(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer origin.Close()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	state := t.TempDir()
	in := startInstance(t, "--listen", "127.0.0.1:0", "--http-listen", "off", "--state-dir", state,
		"--app", "localhost="+origin.Listener.Addr().String(), "--access-log", "syslog://"+pc.LocalAddr().String(), "--access-format", "combined")
	get := logClient(t, in, state)
	get("/one")
	pc.SetReadDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
	buf := make([]byte, 8192)
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no syslog message: %v", err)
	}
	msg := string(buf[:n])
	// <PRI>1 TIMESTAMP HOST tlsedge PID - - 127.0.0.1 - - [..] "GET /one HTTP/1.1" 200 2 "https://ref.example/" "logtest/1.0"
	re := regexp.MustCompile(`^<134>1 \S+ \S+ tlsedge \d+ - - 127\.0\.0\.1 - - \[[^]]+\] "GET /one HTTP/1\.1" 200 2 "https://ref\.example/" "logtest/1\.0"`)
	if !re.MatchString(msg) {
		t.Errorf("syslog message %q", msg)
	}
}

// File logs are reopened on SIGUSR1: after logrotate renames the file,
// new lines go to a new file of the same name.
func TestAccessLogReopenOnSIGUSR1(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer origin.Close()
	state := t.TempDir()
	file := filepath.Join(state, "access.log")
	in := startInstance(t, "--listen", "127.0.0.1:0", "--http-listen", "off", "--state-dir", state,
		"--app", "localhost="+origin.Listener.Addr().String(), "--access-log", file, "--access-format", "{method} {path} {status}")
	get := logClient(t, in, state)
	get("/before")
	waitFile(t, file, "GET /before 200")
	if err := os.Rename(file, file+".1"); err != nil {
		t.Fatal(err)
	}
	in.cmd.Process.Signal(syscall.SIGUSR1) //nolint:errcheck
	deadline := time.Now().Add(10 * time.Second)
	for {
		get("/after")
		if b, _ := os.ReadFile(file); strings.Contains(string(b), "GET /after 200") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no new log file after SIGUSR1")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if b, _ := os.ReadFile(file + ".1"); !strings.Contains(string(b), "GET /before 200") {
		t.Errorf("the rotated file lost its lines: %q", b)
	}
}

func waitFile(t *testing.T, file, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, _ := os.ReadFile(file); strings.Contains(string(b), want) {
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(file)
			t.Fatalf("%s never had %q: %q", file, want, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// localhostClient is an HTTPS client for "localhost" that trusts the
// local CA of the instance's state dir and dials the instance.
func localhostClient(t *testing.T, in *instance, state string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(state, "ca", "root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"},
		DialContext: func(ctx context.Context, n, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, n, in.addr)
		},
	}}
}
