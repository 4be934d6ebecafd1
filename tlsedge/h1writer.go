package tlsedge

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tlsedge/tlsedge/httpsyntax"
)

// h1Writer is the http.ResponseWriter of the HTTP/1.1 frontend. One is
// reused per connection. It frames the body the way the handler's headers
// say: Content-Length when set, chunked otherwise (close-delimited for
// HTTP/1.0 clients), nothing for HEAD, 1xx, 204 and 304.
type h1Writer struct {
	conn       *h1Conn
	bw         *bufio.Writer
	respFields // the header map, or the raw fields standing in for it

	status      int
	wroteHeader bool
	head        bool // the request was HEAD: no body bytes
	chunked     bool
	noBody      bool
	declared    int64 // Content-Length the handler set, -1 for none
	written     int64
	closeAfter  bool // send Connection: close and end the connection
	hijacked    bool
	err         error // first write error: the client is gone
	scratch     []byte
}

var (
	errTooMuchBody                     = errors.New("http: wrote more than the declared Content-Length")
	errHijacked                        = errors.New("http: connection has been hijacked")
	errClientGoneW                     = errors.New("http: client connection broken")
	_              http.ResponseWriter = (*h1Writer)(nil)
	_              http.Flusher        = (*h1Writer)(nil)
	_              http.Hijacker       = (*h1Writer)(nil)

	_ httpsyntax.RawFieldsWriter = (*h1Writer)(nil)
)

func (w *h1Writer) reset(head bool, closeAfter bool) {
	clear(w.hdr)
	w.status, w.wroteHeader, w.head = 0, false, head
	w.chunked, w.noBody, w.declared, w.written = false, false, -1, 0
	w.closeAfter, w.hijacked, w.err = closeAfter, false, nil
	w.rawOn = false
}

// RawFields implements httpsyntax.RawFieldsWriter.
func (w *h1Writer) RawFields(take bool) *httpsyntax.RawFields {
	return w.rawFields(take, !w.wroteHeader && !w.hijacked)
}

// rawHead reports whether WriteHeader(code) can send the raw fields as
// they are. The other cases (no body, HEAD, HTTP/1.0 clients, 1xx) go
// through the map, where their rules are.
func (w *h1Writer) rawHead(code int) bool {
	return w.rawOn && code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified &&
		!w.head && w.conn.req.ProtoMinor == 1 && w.raw.Length >= 0
}

func (w *h1Writer) WriteHeader(code int) {
	if w.wroteHeader || w.hijacked {
		return
	}
	if code < 100 || code > 999 {
		code = http.StatusInternalServerError
	}
	if code < 200 {
		if code == http.StatusSwitchingProtocols || code == http.StatusContinue {
			// Only a hijacker answers 101. 100 Continue is ours to send
			// (when the handler reads the body), never a backend's.
			return
		}
		w.writeInterim(code)
		return
	}
	if w.rawHead(code) {
		w.writeRawHead(code)
		return
	}
	h := w.Header()
	w.wroteHeader = true
	w.status = code
	w.declared = -1
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
		delete(h, "Transfer-Encoding")
		if code == http.StatusNoContent {
			delete(h, "Content-Length")
		}
	case w.head:
		w.noBody = true
	case w.declared >= 0:
		delete(h, "Transfer-Encoding")
	case w.conn.req.ProtoMinor == 1:
		w.chunked = true
		h["Transfer-Encoding"] = chunkedTE
	default:
		w.closeAfter = true // HTTP/1.0 without a length: the close ends the body
	}
	// A request body that failed (malformed chunk, client stopped) leaves
	// the connection's framing unknown: say the connection ends.
	if w.conn.srv.shuttingDown.Load() || w.conn.body.err != nil {
		w.closeAfter = true
	}
	b := w.scratch[:0]
	b = appendStatusLine(b, code)
	if _, ok := h["Date"]; !ok {
		b = w.appendDate(b)
	}
	if w.closeAfter {
		delete(h, "Connection")
		b = append(b, "Connection: close\r\n"...)
	} else if w.conn.req.ProtoMinor == 0 {
		b = append(b, "Connection: keep-alive\r\n"...)
	}
	b = appendHeaderFields(b, h)
	b = append(b, "\r\n"...)
	w.scratch = b
	w.write(b)
}

