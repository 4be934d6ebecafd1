package tlsedge

import (
	"net/http"
	"strings"
	"time"

	"golang.org/x/net/http2"

	"github.com/tlsedge/tlsedge/httpsyntax"
)

// h2RespWriter is the http.ResponseWriter of an HTTP/2 stream, reused with
// the stream. The head is encoded when it goes out, together with the
// start of the body: a small response is one HEADERS and one DATA frame
// (END_STREAM) written under one lock, when the handler returns. Fields
// changed after WriteHeader and before the first body bytes leave (on a
// full buffer, a Flush, or the handler's return) are sent with the head;
// net/http copies the map at WriteHeader instead, which costs every
// response a copy.
type h2RespWriter struct {
	st         *h2Stream
	c          *h2SrvConn
	respFields        // the header map, or the raw fields standing in for it
	buf        []byte // body bytes not sent yet, at most h2WriterBuf

	status      int
	wroteHeader bool // the status is fixed
	sentHeader  bool // HEADERS went out
	head        bool // the request was HEAD
	noBody      bool
	declared    int64 // Content-Length the handler set, -1 for none
	written     int64
	// autoLength is the Content-Length the head says when the handler
	// set none and the whole body is known (finish), else -1; the head
	// leaves it out when it finds trailers.
	autoLength int
	// prefixTrailers: encoding the head found http.TrailerPrefix keys.
	prefixTrailers bool
	ended          bool          // END_STREAM sent (or the stream abandoned)
	resetCode      http2.ErrCode // RST_STREAM instead of a clean end (a body cut short, a panic)
	err            error
	// rawBlock is the writer's copy of the raw fields' lines from
	// WriteHeader on, as the backend's buffer moves on while the body is
	// read.
	rawBlock []byte
}

// h2WriterBuf is how much of a body is held back so that a small response
// leaves with its head; larger writes go out at once.
const h2WriterBuf = 4 << 10

var (
	_ http.ResponseWriter = (*h2RespWriter)(nil)
	_ http.Flusher        = (*h2RespWriter)(nil)

	_ httpsyntax.RawFieldsWriter = (*h2RespWriter)(nil)
)

func (w *h2RespWriter) reset(st *h2Stream, head bool) {
	hdr, buf, raw, rawBlock := w.hdr, w.buf[:0], w.raw, w.rawBlock
	*w = h2RespWriter{st: st, c: st.c, respFields: respFields{hdr: hdr, raw: raw}, buf: buf, head: head,
		declared: -1, autoLength: -1, rawBlock: rawBlock}
	if w.buf == nil {
		w.buf = make([]byte, 0, h2WriterBuf)
	}
}

// RawFields implements httpsyntax.RawFieldsWriter.
func (w *h2RespWriter) RawFields(take bool) *httpsyntax.RawFields {
	return w.rawFields(take, !w.wroteHeader && !w.ended)
}

func (w *h2RespWriter) WriteHeader(code int) {
	if w.wroteHeader || w.ended {
		return
	}
	if code < 100 || code > 999 {
		code = http.StatusInternalServerError
	}
	if code < 200 {
		// 100 Continue is the server's to send (when the body is read);
		// 101 has no meaning in HTTP/2 (RFC 9113 8.6).
		if code != http.StatusContinue && code != http.StatusSwitchingProtocols {
			w.sendInterim(code)
		}
		return
	}
	if w.rawOn && code != http.StatusNoContent && code != http.StatusNotModified && !w.head && w.raw.Length >= 0 {
		// A sized response whose fields go out as the backend sent them.
		w.rawBlock = w.raw.Own(w.rawBlock)
		w.wroteHeader = true
		w.status = code
		w.declared = w.raw.Length
		return
	}
	h := w.Header()
	w.wroteHeader = true
	w.status = code
	if cl := h["Content-Length"]; len(cl) == 1 {
		if n, ok := parseContentLength(cl[0]); ok {
			w.declared = n
		} else {
			delete(h, "Content-Length")
		}
	} else if len(cl) > 1 {
		delete(h, "Content-Length")
	}
	switch {
	case code == http.StatusNoContent || code == http.StatusNotModified:
		w.noBody = true
		if code == http.StatusNoContent {
			delete(h, "Content-Length")
			w.declared = -1
		}
	case w.head:
		w.noBody = true
	}
}

