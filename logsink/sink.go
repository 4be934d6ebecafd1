// Package logsink is where tlsedge's log lines go: standard error, a file
// that logrotate can move away, or a syslog collector speaking RFC 5424
// over UDP, TCP (RFC 6587 octet counting) or a local datagram socket.
//
// Every sink except stderr and stdout is fed through a bounded queue that
// one goroutine drains. Write copies the line into the queue and returns;
// when the queue is full the line is dropped and counted (Dropped), because
// a stalled disk or collector must never stall a request. The package also
// formats access-log lines (AccessFormat) and carries logrus entries to a
// sink with their severity (LogrusHook).
//
// logsink imports nothing of tlsedge's.
package logsink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Sink receives log lines. Write takes exactly one line, with or without
// its trailing newline, and never waits for the destination: a line that
// cannot be queued is dropped, counted in Dropped, and Write still reports
// success (a logger that sees an error would only print it to stderr).
// All methods are safe for concurrent use.
type Sink interface {
	io.Writer
	// Reopen closes and reopens a file by its path (after logrotate moved
	// it) or reconnects a socket. It is a no-op for stderr and stdout.
	Reopen() error
	// Close writes what is queued, waiting at most Options.CloseTimeout,
	// and releases the destination. Lines written after Close are refused
	// with ErrClosed (stderr and stdout are never closed).
	Close() error
	// Dropped is the number of lines lost so far: queue full, write
	// errors, or still queued when Close gave up.
	Dropped() uint64
}

// SeverityWriter is implemented by sinks that can carry a severity per
// line (all of this package's sinks; only syslog records it). LogrusHook
// finds it by type assertion.
type SeverityWriter interface {
	WriteSeverity(sev Severity, line []byte) (int, error)
}

// Flusher is implemented by queued sinks: Flush returns when every line
// written before the call has been handed to the destination, or when ctx
// ends. It blocks, so it is for shutdown and fatal errors, never requests.
type Flusher interface {
	Flush(ctx context.Context) error
}

// ErrClosed is returned by Write, Reopen and Flush on a closed sink.
var ErrClosed = errors.New("logsink: sink closed")

// Options tune a sink. The zero value is ready to use; each field's doc
// names its default. Open copies the struct; the caller keeps ownership.
type Options struct {
	// Queue is how many writes may wait for the writer goroutine before
	// new ones are dropped. Default 4096.
	Queue int
	// QueueBytes bounds the text waiting, whatever the number of writes.
	// Default 4 MiB.
	QueueBytes int
	// Facility is the syslog facility. Default FacilityDaemon (the process
	// log); the access log passes FacilityLocal0.
	Facility Facility
	// Severity is the syslog severity of lines written with Write.
	// Default SeverityInfo. WriteSeverity sets it per line.
	Severity Severity
	// AppName is the RFC 5424 APP-NAME. Default "tlsedge".
	AppName string
	// Hostname is the RFC 5424 HOSTNAME. Default os.Hostname(), "-" when
	// that fails.
	Hostname string
	// MsgID is the RFC 5424 MSGID, e.g. "access". Default "-".
	MsgID string
	// MaxMessage caps one syslog message, header included; longer lines
	// are truncated at a UTF-8 boundary. Default 8192 bytes, rsyslog's
	// default maxMessageSize.
	MaxMessage int
	// DialTimeout bounds one connection attempt. Default 5s.
	DialTimeout time.Duration
	// WriteTimeout bounds one socket write; a TCP connection whose write
	// times out is closed and the line sent again on a new one. Default 10s.
	WriteTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between failed connection
	// attempts, doubling from one to the other. Defaults 100ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// CloseTimeout bounds how long Close spends writing queued lines.
	// Default 5s.
	CloseTimeout time.Duration
	// OnError, when set, hears about failures to open, reopen or write
	// (at most one write error per second; the lines are counted in
	// Dropped either way). It is called from the sink's goroutine or from
	// Reopen's caller, must be safe for concurrent use and must not block;
	// it may log to the sink itself, since Write never blocks.
	OnError func(error)
}

func (o *Options) queue() int                  { return orInt(o.Queue, 4096) }
func (o *Options) queueBytes() int             { return orInt(o.QueueBytes, 4<<20) }
func (o *Options) maxMessage() int             { return orInt(o.MaxMessage, 8192) }
func (o *Options) dialTimeout() time.Duration  { return orDur(o.DialTimeout, 5*time.Second) }
func (o *Options) writeTimeout() time.Duration { return orDur(o.WriteTimeout, 10*time.Second) }
func (o *Options) minBackoff() time.Duration   { return orDur(o.MinBackoff, 100*time.Millisecond) }
func (o *Options) closeTimeout() time.Duration { return orDur(o.CloseTimeout, 5*time.Second) }
func (o *Options) maxBackoff() time.Duration {
	return max(orDur(o.MaxBackoff, 30*time.Second), o.minBackoff())
}

