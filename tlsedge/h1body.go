package tlsedge

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"time"

	"github.com/tlsedge/tlsedge/httpsyntax"
)

// h1Body is the request body of one HTTP/1.1 request: either exactly n
// bytes or chunked (RFC 9112 7.1). One is reused per connection; Close
// does nothing, the connection loop decides what to do with an unread rest.
type h1Body struct {
	br        *bufio.Reader
	conn      net.Conn      // for the idle deadline of body reads
	timeout   time.Duration // longest pause of the client; 0: none
	armed     bool          // a read deadline is set
	chunked   bool
	left      int64 // bytes left in the body (fixed) or in the chunk (chunked)
	done      bool
	err       error
	continue_ func() error // sends "100 Continue" before the first read; nil once sent
}

var (
	errBodyTooShort = errors.New("request body: connection closed before Content-Length bytes")
	errBadChunk     = errors.New("request body: malformed chunked encoding")
)

// maxChunkLine bounds a chunk-size line with extensions (HAProxy and nginx
// use similar bounds); longer ones are refused.
const maxChunkLine = 4096

func (b *h1Body) reset(br *bufio.Reader, head *requestHead, cont func() error) {
	*b = h1Body{br: br, chunked: head.chunked, left: head.length, continue_: cont}
	if head.chunked {
		b.left = 0
	} else if head.length <= 0 {
		b.done = true
	}
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.done {
		return 0, io.EOF
	}
	if b.continue_ != nil {
		if err := b.continue_(); err != nil {
			b.err = err
			return 0, err
		}
		b.continue_ = nil
	}
	if b.chunked && b.left == 0 {
		if err := b.nextChunk(); err != nil {
			b.err = err
			return 0, err
		}
		if b.done {
			return 0, io.EOF
		}
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	b.arm()
	n, err := b.br.Read(p)
	b.left -= int64(n)
	if b.left == 0 {
		if b.chunked {
			if e := b.chunkEnd(); e != nil {
				b.err = e
				return n, e
			}
		} else {
			b.done = true
		}
	}
	if err == io.EOF {
		if b.left > 0 {
			err = errBodyTooShort
			if b.chunked {
				err = errBadChunk
			}
			b.err = err
		}
	}
	return n, err
}

// arm sets the idle deadline before a read that will wait for the
// client: a body that stops coming for longer than timeout fails with a
// timeout (the proxy answers 408 or drops the request) instead of holding
// a backend connection (slowloris on the body).
func (b *h1Body) arm() {
	if b.timeout <= 0 || b.conn == nil || b.br.Buffered() > 0 {
		return
	}
	b.conn.SetReadDeadline(time.Now().Add(b.timeout)) //nolint:errcheck // a dead conn fails the read
	b.armed = true
}

// disarm clears the deadline once the body is done, so a hijacked
// connection (an upgrade) does not inherit it.
func (b *h1Body) disarm() {
	if b.armed {
		b.conn.SetReadDeadline(time.Time{}) //nolint:errcheck
		b.armed = false
	}
}

// Close is a no-op: the connection loop drains or closes.
func (b *h1Body) Close() error { return nil }

// nextChunk reads a chunk-size line; a zero size ends the body after the
// trailer section, which is read and dropped.
func (b *h1Body) nextChunk() error {
	b.arm()
	line, err := readBodyLine(b.br)
	if err != nil {
		return err
	}
	n, ok := httpsyntax.ParseChunkSize(line)
	if !ok {
		return errBadChunk
	}
	if n == 0 {
		// Trailer section: field lines until an empty line. Dropped: the
		// backend request is re-framed and trailers are rarely used.
		for i := 0; ; i++ {
			l, err := readBodyLine(b.br)
			if err != nil {
				return err
			}
			if len(l) == 0 {
				break
			}
			if i == maxHeaderFields {
				return errBadChunk
			}
		}
		b.done = true
		return nil
	}
	b.left = n
	return nil
}

// chunkEnd consumes the CRLF after a chunk's data.
func (b *h1Body) chunkEnd() error {
	line, err := readBodyLine(b.br)
	if err != nil {
		return err
	}
	if len(line) != 0 {
		return errBadChunk
	}
	return nil
}

// readBodyLine reads a CRLF- (or LF-) terminated line of at most
// maxChunkLine bytes, without the terminator. The slice is valid until the
// next read.
func readBodyLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull || len(line) > maxChunkLine {
		return nil, errBadChunk
	}
	if err != nil {
		if err == io.EOF {
			return nil, errBadChunk
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, errBadChunk
	}
	return line, nil
}

// drain reads what the handler left of the body, up to max bytes, so the
// connection can carry the next request. It reports whether it reached
// the end.
func (b *h1Body) drain(max int64) bool {
	if b.done && b.err == nil {
		return true
	}
	if b.err != nil || b.continue_ != nil {
		// Never asked for: the client still waits for 100 Continue, so
		// the body is not coming; the connection cannot be reused.
		return false
	}
	n, err := io.CopyN(io.Discard, b, max)
	return err == io.EOF && n <= max
}
