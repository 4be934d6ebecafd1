package tlsedge

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tlsedge/tlsedge/logsink"
)

// accessEntry is one request, as the access log records it.
type accessEntry struct {
	Time     time.Time
	ClientIP string
	Method   string
	Host     string
	Path     string
	Status   int
	Bytes    int64
	Duration time.Duration
	App      string
	Backend  string // backend id, "" when none answered
	Attempts int    // backends tried; written only when more than one
	// RequestID is the request's X-Request-Id ("" when off).
	RequestID string
	TLS       uint16 // negotiated version, 0 for plain HTTP
	Sticky    stickyResult
	// Proto, Referer and UserAgent are the request's, for the common
	// and combined formats.
	Proto, Referer, UserAgent string
}

// stickyResult says what a sticky cookie did for a request.
type stickyResult uint8

const (
	stickyNone  stickyResult = iota // the app is not sticky
	stickyHit                       // a valid cookie chose the backend
	stickyMiss                      // no valid cookie: balanced, cookie set
	stickyRepin                     // valid cookie, its backend failed: re-pinned
)

func (s stickyResult) String() string {
	switch s {
	case stickyHit:
		return "hit"
	case stickyMiss:
		return "miss"
	case stickyRepin:
		return "repin"
	}
	return "-"
}

// accessLog formats each entry on the request's goroutine into a shared
// backlog and writes the backlog from one goroutine, in batches. The
// request path never waits for the sink: when the backlog holds
// accessLogBacklog bytes that the writer has not taken (a stalled disk or
// collector), lines are dropped and counted.
//
// An earlier design sent each entry through a channel to the writer,
// which formatted it. Under load that was a channel send and receive of a
// 200-byte entry and a wake-up of the writer per few requests; now the
// writer wakes once per accessLogWake bytes of lines (a few hundred
// requests) or per accessLogFlush, whichever comes first, as the 64 KiB
// buffer it wrote into already let lines wait.
type accessLog struct {
	mu      sync.Mutex
	backlog []byte // formatted lines the writer has not taken; under mu
	spare   []byte // the writer's last batch, handed back as the next backlog; under mu
	wake    chan struct{}
	out     io.Writer
	json    bool
	custom  *logsink.AccessFormat // nil: text or json above
	lines   bool                  // write each line on its own (syslog)
	flush   time.Duration         // accessLogFlush; tests set it
	dropped atomic.Uint64
	done    chan struct{}
}

const (
	// accessLogBacklog bounds the lines waiting for a slow sink (about
	// 7,000 text lines).
	accessLogBacklog = 1 << 20
	// accessLogWake is the backlog that wakes the writer before its tick.
	accessLogWake = 32 << 10
	// accessLogFlush bounds how old an unwritten line can get.
	accessLogFlush = time.Second
)

func newAccessLog(w io.Writer, json bool) *accessLog {
	return &accessLog{
		backlog: make([]byte, 0, accessLogWake+4096),
		wake:    make(chan struct{}, 1),
		flush:   accessLogFlush,
		out:     w,
		json:    json,
		done:    make(chan struct{}),
	}
}

// Log formats an entry into the backlog; it never waits for the sink.
func (l *accessLog) Log(e *accessEntry) {
	if l == nil {
		return
	}
	l.mu.Lock()
	n := len(l.backlog)
	if n >= accessLogBacklog {
		l.mu.Unlock()
		l.dropped.Add(1)
		return
	}
	l.backlog = l.format(l.backlog, e)
	full := n < accessLogWake && len(l.backlog) >= accessLogWake
	l.mu.Unlock()
	if full {
		select {
		case l.wake <- struct{}{}:
		default: // already woken
		}
	}
}

// Dropped is the number of lines lost to a slow sink: those the backlog
// here refused, and those the writer dropped itself when it counts them
// (a logsink.Sink behind a file or syslog collector never blocks either).
func (l *accessLog) Dropped() uint64 {
	n := l.dropped.Load()
	if c, ok := l.out.(interface{ Dropped() uint64 }); ok {
		n += c.Dropped()
	}
	return n
}

// Run writes the backlog when it passes accessLogWake, every
// accessLogFlush, and once more when ctx ends; then it returns. Call it
// once.
func (l *accessLog) Run(ctx context.Context) {
	defer close(l.done)
	tick := time.NewTicker(l.flush)
	defer tick.Stop()
	for {
		select {
		case <-l.wake:
		case <-tick.C:
		case <-ctx.Done():
			l.writeBacklog()
			return
		}
		l.writeBacklog()
	}
}

// writeBacklog takes the backlog, leaving the previous batch's buffer in
// its place, and writes it outside the lock.
func (l *accessLog) writeBacklog() {
	l.mu.Lock()
	batch := l.backlog
	l.backlog, l.spare = l.spare[:0], nil
	l.mu.Unlock()
	if len(batch) > 0 {
		l.writeBatch(batch)
	}
	if cap(batch) > 4*accessLogWake {
		batch = nil // after a stall: do not keep a megabyte for good
	}
	l.mu.Lock()
	l.spare = batch
	l.mu.Unlock()
}

