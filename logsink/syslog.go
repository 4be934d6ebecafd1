package logsink

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// syslogT sends RFC 5424 messages over UDP, unixgram or TCP. The writer
// goroutine owns everything but conn, which interrupt may close.
type syslogT struct {
	network, addr string
	stream        bool // TCP: octet-counting framing (RFC 6587 section 3.4.1), reconnect and resend
	name          string
	fac           Facility
	hdr           []byte // " HOSTNAME APP-NAME PROCID MSGID - ", after the timestamp
	maxMsg        int
	dialTimeout   time.Duration
	writeTimeout  time.Duration
	minBackoff    time.Duration
	maxBackoff    time.Duration

	msg, out []byte
	backoff  time.Duration
	next     time.Time // no dial before

	mu          sync.Mutex
	conn        net.Conn
	interrupted bool
}

var _ transport = (*syslogT)(nil)

// newSyslog builds the header once and, for datagram sockets, connects, so
// that Open reports an unknown host or a missing /dev/log.
func newSyslog(network, addr string, o *Options) (*syslogT, error) {
	s := &syslogT{
		network:      network,
		addr:         addr,
		stream:       network == "tcp",
		fac:          o.Facility.orDefault(),
		maxMsg:       o.maxMessage(),
		dialTimeout:  o.dialTimeout(),
		writeTimeout: o.writeTimeout(),
		minBackoff:   o.minBackoff(),
		maxBackoff:   o.maxBackoff(),
	}
	s.name = "syslog " + network + " " + addr
	hdr := append([]byte{' '}, headerField(o.hostname(), 255)...)
	hdr = append(append(hdr, ' '), headerField(o.appName(), 48)...)
	hdr = append(append(hdr, ' '), strconv.Itoa(os.Getpid())...)
	hdr = append(append(hdr, ' '), headerField(o.msgID(), 32)...)
	s.hdr = append(hdr, " - "...) // no STRUCTURED-DATA
	if !s.stream {
		c, err := net.DialTimeout(network, addr, s.dialTimeout)
		if err != nil {
			return nil, err
		}
		s.conn = c
	}
	return s, nil
}

// headerField makes s a valid RFC 5424 header field: printable US-ASCII
// without spaces, at most n bytes, "-" when empty.
func headerField(s string, n int) []byte {
	b := make([]byte, 0, min(len(s), n))
	for i := 0; i < len(s) && len(b) < n; i++ {
		c := s[i]
		if c < 33 || c > 126 {
			c = '_'
		}
		b = append(b, c)
	}
	if len(b) == 0 {
		return []byte{'-'}
	}
	return b
}

func (s *syslogT) stamped() bool { return true }

// format builds "<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG" in
// s.msg, cut to maxMsg bytes. MSG carries no BOM: RFC 5424 allows any
// octets (MSG-ANY), and receivers print a BOM as garbage.
func (s *syslogT) format(l *line) []byte {
	b := append(s.msg[:0], '<')
	b = strconv.AppendInt(b, int64(s.fac.Code()*8+l.sev.Code()), 10)
	b = append(b, ">1 "...)
	b = l.t.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, s.hdr...)
	if room := s.maxMsg - len(b); len(l.b) > room {
		b = append(b, l.b[:utf8Cut(l.b, max(room, 0))]...)
	} else {
		b = append(b, l.b...)
	}
	s.msg = b
	if !s.stream {
		return b
	}
	out := strconv.AppendInt(s.out[:0], int64(len(b)), 10)
	s.out = append(append(out, ' '), b...)
	return s.out
}

// utf8Cut returns n, or less so that b[:n] does not end inside a UTF-8
// sequence (bytes that are not UTF-8 are cut anywhere).
func utf8Cut(b []byte, n int) int {
	for i := n; i > 0 && i > n-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			return i
		}
	}
	return n
}

func (s *syslogT) write(l *line) error {
	c, err := s.connect()
	if err != nil {
		return err
	}
	msg := s.format(l)
	c.SetWriteDeadline(time.Now().Add(s.writeTimeout)) //nolint:errcheck // a dead conn fails the write
	if _, err := c.Write(msg); err != nil {
		s.drop(c)
		if s.stream {
			s.failed()
		}
		return fmt.Errorf("logsink: %s: write: %w", s.name, err)
	}
	s.backoff = 0
	return nil
}

// connect returns the connection, dialing when there is none and the
// back-off allows it.
func (s *syslogT) connect() (net.Conn, error) {
	s.mu.Lock()
	c, stop := s.conn, s.interrupted
	s.mu.Unlock()
	switch {
	case stop:
		return nil, ErrClosed
	case c != nil:
		return c, nil
	case time.Now().Before(s.next):
		return nil, errBackoff
	}
	c, err := net.DialTimeout(s.network, s.addr, s.dialTimeout)
	if err != nil {
		s.failed()
		return nil, fmt.Errorf("logsink: %s: %w", s.name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.interrupted {
		c.Close()
		return nil, ErrClosed
	}
	s.conn = c
	return c, nil
}

// failed doubles the back-off, from MinBackoff up to MaxBackoff.
func (s *syslogT) failed() {
	s.backoff = min(max(2*s.backoff, s.minBackoff), s.maxBackoff)
	s.next = time.Now().Add(s.backoff)
}

// drop closes c, unless interrupt or reopen has replaced it already. A
// datagram socket redials at once for the next line (syslogd restarted and
// /dev/log is a new socket); a TCP one after the back-off.
func (s *syslogT) drop(c net.Conn) {
	c.Close() //nolint:errcheck // the connection is abandoned
	s.mu.Lock()
	if s.conn == c {
		s.conn = nil
	}
	s.mu.Unlock()
}

func (s *syslogT) retryAt() (time.Time, bool) { return s.next, s.stream }
func (s *syslogT) flush() error               { return nil }

// reopen drops the connection; the next line dials afresh.
func (s *syslogT) reopen() error {
	s.mu.Lock()
	c := s.conn
	s.conn = nil
	s.mu.Unlock()
	s.next = time.Time{}
	if c != nil {
		c.Close() //nolint:errcheck // replaced
	}
	return nil
}

func (s *syslogT) interrupt() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.interrupted = true
	if s.conn != nil {
		s.conn.Close() //nolint:errcheck // unblocking is all that is wanted
		s.conn = nil
	}
}

func (s *syslogT) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.interrupted = true
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("logsink: %s: close: %w", s.name, err)
	}
	return nil
}
