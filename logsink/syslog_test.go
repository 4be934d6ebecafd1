package logsink

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// syslogMsg is a received RFC 5424 message, parsed by the test's own
// reading of the RFC (section 6), not by the code under test.
type syslogMsg struct {
	pri                      int
	ts                       time.Time
	host, app, procid, msgid string
	msg                      string
}

var rfc5424 = regexp.MustCompile(`(?s)^<(\d{1,3})>1 (\S+) (\S{1,255}) (\S{1,48}) (\S{1,128}) (\S{1,32}) - (.*)$`)

func parseSyslog(t *testing.T, b []byte) syslogMsg {
	t.Helper()
	m := rfc5424.FindSubmatch(b)
	if m == nil {
		t.Fatalf("not an RFC 5424 message: %q", b)
	}
	pri, _ := strconv.Atoi(string(m[1]))
	ts, err := time.Parse(time.RFC3339Nano, string(m[2]))
	if err != nil || pri > 191 {
		t.Fatalf("bad PRI or TIMESTAMP in %q: %v", b, err)
	}
	return syslogMsg{pri, ts, string(m[3]), string(m[4]), string(m[5]), string(m[6]), string(m[7])}
}

func checkHeader(t *testing.T, m syslogMsg, msgid string) {
	t.Helper()
	if m.app != "tlsedge" || m.procid != strconv.Itoa(os.Getpid()) || m.host != "edge-1" || m.msgid != msgid {
		t.Errorf("header: host %q app %q procid %q msgid %q", m.host, m.app, m.procid, m.msgid)
	}
	if d := time.Since(m.ts); d < -time.Hour || d > time.Hour {
		t.Errorf("timestamp %v is not now", m.ts)
	}
}