func (o *Options) appName() string {
	if o.AppName == "" {
		return "tlsedge"
	}
	return o.AppName
}

func (o *Options) msgID() string {
	if o.MsgID == "" {
		return "-"
	}
	return o.MsgID
}

func (o *Options) report(err error) {
	if o.OnError != nil && err != nil {
		o.OnError(err)
	}
}

func orInt(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

func orDur(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}

func (o *Options) hostname() string {
	if o.Hostname != "" {
		return o.Hostname
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "-"
	}
	return h
}

// Open returns the sink spec names:
//
//	stderr, stdout          written directly, never queued
//	/var/log/tlsedge.log    a file, O_APPEND|O_CREATE, mode 0640
//	syslog://host[:port]    RFC 5424 over UDP (RFC 5426), port 514
//	syslog+tcp://host[:port] RFC 5424 over TCP, octet counting (RFC 6587), port 514
//	unixgram:///dev/log     RFC 5424 over a local datagram socket
//
// A file is created and a UDP or unixgram socket connected before Open
// returns, so a bad path or an absent syslog socket is reported at start.
// A TCP collector is connected by the sink's goroutine, with back-off, so
// a collector that is down does not keep the gateway from starting;
// failures go to Options.OnError.
func Open(spec string, opts Options) (Sink, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("logsink: %q: "+format, append([]any{spec}, args...)...)
	}
	switch spec {
	case "":
		return nil, fail("empty log destination (want stderr, stdout, a file path, syslog://host:port, syslog+tcp://host:port or unixgram:///path)")
	case "stderr":
		return newStdio(os.Stderr), nil
	case "stdout":
		return newStdio(os.Stdout), nil
	}
	scheme, rest, ok := strings.Cut(spec, "://")
	if !ok {
		t, err := openFile(spec)
		if err != nil {
			return nil, fail("%w", err)
		}
		return newQueued(t, opts), nil
	}
	var network string
	switch scheme {
	case "syslog", "syslog+udp":
		network = "udp"
	case "syslog+tcp":
		network = "tcp"
	case "unixgram":
		if !strings.HasPrefix(rest, "/") {
			return nil, fail("want an absolute socket path, unixgram:///path")
		}
		t, err := newSyslog("unixgram", rest, &opts)
		if err != nil {
			return nil, fail("%w", err)
		}
		return newQueued(t, opts), nil
	default:
		return nil, fail("unknown scheme %q (want syslog://, syslog+tcp://, unixgram:// or a file path)", scheme)
	}
	addr, err := hostPort(rest)
	if err != nil {
		return nil, fail("%w", err)
	}
	t, err := newSyslog(network, addr, &opts)
	if err != nil {
		return nil, fail("%w", err)
	}
	return newQueued(t, opts), nil
}

// hostPort checks a syslog URL's authority and adds the default port 514.
func hostPort(s string) (string, error) {
	if s == "" || strings.ContainsAny(s, "/?#@") {
		return "", errors.New("want host[:port] after the scheme, e.g. syslog://10.0.0.5:514")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil { // no port
		switch {
		case strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]"):
			host = s[1 : len(s)-1]
		case strings.ContainsAny(s, ":[]"):
			return "", fmt.Errorf("bad host:port %q (bracket IPv6 addresses: [2001:db8::1]:514)", s)
		default:
			host = s
		}
		port = "514"
	}
	if host == "" {
		return "", errors.New("missing host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strings.Trim(port, "0123456789") != "" {
		return "", fmt.Errorf("bad port %q", port)
	}
	return net.JoinHostPort(host, port), nil
}

// stdio writes straight to stderr or stdout: the process's own streams
// are left to the supervisor, which owns their buffering.
type stdio struct {
	f       *os.File
	dropped atomic.Uint64
}

var (
	_ Sink           = (*stdio)(nil)
	_ SeverityWriter = (*stdio)(nil)
)

func newStdio(f *os.File) *stdio { return &stdio{f: f} }

var nlPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func (s *stdio) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var err error
	if p[len(p)-1] == '\n' {
		_, err = s.f.Write(p)
	} else {
		bp := nlPool.Get().(*[]byte)
		b := append(append((*bp)[:0], p...), '\n')
		_, err = s.f.Write(b)
		if cap(b) <= maxPooled {
			*bp = b
			nlPool.Put(bp)
		}
	}
	if err != nil {
		s.dropped.Add(1)
	}
	return len(p), nil
}

func (s *stdio) WriteSeverity(_ Severity, p []byte) (int, error) { return s.Write(p) }
func (s *stdio) Reopen() error                                   { return nil }
func (s *stdio) Close() error                                    { return nil }
func (s *stdio) Dropped() uint64                                 { return s.dropped.Load() }
