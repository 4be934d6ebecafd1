package filter

// Response buffering (the download half of spoon-feeding; the upload half
// is in buffer.go). A slow client reading a response must not hold the
// backend connection it came from: ResponseBuffer lets next write at the
// backend's speed into memory, so next returns and gives its connection
// back, and then writes the response to the client at the client's speed
// from the handler goroutine, which costs no backend anything.
//
// Nothing of the response leaves before next returns or the body outgrows
// the buffer, so a whole response gets an exact Content-Length. A flush
// does not end the holding: proxies flush every read of a response
// without Content-Length (httputil.ReverseProxy, tlsedge's own), which
// would otherwise exempt every chunked backend answer. What must not wait
// is known by its head and passed through untouched: text/event-stream,
// application/grpc, a backend's "X-Accel-Buffering: no" (nginx's
// convention), responses announcing trailers, 101 Switching Protocols and
// hijacked connections.
//
// Headers are not copied: next's changes to w.Header() after WriteHeader
// still count while the response is buffered (net/http would ignore them).

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// ResponseBufferConfig sizes the response buffer. The zero value is the
// default; the struct is not used after ResponseBuffer returns.
type ResponseBufferConfig struct {
	// Max is the largest body held back (default 1 MiB). A longer body
	// is sent as it comes once it outgrows Max: what was held goes out
	// first, without a Content-Length unless next set one, and next
	// then writes at the client's speed.
	Max int64
}

// DefaultResponseBufferMax is ResponseBufferConfig.Max's default.
const DefaultResponseBufferMax = 1 << 20

func (c *ResponseBufferConfig) max() int64 {
	if c.Max == 0 {
		return DefaultResponseBufferMax
	}
	return c.Max
}

// ResponseBuffer returns next with its responses held in memory until it
// returns. The memory comes from a pool shared by all instances, in 32
// KiB chunks, so a small response costs one chunk and a large one never
// copies as it grows.
func ResponseBuffer(next http.Handler, cfg ResponseBufferConfig) (http.Handler, error) {
	if cfg.Max < 0 {
		return nil, fmt.Errorf("response buffer: negative max %d", cfg.Max)
	}
	return &responseBuffer{next: next, max: cfg.max()}, nil
}

type responseBuffer struct {
	next http.Handler
	max  int64
}

func (f *responseBuffer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bw := &bufWriter{ResponseWriter: w, max: f.max, head: r.Method == http.MethodHead}
	// After a panic too: nothing holds the chunks then. Not finish,
	// though: a panicking next (ReverseProxy's ErrAbortHandler when the
	// backend broke off) must not have its partial body sent as whole.
	defer bw.buf.free()
	f.next.ServeHTTP(bw, r)
	bw.finish()
}

// The states of a bufWriter.
const (
	bufHolding  = iota // nothing sent yet
	bufPassing         // the head is out; writes go straight through
	bufFinished        // next returned or hijacked the connection
)

// bufWriter holds next's response. Like any ResponseWriter it is used by
// one goroutine at a time (ReverseProxy's delayed flushes take its lock).
type bufWriter struct {
	http.ResponseWriter
	max   int64
	head  bool // a HEAD request
	state int
	code  int // next's status; 0: none yet
	buf   memBuf
}

var (
	_ http.Flusher  = (*bufWriter)(nil)
	_ http.Hijacker = (*bufWriter)(nil)
)

