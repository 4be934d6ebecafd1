package filter

// Request buffering ("spoon-feeding", the upload half; the download half
// is in buffer_response.go). A slow client uploading a body must not hold
// a backend connection for the length of the upload: RequestBuffer reads
// the whole body first, in memory and then in an unlinked temp file, and
// only then calls next, which sees a complete, replayable body of known
// length.
//
// Ownership: the buffered body belongs to the filter. It is released (the
// memory back to the pool, the file closed) when next has returned and
// every reader handed out has been closed; r.Body is closed by the filter
// itself when next returns, readers made by r.GetBody must be closed by
// whoever asked for them (http.Transport always closes a request body).
// A read after the release fails; it never sees another request's bytes.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
)

// RequestBufferConfig sizes the request buffer. The zero value is the
// default; the struct is not used after RequestBuffer returns.
type RequestBufferConfig struct {
	// Memory is how many bytes of a body are kept in memory (default
	// 64 KiB); the rest goes to a temp file. More than Max counts as Max.
	Memory int64
	// Max is the largest body buffered, memory and file together
	// (default 8 MiB). A longer body is answered 413, whether its
	// Content-Length says so or a chunked body turns out longer: nothing
	// has reached the backend yet, so refusing is clean.
	Max int64
	// TempDir holds the temp files (default os.TempDir(), read at each
	// request). Files are unlinked as soon as they are created.
	TempDir string
}

// The defaults.
const (
	DefaultRequestBufferMemory = 64 << 10
	DefaultRequestBufferMax    = 8 << 20
)

func (c *RequestBufferConfig) max() int64 {
	if c.Max == 0 {
		return DefaultRequestBufferMax
	}
	return c.Max
}

func (c *RequestBufferConfig) memory() int64 {
	m := c.Memory
	if m == 0 {
		m = DefaultRequestBufferMemory
	}
	return min(m, c.max())
}

// RequestBuffer returns next behind a buffer that reads each request body
// whole before next runs. next then gets r.Body replayable from the
// buffer, r.ContentLength and the Content-Length header set to the real
// length, no Transfer-Encoding, no Expect (the filter has already asked
// for the body), and r.GetBody for retries. Requests without a body pass
// straight through.
//
// A body that cannot be read whole is answered by the filter and next
// never runs: 413 over Max, 408 when the read timed out (the server's
// ReadTimeout), 400 when the client went away, 500 when the temp file
// could not be written. These answers are marked for ErrorPages.
func RequestBuffer(next http.Handler, cfg RequestBufferConfig) (http.Handler, error) {
	if cfg.Memory < 0 || cfg.Max < 0 {
		return nil, fmt.Errorf("request buffer: negative size (memory %d, max %d)", cfg.Memory, cfg.Max)
	}
	if cfg.TempDir != "" {
		fi, err := os.Stat(cfg.TempDir)
		if err != nil {
			return nil, fmt.Errorf("request buffer: temp dir: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("request buffer: temp dir %s is not a directory", cfg.TempDir)
		}
	}
	return &requestBuffer{next: next, memory: cfg.memory(), max: cfg.max(), tempDir: cfg.TempDir}, nil
}

type requestBuffer struct {
	next        http.Handler
	memory, max int64
	tempDir     string // "": os.TempDir()
}

// errSpill marks a failure of our own temp file, not of the client.
var errSpill = errors.New("request buffer: temp file")

func (f *requestBuffer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody {
		f.next.ServeHTTP(w, r)
		return
	}
	if r.ContentLength > f.max {
		f.refuse(w, http.StatusRequestEntityTooLarge)
		return
	}
	s, err := f.fill(r.Body)
	if err != nil {
		f.refuse(w, bodyErrorStatus(err))
		return
	}
	defer s.release() // the handler's reference

	r.TransferEncoding = nil
	r.ContentLength = s.size
	if r.Header != nil {
		delete(r.Header, "Transfer-Encoding")
		delete(r.Header, "Expect") // 100-continue was ours to send, and is sent
		r.Header["Content-Length"] = []string{strconv.FormatInt(s.size, 10)}
	}
	if s.size == 0 {
		// http.Transport sends NoBody as "no body"; any other Body with
		// ContentLength 0 as a chunked body of unknown length.
		r.Body = http.NoBody
		r.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
		f.next.ServeHTTP(w, r)
		return
	}
	body, _ := s.reader() // cannot fail: we hold a reference
	defer body.Close()
	r.Body = body
	r.GetBody = s.reader
	f.next.ServeHTTP(w, r)
}

// refuse answers a body that was not buffered. The rest of the body, if
// any, is not read: the connection closes after the answer.
func (f *requestBuffer) refuse(w http.ResponseWriter, code int) {
	var msg string
	switch code {
	case http.StatusRequestEntityTooLarge:
		msg = "413 request body over " + strconv.FormatInt(f.max, 10) + " bytes\n"
	case http.StatusRequestTimeout:
		msg = "408 request body not received in time\n"
	case http.StatusBadRequest:
		msg = "400 request body incomplete\n"
	default:
		msg = "500 request body could not be buffered\n"
	}
	h := w.Header()
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	h["Connection"] = []string{"close"}
	MarkGenerated(w)
	w.WriteHeader(code)
	io.WriteString(w, msg) //nolint:errcheck // the client may be gone
}

// bodyErrorStatus maps a failed body read to the answer.
func bodyErrorStatus(err error) int {
	var tooLarge *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.Is(err, ErrBodyTooLarge) || errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errSpill):
		return http.StatusInternalServerError
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return http.StatusRequestTimeout
	default:
		return http.StatusBadRequest // io.ErrUnexpectedEOF, a reset, a bad chunk
	}
}