func (w *h2RespWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.noBody || len(p) == 0 {
		return len(p), nil
	}
	if w.declared >= 0 && w.written+int64(len(p)) > w.declared {
		return 0, errTooMuchBody
	}
	w.written += int64(len(p))
	if len(w.buf)+len(p) <= cap(w.buf) {
		w.buf = append(w.buf, p...)
		return len(p), nil
	}
	if err := w.send(p, false); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteString saves io.WriteString a copy.
func (w *h2RespWriter) WriteString(s string) (int, error) {
	if len(w.buf)+len(s) <= cap(w.buf) && w.wroteHeader && !w.noBody && w.err == nil &&
		(w.declared < 0 || w.written+int64(len(s)) <= w.declared) {
		w.buf = append(w.buf, s...)
		w.written += int64(len(s))
		return len(s), nil
	}
	return w.Write([]byte(s))
}

// Flush sends the head and what is buffered.
func (w *h2RespWriter) Flush() { _ = w.FlushError() }

// FlushError is Flush reporting a stream or client gone; preferred by
// http.ResponseController.
func (w *h2RespWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err == nil && !w.ended {
		if err := w.send(nil, false); err != nil {
			return err
		}
		w.c.wantFlush(true)
	}
	return w.err
}

// SetReadDeadline bounds the wait of the request body's reads, for
// http.ResponseController (the body timeout applies without it).
func (w *h2RespWriter) SetReadDeadline(t time.Time) error {
	if b := w.st.body; b != nil {
		b.setDeadline(t)
	}
	return nil
}

// EnableFullDuplex is for http.ResponseController: HTTP/2 streams are.
func (w *h2RespWriter) EnableFullDuplex() error { return nil }

// send writes the head if it has not gone out, the buffered body and p,
// as the flow-control windows allow (waiting for them), END_STREAM on the
// last frame when end. It does not flush.
func (w *h2RespWriter) send(p []byte, end bool) error {
	c, st := w.c, w.st
	a, b := w.buf, p // a is written before w.buf is appended to again
	w.buf = w.buf[:0]
	for {
		left := len(a) + len(b)
		if left == 0 && w.sentHeader && !end {
			return nil
		}
		n := 0
		if left > 0 {
			var err error
			if n, err = c.takeSendWindow(st, left); err != nil {
				return w.fail(err)
			}
		}
		last := end && n == left
		if !c.lockWriter() || st.reset.Load() {
			c.wmu.Unlock()
			return w.fail(errH2StreamClosed)
		}
		if !w.sentHeader && w.rawOn {
			c.encodeRawHead(w.status, &w.raw)
			w.rawOn = false
			c.writeBlockLocked(st.id, last && left == 0)
			w.sentHeader = true
		} else if !w.sentHeader {
			if c.encodeHead(w.status, w.hdr, w.autoLength) {
				// Trailers follow: the stream does not end here.
				w.prefixTrailers = true
				end, last = false, false
			}
			c.writeBlockLocked(st.id, last && left == 0)
			w.sentHeader = true
		} else if left == 0 {
			c.writeDataLocked(st.id, nil, true) // end is set: an empty DATA ends the stream
		}
		if k := min(n, len(a)); k > 0 {
			c.writeDataLocked(st.id, a[:k], last && k == left)
			a = a[k:]
			n -= k
		}
		if n > 0 {
			c.writeDataLocked(st.id, b[:n], last)
			b = b[n:]
		}
		err := c.werr
		if last {
			st.ended.Store(true)
		}
		c.wmu.Unlock()
		if err != nil {
			return w.fail(errClientGoneW)
		}
		if last {
			w.ended = true
			return nil
		}
		if len(a)+len(b) == 0 {
			return nil
		}
	}
}

func (w *h2RespWriter) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	w.ended = true
	return w.err
}