// writeInterim sends a 1xx answer (103 Early Hints) with the current headers.
func (w *h1Writer) writeInterim(code int) {
	b := w.scratch[:0]
	b = appendStatusLine(b, code)
	b = appendHeaderFields(b, w.Header())
	b = append(b, "\r\n"...)
	w.scratch = b
	w.write(b)
	w.flush()
}

// appendStatusLine appends an HTTP/1.1 status line.
func appendStatusLine(b []byte, code int) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(code)...)
	return append(b, "\r\n"...)
}

// appendDate appends a Date field of the server's clock.
func (w *h1Writer) appendDate(b []byte) []byte {
	b = append(b, "Date: "...)
	b = append(b, w.conn.srv.dates.now()...)
	return append(b, "\r\n"...)
}

// writeRawHead is WriteHeader for a sized response to an HTTP/1.1 client
// whose fields came raw from a backend: the lines go out as they came,
// with the ones the proxy and filters dropped left out and the ones they
// added after them. The proxy has left out the hop-by-hop fields and
// Transfer-Encoding.
func (w *h1Writer) writeRawHead(code int) {
	w.wroteHeader = true
	w.status = code
	w.declared = w.raw.Length
	if w.conn.srv.shuttingDown.Load() || w.conn.body.err != nil {
		w.closeAfter = true
	}
	b := w.scratch[:0]
	b = appendStatusLine(b, code)
	if !w.raw.Has("Date") {
		b = w.appendDate(b)
	}
	if w.closeAfter {
		b = append(b, "Connection: close\r\n"...)
	}
	b = w.raw.AppendTo(b)
	b = append(b, "\r\n"...)
	w.rawOn = false // the lines alias the backend's buffer: done with them
	w.scratch = b
	w.write(b)
}

// appendHeaderFields serialises h, dropping fields whose names or values
// could split the response (a backend's CR/LF must not reach the client).
// Trailer-prefixed keys (not tokens: they contain ':') are left for
// writeTrailers.
func appendHeaderFields(b []byte, h http.Header) []byte {
	declared := h["Trailer"]
	for k, vs := range h {
		if len(declared) > 0 && isDeclaredTrailer(declared, k) {
			continue // sent after the body
		}
		b = appendField(b, k, vs)
	}
	return b
}

func isDeclaredTrailer(declared []string, k string) bool {
	for _, d := range declared {
		for name := range strings.SplitSeq(d, ",") {
			if http.CanonicalHeaderKey(httpsyntax.TrimOWS(name)) == k {
				return true
			}
		}
	}
	return false
}

// safeHeaderValue reports whether v can be written into a head: it would
// not end the line (or the head) early.
func safeHeaderValue(v string) bool { return httpsyntax.NoLineBreak(v) }

func (w *h1Writer) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, errHijacked
	}
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
	if w.chunked {
		var hexbuf [18]byte
		hb := strconv.AppendInt(hexbuf[:0], int64(len(p)), 16)
		hb = append(hb, '\r', '\n')
		w.write(hb)
		w.write(p)
		w.write(crlf)
	} else if len(p) >= batchMin && w.conn.batch != nil {
		// Several records: one write(2) for all of them (recordbatch.go).
		w.conn.batch.startBatch()
		w.write(p)
		if err := w.conn.batch.endBatch(); err != nil && w.err == nil {
			w.err = errClientGoneW
		}
	} else {
		w.write(p)
	}
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

var crlf = []byte("\r\n")

func (w *h1Writer) write(p []byte) {
	if w.err != nil {
		return
	}
	if _, err := w.bw.Write(p); err != nil {
		w.err = errClientGoneW
	}
}

func (w *h1Writer) flush() {
	if w.err == nil {
		if err := w.bw.Flush(); err != nil {
			w.err = errClientGoneW
		}
	}
}

// Flush sends what is buffered (streaming responses, server-sent events).
func (w *h1Writer) Flush() { _ = w.FlushError() }