// fill reads body to its end into a new spool bufHolding one reference.
func (f *requestBuffer) fill(body io.Reader) (*spool, error) {
	s := &spool{}
	s.refs.Store(1)
	eof, err := s.mem.readFrom(body, int(f.memory))
	s.size = int64(s.mem.n)
	if err == nil && !eof {
		err = f.spill(s, body)
	}
	if err != nil {
		s.release()
		return nil, err
	}
	return s, nil
}

// spill copies the rest of body, after the memory part, to a temp file
// created on the first byte that does not fit.
func (f *requestBuffer) spill(s *spool, body io.Reader) error {
	scratch := bufChunkPool.Get().(*[]byte)
	defer bufChunkPool.Put(scratch)
	for {
		n, err := body.Read(*scratch)
		if n > 0 {
			if s.size+int64(n) > f.max {
				return ErrBodyTooLarge
			}
			if s.file == nil {
				if err := s.createFile(f.tempDir); err != nil {
					return err
				}
			}
			if _, err := s.file.Write((*scratch)[:n]); err != nil {
				return fmt.Errorf("%w: %w", errSpill, err)
			}
			s.size += int64(n)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// spool is one buffered body: the first bytes in memory, the rest in a
// file. It is immutable once filled; refs counts the handler and every
// open reader, and the last to let go frees it.
type spool struct {
	mem  memBuf
	file *os.File // nil: the body fit in memory
	name string   // the file's name while it still has one (unlink failed)
	size int64
	refs atomic.Int32
}

func (s *spool) createFile(dir string) error {
	if dir == "" {
		dir = os.TempDir()
	}
	file, err := os.CreateTemp(dir, "tlsedge-body-*")
	if err != nil {
		return fmt.Errorf("%w: %w", errSpill, err)
	}
	s.file = file
	// Unlink now: the open file stays readable, and a crash leaves
	// nothing behind. Windows refuses; the name is removed on release.
	if os.Remove(file.Name()) != nil {
		s.name = file.Name()
	}
	return nil
}

// acquire takes a reference unless the spool is already freed.
func (s *spool) acquire() bool {
	for {
		n := s.refs.Load()
		if n <= 0 {
			return false
		}
		if s.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (s *spool) release() {
	if s.refs.Add(-1) != 0 {
		return
	}
	s.mem.free()
	if s.file != nil {
		s.file.Close()
		if s.name != "" {
			os.Remove(s.name)
		}
	}
}

// errBodyReleased is GetBody's error once the request is over.
var errBodyReleased = errors.New("request buffer: body already released")

// reader returns a new reader from the start of the body; it is r.GetBody.
func (s *spool) reader() (io.ReadCloser, error) {
	if !s.acquire() {
		return nil, errBodyReleased
	}
	return &spoolReader{s: s}, nil
}

// spoolReader reads a spool. Its Close may come from another goroutine
// than its Reads (http.Transport does that): each Read holds a reference
// of its own, so the memory it copies from cannot be recycled under it.
type spoolReader struct {
	s      *spool
	off    int64
	closed atomic.Bool
}

func (r *spoolReader) Read(p []byte) (int, error) {
	s := r.s
	if r.closed.Load() {
		return 0, http.ErrBodyReadAfterClose
	}
	if r.off >= s.size {
		return 0, io.EOF
	}
	if !s.acquire() {
		return 0, http.ErrBodyReadAfterClose
	}
	defer s.release()
	if rest := s.size - r.off; int64(len(p)) > rest {
		p = p[:rest]
	}
	var n int
	var err error
	if mem := int64(s.mem.n); r.off < mem {
		n = s.mem.readAt(p, int(r.off))
	} else {
		n, err = s.file.ReadAt(p, r.off-mem)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // shorter than written: never a clean end
		}
	}
	r.off += int64(n)
	return n, err
}

func (r *spoolReader) Close() error {
	if r.closed.CompareAndSwap(false, true) {
		r.s.release()
	}
	return nil
}
