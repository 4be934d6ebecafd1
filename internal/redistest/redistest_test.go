package redistest

import (
	"bufio"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// send writes one RESP command and returns the first reply line.
func send(t *testing.T, addr string, args ...string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	var b strings.Builder
	b.WriteString("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b.WriteString("$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n")
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		t.Fatalf("write to %s: %v", addr, err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("read from %s: %v", addr, err)
	}
	return strings.TrimSpace(line)
}

func TestStartStopRestart(t *testing.T) {
	s := Start(t)
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") {
		t.Fatalf("Addr() = %q, want a 127.0.0.1 address", s.Addr())
	}
	if want := "redis://" + s.Addr() + "/0"; s.URL() != want {
		t.Fatalf("URL() = %q, want %q", s.URL(), want)
	}
	if got := send(t, s.Addr(), "SET", "k", "v"); got != "+OK" {
		t.Fatalf("SET = %q", got)
	}

	s.Stop()
	if err := ping(s.Addr()); err == nil {
		t.Fatal("server still answers after Stop")
	}
	s.Stop() // a second Stop is a no-op

	s.Restart()
	if got := send(t, s.Addr(), "PING"); got != "+PONG" {
		t.Fatalf("PING after Restart = %q", got)
	}
	// Nothing is persisted across a restart.
	if got := send(t, s.Addr(), "EXISTS", "k"); got != ":0" {
		t.Fatalf("EXISTS k after Restart = %q, want :0", got)
	}
}

func TestPassword(t *testing.T) {
	s := StartWith(t, Options{Password: "s3cret"})
	if want := "redis://:s3cret@" + s.Addr() + "/0"; s.URL() != want {
		t.Fatalf("URL() = %q, want %q", s.URL(), want)
	}
	if got := send(t, s.Addr(), "GET", "k"); !strings.HasPrefix(got, "-NOAUTH") {
		t.Fatalf("GET without AUTH = %q, want -NOAUTH", got)
	}
	if got := send(t, s.Addr(), "AUTH", "s3cret"); got != "+OK" {
		t.Fatalf("AUTH = %q", got)
	}
}