// Unwrap lets http.ResponseController reach the client's writer.
func (w *bufWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *bufWriter) WriteHeader(code int) {
	if w.state != bufHolding {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	if code < 100 || code > 999 {
		// As net/http does, at next's call rather than at ours later.
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.ResponseWriter.WriteHeader(code) // 1xx (103 Early Hints) is meant to go now
		return
	}
	if w.code != 0 {
		return // superfluous: the first one counts, as in net/http
	}
	w.code = code
	if code == http.StatusSwitchingProtocols || mustStream(w.Header()) {
		w.passThrough() //nolint:errcheck // no body yet: nothing can fail
	}
}

func (w *bufWriter) Write(p []byte) (int, error) {
	if w.state == bufHolding && w.code == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.state != bufHolding {
		return w.ResponseWriter.Write(p)
	}
	if !statusAllowsBody(w.code) {
		return 0, http.ErrBodyNotAllowed
	}
	if int64(w.buf.n)+int64(len(p)) > w.max {
		if err := w.passThrough(); err != nil {
			return 0, err
		}
		return w.ResponseWriter.Write(p)
	}
	return w.buf.Write(p)
}

// FlushError is what http.ResponseController.Flush calls. While the
// response is held, a flush is a no-op (see the top of the file); after,
// it reaches the client.
func (w *bufWriter) FlushError() error {
	if w.state == bufHolding {
		return nil
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Flush is FlushError for callers that assert http.Flusher.
func (w *bufWriter) Flush() { w.FlushError() } //nolint:errcheck // http.Flusher has no error

// Hijack sends what is held (as net/http flushes before hijacking) and
// hands over the connection; the filter then stays out of the way.
func (w *bufWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.state == bufHolding && (w.code != 0 || w.buf.n > 0) {
		if err := w.passThrough(); err != nil {
			return nil, nil, err
		}
	}
	conn, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.state = bufFinished
	}
	return conn, rw, err
}

// passThrough sends the head and what is held, and stops holding.
func (w *bufWriter) passThrough() error {
	w.state = bufPassing
	if w.code != 0 {
		w.ResponseWriter.WriteHeader(w.code)
	}
	err := w.buf.writeTo(w.ResponseWriter)
	w.buf.free()
	return err
}

// finish sends a response held whole, with its exact length where
// net/http would have given one.
func (w *bufWriter) finish() {
	if w.state != bufHolding {
		return
	}
	w.state = bufFinished
	if w.code == 0 {
		return // nothing written: net/http's empty 200
	}
	h := w.Header()
	if statusAllowsBody(w.code) && (!w.head || w.buf.n > 0) &&
		h["Content-Length"] == nil && h["Transfer-Encoding"] == nil {
		h["Content-Length"] = []string{strconv.Itoa(w.buf.n)}
	}
	w.ResponseWriter.WriteHeader(w.code)
	w.buf.writeTo(w.ResponseWriter) //nolint:errcheck // the client may be gone
}

// mustStream tells responses that buffering would break: Server-Sent
// Events, and announced trailers (net/http drops them from a response
// with a Content-Length, and they come after the body anyway).
func mustStream(h http.Header) bool {
	if h["Trailer"] != nil {
		return true
	}
	if xa := h["X-Accel-Buffering"]; len(xa) > 0 && strings.EqualFold(strings.TrimSpace(xa[0]), "no") {
		return true
	}
	ct := h["Content-Type"]
	if len(ct) == 0 {
		return false
	}
	v := strings.TrimLeft(ct[0], " \t")
	return hasMediaType(v, "text/event-stream") || hasMediaType(v, "application/grpc")
}

// hasMediaType reports whether the Content-Type value v is of type mt
// (parameters and, for application/grpc, +proto style suffixes allowed).
func hasMediaType(v, mt string) bool {
	if len(v) < len(mt) || !strings.EqualFold(v[:len(mt)], mt) {
		return false
	}
	v = v[len(mt):]
	return v == "" || v[0] == ';' || v[0] == ' ' || v[0] == '\t' || v[0] == '+'
}

// statusAllowsBody is net/http's rule (RFC 9110 sections 6.4.1, 15.3.5, 15.4.5).
func statusAllowsBody(code int) bool {
	return code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
}

// bufChunkSize is the unit of the pooled memory both buffers use.
const bufChunkSize = 32 << 10

var bufChunkPool = sync.Pool{New: func() any { b := make([]byte, bufChunkSize); return &b }}

// memBuf is bytes in pooled chunks: growing never copies, and free gives
// every chunk back. Not safe for concurrent writes; concurrent readAt
// calls are fine once writing is over.
type memBuf struct {
	chunks []*[]byte
	n      int // bytes held
}

// room is the free space of the last chunk, taking a new one when full.
func (b *memBuf) room() []byte {
	if b.n == len(b.chunks)*bufChunkSize {
		b.chunks = append(b.chunks, bufChunkPool.Get().(*[]byte))
	}
	return (*b.chunks[len(b.chunks)-1])[b.n%bufChunkSize:]
}

// Write appends p; it never fails.
func (b *memBuf) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		k := copy(b.room(), p)
		b.n += k
		p = p[k:]
	}
	return total, nil
}

// readFrom reads r into b until r ends (eof) or b holds limit bytes.
func (b *memBuf) readFrom(r io.Reader, limit int) (eof bool, err error) {
	for b.n < limit {
		room := b.room()
		if len(room) > limit-b.n {
			room = room[:limit-b.n]
		}
		n, err := r.Read(room)
		b.n += n
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
	return false, nil
}

// readAt copies from offset off into p, and says how much.
func (b *memBuf) readAt(p []byte, off int) int {
	n := 0
	for n < len(p) && off < b.n {
		c := *b.chunks[off/bufChunkSize]
		end := min(b.n-off/bufChunkSize*bufChunkSize, bufChunkSize)
		k := copy(p[n:], c[off%bufChunkSize:end])
		n += k
		off += k
	}
	return n
}

func (b *memBuf) writeTo(w io.Writer) error {
	for i, c := range b.chunks {
		k := min(b.n-i*bufChunkSize, bufChunkSize)
		if k == 0 {
			break // a chunk taken for a read that got nothing
		}
		if _, err := w.Write((*c)[:k]); err != nil {
			return err
		}
	}
	return nil
}

func (b *memBuf) free() {
	for _, c := range b.chunks {
		bufChunkPool.Put(c)
	}
	b.chunks, b.n = nil, 0
}
