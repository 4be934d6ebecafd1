package tlsedge

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/tlsedge/tlsedge/logsink"
)

// accessEntry is one request, as the access log records it. It is passed
// by value through a channel, so the request path never formats or writes.
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

// accessLog writes entries from one goroutine. Log never blocks: when the
// writer falls behind by accessLogQueue entries, lines are dropped and
// counted, because a stalled disk must not stall requests.
type accessLog struct {
	ch      chan accessEntry
	w       *bufio.Writer
	out     io.Writer // under w: a logsink.Sink may count what it dropped
	json    bool
	custom  *logsink.AccessFormat // nil: text or json above
	lines   bool                  // write each line on its own (syslog)
	dropped atomic.Uint64
	done    chan struct{}
}

const (
	accessLogQueue = 8192
	// accessLogFlush bounds how old an unwritten line can get.
	accessLogFlush = time.Second
)

func newAccessLog(w io.Writer, json bool) *accessLog {
	return &accessLog{
		ch:   make(chan accessEntry, accessLogQueue),
		w:    bufio.NewWriterSize(w, 64<<10),
		out:  w,
		json: json,
		done: make(chan struct{}),
	}
}

// Log queues an entry; it never blocks.
func (l *accessLog) Log(e accessEntry) {
	if l == nil {
		return
	}
	select {
	case l.ch <- e:
	default:
		l.dropped.Add(1)
	}
}

// Dropped is the number of lines lost to a slow sink: those the queue
// here refused, and those the writer dropped itself when it counts them
// (a logsink.Sink behind a file or syslog collector never blocks either).
func (l *accessLog) Dropped() uint64 {
	n := l.dropped.Load()
	if c, ok := l.out.(interface{ Dropped() uint64 }); ok {
		n += c.Dropped()
	}
	return n
}

// Run writes entries until ctx ends, then writes what is queued, flushes
// and returns. Call it once.
func (l *accessLog) Run(ctx context.Context) {
	defer close(l.done)
	tick := time.NewTicker(accessLogFlush)
	defer tick.Stop()
	buf := make([]byte, 0, 512)
	for {
		select {
		case e := <-l.ch:
			buf = l.write(buf, &e)
			buf = l.catchUp(buf)
		case <-tick.C:
			l.w.Flush() //nolint:errcheck
		case <-ctx.Done():
			for {
				select {
				case e := <-l.ch:
					buf = l.format(buf[:0], &e)
					l.w.Write(buf) //nolint:errcheck
				default:
					l.w.Flush() //nolint:errcheck
					return
				}
			}
		}
	}
}

// write formats and writes one entry; buf is the scratch line.
func (l *accessLog) write(buf []byte, e *accessEntry) []byte {
	buf = l.format(buf[:0], e)
	l.w.Write(buf) //nolint:errcheck // a failing sink drops lines; nothing else to do
	if l.lines {
		l.w.Flush() //nolint:errcheck // one syslog message per line
	}
	return buf
}

// catchUpYields bounds how long catchUp keeps the writer off the select
// (ticks and shutdown wait meanwhile).
const catchUpYields = 64

// catchUp writes what else is queued before the writer parks again. An
// entry sent to a writer parked in Run's select wakes it: under load that
// was a wake-up, a goroutine switch and a three-channel select per
// request. Yielding once instead lets the request goroutines run and
// queue more, which are then taken without parking; the writer parks only
// when a yield brought nothing. With nothing else runnable, the yield
// returns at once.
func (l *accessLog) catchUp(buf []byte) []byte {
	for range catchUpYields {
		runtime.Gosched()
		n := 0
		for more := true; more; {
			select {
			case e := <-l.ch:
				buf = l.write(buf, &e)
				n++
			default:
				more = false
			}
		}
		if n == 0 {
			break
		}
	}
	return buf
}

// Wait returns when Run has flushed and stopped.
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
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == '"' || c == 0x7f || c == '\\' {
			b = append(b, '\\', 'x', hexDigit[c>>4], hexDigit[c&15])
			continue
		}
		b = append(b, c)
	}
	return b
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