// finish ends the response after the handler returned: the head, what is
// left of the body, the trailers. A response shorter than its
// Content-Length ends with RST_STREAM(INTERNAL_ERROR), so that the client
// knows it is cut (HTTP/1.1 closes the connection).
func (w *h2RespWriter) finish() {
	if w.ended {
		return
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	// Before the head goes out, encodeHead finds trailer keys on its
	// pass over the fields; after, they are looked for here.
	trailers := len(w.hdr["Trailer"]) > 0 || (w.sentHeader && w.hasPrefixTrailers())
	if !w.sentHeader && w.declared < 0 && !w.noBody && !trailers {
		// The whole body is here: say how long it is.
		w.autoLength = len(w.buf)
	}
	cut := w.declared >= 0 && !w.noBody && w.written < w.declared
	if w.send(nil, !trailers && !cut) != nil {
		return
	}
	trailers = trailers || w.prefixTrailers
	switch {
	case cut:
		w.resetCode = http2.ErrCodeInternal
	case trailers:
		c := w.c
		if c.lockWriter() && !w.st.reset.Load() {
			c.encodeTrailers(w.hdr)
			c.writeBlockLocked(w.st.id, true)
			w.st.ended.Store(true)
		}
		c.wmu.Unlock()
	}
	w.ended = true
	w.c.wantFlush(true)
}

// abort abandons the response after a panic: RST_STREAM(INTERNAL_ERROR).
func (w *h2RespWriter) abort() {
	w.resetCode = http2.ErrCodeInternal
	w.ended = true
}

// hasPrefixTrailers reports whether the handler set http.TrailerPrefix
// keys.
func (w *h2RespWriter) hasPrefixTrailers() bool {
	for k := range w.hdr {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return true
		}
	}
	return false
}

// sendContinue answers "Expect: 100-continue" (the body's first read).
func (w *h2RespWriter) sendContinue() {
	if w.wroteHeader || w.sentHeader || w.ended {
		return
	}
	w.sendInterim(http.StatusContinue)
}

// sendInterim sends a 1xx head (103 Early Hints) with the current fields.
// It is flushed by another goroutine: sendContinue runs under the body's
// lock, which the reader needs to deliver the body.
func (w *h2RespWriter) sendInterim(code int) {
	c := w.c
	if c.lockWriter() && !w.st.reset.Load() {
		c.encodeStatus(code)
		if code != http.StatusContinue {
			for k, vs := range w.Header() {
				c.encodeField(k, vs)
			}
		}
		c.writeBlockLocked(w.st.id, false)
	}
	c.wmu.Unlock()
	c.wantFlush(false)
}

// encodeHead encodes a response head into c.block (under wmu): declared
// trailers are left for encodeTrailers; Date is added unless set.
//
// length >= 0 adds a Content-Length field unless there are trailers. It
// reports whether h has http.TrailerPrefix keys (trailers the handler did
// not declare), which it finds on its one pass over h.
func (c *h2SrvConn) encodeHead(status int, h http.Header, length int) (prefixTrailers bool) {
	c.encodeStatus(status)
	declared := h["Trailer"]
	for k, vs := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			prefixTrailers = true
			continue
		}
		if len(declared) > 0 && isDeclaredTrailer(declared, k) {
			continue
		}
		c.encodeField(k, vs)
	}
	if length >= 0 && !prefixTrailers && len(declared) == 0 {
		c.encodeLength(length)
	}
	if _, ok := h["Date"]; !ok {
		c.encodeDate()
	}
	return prefixTrailers
}

// encodeRawHead encodes a head whose fields came raw from a backend
// (httpsyntax.RawFields) into c.block (under wmu): the kept lines in their
// order, names in lower case, then the added fields; Date unless set. The
// proxy has left out the connection-specific fields, and the lines are
// validated.
func (c *h2SrvConn) encodeRawHead(status int, rf *httpsyntax.RawFields) {
	c.encodeStatus(status)
	for i := range rf.Len() {
		if rf.Kept(i) {
			c.encodeRawField(rf.Name(i), rf.Value(i))
		}
	}
	for i := range rf.NumAdded() {
		c.encodeField(rf.Added(i))
	}
	if !rf.Has("Date") {
		c.encodeDate()
	}
}

// encodeTrailers encodes the trailer section into c.block (under wmu).
func (c *h2SrvConn) encodeTrailers(h http.Header) {
	c.beginBlock()
	for _, decl := range h["Trailer"] {
		for name := range strings.SplitSeq(decl, ",") {
			k := http.CanonicalHeaderKey(httpsyntax.TrimOWS(name))
			if vs := h[k]; len(vs) > 0 {
				c.encodeField(k, vs)
			}
		}
	}
	for k, vs := range h {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			c.encodeField(http.CanonicalHeaderKey(name), vs)
		}
	}
}