// FlushError is Flush reporting a broken client; http.ResponseController
// prefers it.
func (w *h1Writer) FlushError() error {
	if w.hijacked {
		return errHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.flush()
	return w.err
}

// Hijack hands the connection to the handler (WebSocket upgrades through
// the proxy). The connection loop forgets it.
func (w *h1Writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.wroteHeader {
		return nil, nil, errors.New("http: Hijack after WriteHeader")
	}
	if w.hijacked {
		return nil, nil, errHijacked
	}
	w.hijacked = true
	w.flush()
	// The idle wait's deadline may still be on the socket (headDone).
	w.conn.clearReadDeadline()
	return w.conn.nc, bufio.NewReadWriter(w.conn.br, w.bw), nil
}

// finish completes the response after the handler returned and reports
// whether the connection can carry another request.
func (w *h1Writer) finish() bool {
	if w.hijacked {
		return false
	}
	if !w.wroteHeader {
		if w.declared < 0 && w.Header()["Content-Length"] == nil && !w.head {
			w.hdr["Content-Length"] = zeroLength
		}
		w.WriteHeader(http.StatusOK)
	}
	if w.chunked {
		w.writeTrailers()
	}
	w.flush()
	if w.err != nil {
		return false
	}
	if w.declared >= 0 && !w.noBody && w.written < w.declared {
		// The handler wrote less than it declared (a backend cut the body
		// short): the framing is broken, only a close tells the client.
		return false
	}
	return !w.closeAfter
}

var zeroLength = []string{"0"}

// writeTrailers ends a chunked body with the trailer fields the handler
// set: names declared in a "Trailer" header, and http.TrailerPrefix keys.
func (w *h1Writer) writeTrailers() {
	b := append(w.scratch[:0], "0\r\n"...)
	for _, decl := range w.hdr["Trailer"] {
		for name := range strings.SplitSeq(decl, ",") {
			k := http.CanonicalHeaderKey(httpsyntax.TrimOWS(name))
			b = appendField(b, k, w.hdr[k])
		}
	}
	for k, vs := range w.hdr {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			b = appendField(b, http.CanonicalHeaderKey(name), vs)
		}
	}
	b = append(b, "\r\n"...)
	w.scratch = b
	w.write(b)
}

// appendField writes one field line per value, skipping unsafe ones.
func appendField(b []byte, k string, vs []string) []byte {
	if !isToken(k) {
		return b
	}
	for _, v := range vs {
		if safeHeaderValue(v) {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	return b
}

// dateCache formats the Date header at most once per second.
type dateCache struct{ p atomic.Pointer[cachedDate] }

type cachedDate struct {
	sec  int64
	text string
}

// now returns the current time in IMF-fixdate.
func (c *dateCache) now() string {
	t := time.Now()
	sec := t.Unix()
	if d := c.p.Load(); d != nil && d.sec == sec {
		return d.text
	}
	d := &cachedDate{sec: sec, text: t.UTC().Format(http.TimeFormat)}
	c.p.Store(d)
	return d.text
}

// smallHeader is the size hint of the header maps a connection or stream
// keeps for its requests: at most 8 makes Go's map a single group, with
// no directory or table to walk. A proxied request's inserts, lookups,
// walks and clear cost a third to a half less there than in a map made
// for 16 (BenchmarkHeaderMap; a request here holds 2-6 fields). A request
// with more grows its map once, and the map keeps that room.
const smallHeader = 8

// respFields is a response writer's header map, and the backend's raw
// field lines that stand in for it (httpsyntax.RawFields) until something
// asks for the map. Both frontends' writers embed it.
type respFields struct {
	hdr   http.Header
	raw   httpsyntax.RawFields
	rawOn bool
}

// Header returns the header map, with the raw fields taken into it first.
func (f *respFields) Header() http.Header {
	if f.rawOn {
		f.rawOn = false
		f.raw.CopyTo(f.hdr)
	}
	return f.hdr
}

// rawFields is httpsyntax.RawFieldsWriter's RawFields(take) for a writer
// whose head is still open to fields.
func (f *respFields) rawFields(take, open bool) *httpsyntax.RawFields {
	switch {
	case !take && f.rawOn:
		return &f.raw
	case take && open && len(f.hdr) == 0:
		f.rawOn = true
		return &f.raw
	}
	return nil
}