func TestHeaderField(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"", 48, "-"},
		{"edge-1", 255, "edge-1"},
		{"edge 1\n", 255, "edge_1_"},
		{"é", 255, "__"},
		{"abcdef", 4, "abcd"},
	}
	for _, tt := range tests {
		if got := string(headerField(tt.in, tt.n)); got != tt.want {
			t.Errorf("headerField(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

func readDatagram(t *testing.T, c net.PacketConn) []byte {
	t.Helper()
	buf := make([]byte, 64<<10)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

func TestSyslogUDP(t *testing.T) {
	ln, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := Open("syslog://"+ln.LocalAddr().String(), Options{Facility: FacilityLocal0, Hostname: "edge-1", MsgID: "access"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Write([]byte("hello world\n"))
	s.(SeverityWriter).WriteSeverity(SeverityError, []byte(`GET "/x" failed`))

	m := parseSyslog(t, readDatagram(t, ln))
	checkHeader(t, m, "access")
	if m.pri != 16*8+6 || m.msg != "hello world" {
		t.Errorf("got PRI %d msg %q, want 134 (local0.info) and the line without its newline", m.pri, m.msg)
	}
	m = parseSyslog(t, readDatagram(t, ln))
	if m.pri != 16*8+3 || m.msg != `GET "/x" failed` {
		t.Errorf("got PRI %d msg %q, want 131 (local0.err)", m.pri, m.msg)
	}
}

// TestSyslogTruncate: a long line is cut to MaxMessage at a UTF-8
// boundary, header included.
func TestSyslogTruncate(t *testing.T) {
	ln, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := Open("syslog://"+ln.LocalAddr().String(), Options{MaxMessage: 101})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Write([]byte(strings.Repeat("é", 200)))
	b := readDatagram(t, ln)
	m := parseSyslog(t, b)
	if len(b) > 101 || len(b) < 98 || !utf8.ValidString(m.msg) || m.pri != 3*8+6 {
		t.Errorf("got %d bytes, PRI %d (want daemon.info), msg %q", len(b), m.pri, m.msg)
	}
}

func TestSyslogUnixgram(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := Open("unixgram://"+path, Options{Hostname: "edge-1", Severity: SeverityNotice})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Write([]byte("started\r\n"))
	m := parseSyslog(t, readDatagram(t, ln))
	checkHeader(t, m, "-")
	if m.pri != 3*8+5 || m.msg != "started" {
		t.Errorf("got PRI %d msg %q, want 29 (daemon.notice)", m.pri, m.msg)
	}
	// syslogd restarts: a new socket at the same path. Reopen (or the
	// first failed write) connects to it.
	ln.Close()
	os.Remove(path)
	ln2, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	if err := s.Reopen(); err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("again"))
	if m := parseSyslog(t, readDatagram(t, ln2)); m.msg != "again" {
		t.Errorf("after reopen got %q", m.msg)
	}
}

// readFrame reads one RFC 6587 octet-counted frame: MSG-LEN SP SYSLOG-MSG.
func readFrame(r *bufio.Reader) ([]byte, error) {
	n, err := r.ReadString(' ')
	if err != nil {
		return nil, err
	}
	size, err := strconv.Atoi(strings.TrimSuffix(n, " "))
	if err != nil || size <= 0 {
		return nil, errors.New("bad MSG-LEN " + strconv.Quote(n))
	}
	b := make([]byte, size)
	_, err = io.ReadFull(r, b)
	return b, err
}

func TestSyslogTCPOctetCounting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := Open("syslog+tcp://"+ln.Addr().String(), Options{Hostname: "edge-1", MsgID: "access", Facility: FacilityLocal0})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	lines := []string{"first", "two\nlines in one message", "日本語 third"}
	for _, l := range lines {
		s.Write([]byte(l + "\n"))
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	for _, want := range lines {
		b, err := readFrame(r)
		if err != nil {
			t.Fatal(err)
		}
		m := parseSyslog(t, b)
		checkHeader(t, m, "access")
		if m.msg != want || m.pri != 134 {
			t.Errorf("got PRI %d msg %q, want 134 %q", m.pri, m.msg, want)
		}
	}
}

// TestSyslogTCPReconnect: a collector that is down when the gateway
// starts gets the queued lines once it is up.
func TestSyslogTCPReconnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var mu sync.Mutex
	var errs []error
	s, err := Open("syslog+tcp://"+addr, Options{MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		OnError: func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }})
	if err != nil {
		t.Fatalf("Open must not need the collector up: %v", err)
	}
	defer s.Close()
	s.Write([]byte("queued while down"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Wait until a dial has failed, so the line really waited.
		mu.Lock()
		n := len(errs)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no dial error reported while the collector was down")
		}
		time.Sleep(time.Millisecond)
	}
	// The collector comes back on the same port (retried: another test
	// may hold the port for a moment).
	for {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("port %s stayed taken: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer ln.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := readFrame(bufio.NewReader(c))
	if err != nil {
		t.Fatal(err)
	}
	if m := parseSyslog(t, b); m.msg != "queued while down" {
		t.Errorf("got %q", m.msg)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(errs[0].Error(), addr) {
		t.Errorf("dial error %q does not name the collector", errs[0])
	}
	if s.Dropped() != 0 {
		t.Errorf("dropped %d lines, want 0", s.Dropped())
	}
}

// TestSyslogTCPStalledReceiver: a collector that stops reading never
// blocks Write; lines beyond the queue and the socket buffers are dropped
// and counted, and every line is either received or counted.
func TestSyslogTCPStalledReceiver(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	resume := make(chan struct{})
	received := make(chan int)
	go func() {
		total := 0
		var wg sync.WaitGroup
		var mu sync.Mutex
		for {
			c, err := ln.Accept()
			if err != nil {
				break
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				<-resume // stall
				r := bufio.NewReader(c)
				for {
					if _, err := readFrame(r); err != nil {
						return // a partial frame at the end was retried elsewhere
					}
					mu.Lock()
					total++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		received <- total
	}()
	s, err := Open("syslog+tcp://"+ln.Addr().String(), Options{Queue: 1000})
	if err != nil {
		t.Fatal(err)
	}
	const n = 100_000
	line := []byte(strings.Repeat("x", 1000))
	for range n {
		s.Write(line)
	}
	dropped := s.Dropped()
	if dropped == 0 || dropped > n {
		t.Errorf("dropped %d of %d lines to a stalled collector, want some and at most all", dropped, n)
	}
	close(resume)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.(Flusher).Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ln.Close()
	got := <-received
	t.Logf("received %d, dropped %d", got, s.Dropped())
	if got+int(s.Dropped()) != n {
		t.Errorf("received %d + dropped %d != written %d", got, s.Dropped(), n)
	}
}

// TestSyslogTCPClose: Close gives up after CloseTimeout on a collector
// that is down or stalled, and counts what it could not write.
func TestSyslogTCPClose(t *testing.T) {
	t.Run("down", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		s, err := Open("syslog+tcp://"+addr, Options{CloseTimeout: 20 * time.Millisecond, MinBackoff: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		for range 10 {
			s.Write([]byte("lost"))
		}
		s.Close()
		if s.Dropped() != 10 {
			t.Errorf("dropped %d, want 10", s.Dropped())
		}
	})
	t.Run("stalled", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err == nil {
				defer c.Close()
				<-t.Context().Done() // never reads
			}
		}()
		s, err := Open("syslog+tcp://"+ln.Addr().String(), Options{Queue: 10, CloseTimeout: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		line := []byte(strings.Repeat("y", 64<<10))
		for range 1000 { // 64 MiB: more than the socket buffers hold
			s.Write(line)
		}
		s.Close()
		if d := s.Dropped(); d == 0 || d > 1000 {
			t.Errorf("dropped %d of 1000", d)
		}
	})
}
