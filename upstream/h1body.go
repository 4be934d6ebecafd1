package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"

	"github.com/tlsedge/tlsedge/httpsyntax"
)

var (
	errChunkLine = &protocolError{"bad chunk size line"}
	errChunkEnd  = &protocolError{"chunk data not followed by CRLF"}
	errTrailers  = &protocolError{"bad trailer section"}
)

// maxTrailerBytes bounds the trailer section of a chunked response.
const maxTrailerBytes = 64 << 10

// bodyOut is the client side of a response body copy.
type bodyOut struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	// stream: flush before every wait for the backend, so that a response
	// without a length (or an event stream) reaches the client as it is
	// produced rather than when a buffer fills, and with no more flushes
	// than waits.
	stream bool
	dirty  bool // written since the last flush
}

// write sends p to the client.
func (o *bodyOut) write(p []byte) error {
	if _, err := o.w.Write(p); err != nil {
		return &clientWriteError{err: err}
	}
	o.dirty = true
	return nil
}

// wait is called before a read from the backend that may block: what was
// written so far goes out first.
func (o *bodyOut) wait() error {
	if !o.stream || !o.dirty {
		return nil
	}
	o.dirty = false
	if o.rc == nil {
		o.rc = http.NewResponseController(o.w) // streaming responses only
	}
	err := o.rc.Flush()
	if err == nil {
		return nil
	}
	if errors.Is(err, http.ErrNotSupported) {
		o.stream = false // the writer cannot flush; don't ask again
		return nil
	}
	return &clientWriteError{err: err}
}

// copyN copies exactly n bytes of body from br to o. What br already
// buffers is written from br's own buffer; the rest is read straight into
// the copy buffer (reads of 32 KiB bypass br's 8 KiB buffer).
func (st *attempt) copyN(o *bodyOut, br *bufio.Reader, n int64) error {
	for n > 0 {
		if b := br.Buffered(); b > 0 {
			p, _ := br.Peek(int(min(int64(b), n))) // cannot fail: buffered
			n -= int64(len(p))
			err := o.write(p)
			_, _ = br.Discard(len(p))
			if err != nil {
				return err
			}
			continue
		}
		if err := o.wait(); err != nil {
			return err
		}
		buf := st.copyBuffer()
		k, err := br.Read(buf[:min(int64(len(buf)), n)])
		if k > 0 {
			n -= int64(k)
			if werr := o.write(buf[:k]); werr != nil {
				return werr
			}
		}
		if err != nil && n > 0 {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return &backendError{op: "read response body", err: err}
		}
	}
	return nil
}

// copyToEOF copies a body that ends when the backend closes.
func (st *attempt) copyToEOF(o *bodyOut, br *bufio.Reader) error {
	for {
		if br.Buffered() == 0 {
			if err := o.wait(); err != nil {
				return err
			}
		}
		buf := st.copyBuffer()
		k, err := br.Read(buf)
		if k > 0 {
			if werr := o.write(buf[:k]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return &backendError{op: "read response body", err: err}
		}
	}
}

// lineBuffered reports whether br holds a whole line, so that reading it
// will not wait for the backend.
func lineBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.IndexByte(b, '\n') >= 0
}

// copyChunked decodes a chunked body from br to o; the frontend frames it
// again for its client. Trailer fields are added to trailer under
// http.TrailerPrefix, which net/http's servers send as trailers.
func (st *attempt) copyChunked(o *bodyOut, br *bufio.Reader, trailer http.Header) error {
	for {
		if !lineBuffered(br) {
			if err := o.wait(); err != nil {
				return err
			}
		}
		line, err := br.ReadSlice('\n')
		if err != nil {
			return chunkReadError(err)
		}
		size, ok := parseChunkSize(line)
		if !ok {
			return &backendError{op: "read response body", err: errChunkLine}
		}
		if size == 0 {
			break
		}
		if err := st.copyN(o, br, size); err != nil {
			return err
		}
		if br.Buffered() < 2 {
			if err := o.wait(); err != nil {
				return err
			}
		}
		if err := readCRLF(br); err != nil {
			return err
		}
	}
	if !lineBuffered(br) {
		if err := o.wait(); err != nil {
			return err
		}
	}
	return readTrailers(br, trailer)
}

// readCRLF reads the CRLF that ends a chunk's data.
func readCRLF(br *bufio.Reader) error {
	for _, want := range [2]byte{'\r', '\n'} {
		c, err := br.ReadByte()
		if err != nil {
			return chunkReadError(err)
		}
		if c != want {
			return &backendError{op: "read response body", err: errChunkEnd}
		}
	}
	return nil
}

func chunkReadError(err error) error {
	switch err {
	case io.EOF:
		err = io.ErrUnexpectedEOF
	case bufio.ErrBufferFull:
		err = errChunkLine // a size line longer than 8 KiB
	}
	return &backendError{op: "read response body", err: err}
}

// parseChunkSize reads "hex-size [; extensions] CRLF" (RFC 9112 section
// 7.1). Extensions are checked for control characters and ignored. 15 hex
// digits at most, so the size fits an int64.
func parseChunkSize(line []byte) (int64, bool) {
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return 0, false
	}
	return httpsyntax.ParseChunkSize(line[:len(line)-2])
}

// readTrailers reads the trailer section after the last chunk, up to the
// empty line, into dst under http.TrailerPrefix. Hop-by-hop and framing
// fields are dropped, as in heads.
func readTrailers(br *bufio.Reader, dst http.Header) error {
	read := 0
	for {
		line, err := br.ReadSlice('\n')
		read += len(line)
		if err != nil {
			return chunkReadError(err)
		}
		if read > maxTrailerBytes || len(line) < 2 || line[len(line)-2] != '\r' {
			return &backendError{op: "read response trailers", err: errTrailers}
		}
		line = line[:len(line)-2]
		if len(line) == 0 {
			return nil
		}
		if bytes.IndexByte(line, '\r') >= 0 {
			return &backendError{op: "read response trailers", err: errTrailers}
		}
		name, value, err := splitField(line)
		if err != nil {
			return &backendError{op: "read response trailers", err: err}
		}
		if classifyField(name) != fieldPlain {
			continue
		}
		key := http.TrailerPrefix + http.CanonicalHeaderKey(string(name))
		dst[key] = append(dst[key], string(value))
	}
}