// writeBatch writes whole lines: at once to a file, one by one to a sink
// that makes a message of each write (syslog). Every line ends in its
// only '\n': formats escape control characters in fields and refuse them
// in literals.
func (l *accessLog) writeBatch(b []byte) {
	if !l.lines {
		l.out.Write(b) //nolint:errcheck // a failing sink drops lines; nothing else to do
		return
	}
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n') + 1
		if i == 0 {
			i = len(b)
		}
		l.out.Write(b[:i]) //nolint:errcheck
		b = b[i:]
	}
}

// Wait returns when Run has written the backlog and stopped.
func (l *accessLog) Wait() { <-l.done }

func (l *accessLog) format(b []byte, e *accessEntry) []byte {
	if l.custom != nil {
		f := logsink.AccessFields{
			Time: e.Time, ClientIP: e.ClientIP, Method: e.Method, Host: e.Host, Path: e.Path,
			Status: e.Status, Bytes: e.Bytes, Duration: e.Duration, App: e.App, Backend: e.Backend,
			RequestID: e.RequestID, Referer: e.Referer, UserAgent: e.UserAgent, TLSVersion: e.TLS,
			Sticky: e.Sticky.String(), Attempts: e.Attempts, Proto: e.Proto,
		}
		return l.custom.Append(b, &f)
	}
	if l.json {
		return formatJSON(b, e)
	}
	return formatText(b, e)
}

// formatText writes one line:
//
//	2026-11-30T04:35:08.123Z 203.0.113.9 "GET shop.example.com /cart" 200 1234 0.0012 app=shop backend=ab12 tls=1.3 sticky=hit
func formatText(b []byte, e *accessEntry) []byte {
	b = logsink.AppendTimeMillis(b, e.Time)
	b = append(b, ' ')
	b = appendOr(b, e.ClientIP)
	b = append(b, " \""...)
	b = appendSafe(b, e.Method)
	b = append(b, ' ')
	b = appendSafe(b, e.Host)
	b = append(b, ' ')
	b = appendSafe(b, e.Path)
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, e.Bytes, 10)
	b = append(b, ' ')
	b = logsink.AppendSeconds(b, e.Duration)
	b = append(b, " app="...)
	b = appendSafe(b, e.App)
	b = append(b, " backend="...)
	b = appendOr(b, e.Backend)
	b = append(b, " tls="...)
	b = append(b, tlsVersionName(e.TLS)...)
	b = append(b, " sticky="...)
	b = append(b, e.Sticky.String()...)
	if e.Attempts > 1 {
		b = append(b, " attempts="...)
		b = strconv.AppendInt(b, int64(e.Attempts), 10)
	}
	if e.RequestID != "" {
		b = append(b, " id="...)
		b = appendSafe(b, e.RequestID)
	}
	return append(b, '\n')
}

func formatJSON(b []byte, e *accessEntry) []byte {
	b = append(b, `{"time":"`...)
	b = logsink.AppendTimeMillis(b, e.Time)
	b = append(b, `","client_ip":`...)
	b = appendJSONString(b, e.ClientIP)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, e.Method)
	b = append(b, `,"host":`...)
	b = appendJSONString(b, e.Host)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, e.Path)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, e.Bytes, 10)
	b = append(b, `,"duration":`...)
	b = logsink.AppendSeconds(b, e.Duration)
	b = append(b, `,"app":`...)
	b = appendJSONString(b, e.App)
	b = append(b, `,"backend":`...)
	b = appendJSONString(b, e.Backend)
	b = append(b, `,"tls":"`...)
	b = append(b, tlsVersionName(e.TLS)...)
	b = append(b, `","sticky":"`...)
	b = append(b, e.Sticky.String()...)
	b = append(b, '"')
	if e.Attempts > 1 {
		b = append(b, `,"attempts":`...)
		b = strconv.AppendInt(b, int64(e.Attempts), 10)
	}
	if e.RequestID != "" {
		b = append(b, `,"request_id":`...)
		b = appendJSONString(b, e.RequestID)
	}
	return append(b, "}\n"...)
}

// appendJSONString writes s as a JSON string, with logsink's escaper:
// invalid UTF-8 becomes U+FFFD and control characters are escaped, so
// every line is valid JSON whatever bytes a client sent.
func appendJSONString(b []byte, s string) []byte { return logsink.AppendJSONString(b, s) }

// appendSafe copies s, replacing bytes that could forge a log line or break
// a terminal (control characters, quotes, spaces are kept out of fields).
func appendSafe(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	// Safe runs are copied whole: a byte at a time cost 1 % of S4's CPU.
	from := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == '"' || c == 0x7f || c == '\\' {
			b = append(b, s[from:i]...)
			b = append(b, '\\', 'x', hexDigit[c>>4], hexDigit[c&15])
			from = i + 1
		}
	}
	return append(b, s[from:]...)
}

const hexDigit = "0123456789abcdef"

func appendOr(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	return appendSafe(b, s)
}

func tlsVersionName(v uint16) string {
	switch v {
	case 0:
		return "-"
	case tls.VersionTLS13:
		return "1.3"
	case tls.VersionTLS12:
		return "1.2"
	}
	return "other"
}
