package upstream

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"

	"github.com/tlsedge/tlsedge/httpsyntax"
)

// Reasons a response head is refused. Each ends the connection and, before
// anything reached the client, becomes a 502.
var (
	errHeadTooLarge     = &protocolError{"head larger than 1 MiB"}
	errBareLF           = &protocolError{"line not ended by CRLF"}
	errBareCR           = &protocolError{"CR inside a line"}
	errStatusLine       = &protocolError{"bad status line"}
	errObsFold          = &protocolError{"obsolete line folding"}
	errFieldName        = &protocolError{"bad field name"}
	errFieldValue       = &protocolError{"control character in a field value"}
	errContentLength    = &protocolError{"bad or conflicting Content-Length"}
	errTransferEncoding = &protocolError{"Transfer-Encoding other than chunked"}
	errLengthAndChunked = &protocolError{"both Content-Length and Transfer-Encoding"}
	errUnexpected101    = &protocolError{"101 Switching Protocols to a request that did not ask"}
	errTooManyInterim   = &protocolError{"too many 1xx responses"}
)

// maxInterim bounds the 1xx responses skipped before the final one.
const maxInterim = 8

// respHead is what readResponseHead learnt from one response head.
type respHead struct {
	status    int
	minor     int   // HTTP/1.minor
	length    int64 // Content-Length; -1 when absent
	chunked   bool  // Transfer-Encoding: chunked
	close     bool  // Connection: close
	keepAlive bool  // Connection: keep-alive (matters for HTTP/1.0)
	connList  bool  // Connection names other fields, to be dropped
	fields    int   // number of field lines
	statusEnd int   // where the status line ends; 0 until it is read
	// marks are where the field lines of block lie: the first maxMarks
	// of them.
	marks [maxMarks]fieldMark
	read  int // bytes consumed from the connection
	// block is the field lines, each ending in CRLF, without the status
	// line and the final empty line. It aliases the caller's buffer.
	block []byte
}

// framing is how a response body is delimited (RFC 9112 section 6.3).
type framing uint8

const (
	bodyNone    framing = iota // HEAD, 1xx, 204, 304
	bodySized                  // Content-Length
	bodyChunked                // Transfer-Encoding: chunked
	bodyToEOF                  // neither: the body ends when the backend closes
)

func (h *respHead) framing(method string) framing {
	switch {
	case method == http.MethodHead || h.status < 200 || h.status == http.StatusNoContent || h.status == http.StatusNotModified:
		return bodyNone
	case h.chunked:
		return bodyChunked
	case h.length >= 0:
		return bodySized
	default:
		return bodyToEOF
	}
}

// reusable reports whether the connection may carry another request once
// this response's body is read whole: its end is known and the backend did
// not ask to close (HTTP/1.0 must ask to keep it).
func (h *respHead) reusable(f framing) bool {
	if f == bodyToEOF || h.close {
		return false
	}
	return h.minor == 1 || h.keepAlive
}

// readResponseHead reads one response head from br: the status line, the
// field lines and the empty line. It appends the lines to buf (a reused
// scratch buffer, returned grown) and validates them on the way, strictly:
// lines end in CRLF and hold no other CR; no obs-fold; field names are
// tokens followed at once by ':'; values hold no control character but
// HTAB; Content-Length is decimal and, repeated or listed, always the same
// value; Transfer-Encoding is "chunked" alone and never comes with
// Content-Length; at most limit bytes. Nothing of a refused head reaches
// the client.
func readResponseHead(br *bufio.Reader, h *respHead, buf []byte, limit int) (out []byte, err error) {
	*h = respHead{length: -1}
	if br.Buffered() == 0 {
		// Wait for the first bytes as ReadSlice would, and end the same
		// way when none come: io.EOF for a closed keep-alive connection.
		if _, err := br.Peek(1); err != nil {
			return buf[:0], err
		}
	}
	if n := br.Buffered(); n >= len("HTTP/1.1 200\r\n\r\n") {
		// The usual case: the whole head came in one read. Its lines are
		// checked where they lie (scanHead), and it is copied once.
		peek, _ := br.Peek(min(n, limit))
		end, err := h.scanHead(peek)
		if err != nil {
			return buf[:0], err
		}
		if end > 0 {
			out = append(buf[:0], peek[:end]...)
			h.read = end
			_, _ = br.Discard(end)
			return out, h.finish(out)
		}
		*h = respHead{length: -1} // not all here: line by line
	}
	out = buf[:0]
	for {
		start := len(out)
		out, err = readLine(br, out, &h.read, limit)
		if err != nil {
			return out, err
		}
		if done, err := h.parseLine(out, start); err != nil || done {
			if err != nil {
				return out, err
			}
			return out, h.finish(out)
		}
	}
}

// parseLine checks the line head[start:], which ends in LF, and reports
// whether it was the empty line that ends the head. The first line is the
// status line; h.statusEnd marks where it ended.
func (h *respHead) parseLine(head []byte, start int) (done bool, err error) {
	line := head[start:]
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return false, errBareLF
	}
	line = line[:len(line)-2]
	if bytes.IndexByte(line, '\r') >= 0 {
		return false, errBareCR
	}
	if h.statusEnd == 0 {
		if err := h.parseStatusLine(line); err != nil {
			return false, err
		}
		h.statusEnd = len(head)
		return false, nil
	}
	if len(line) == 0 {
		return true, nil
	}
	name, value, err := splitField(line)
	if err != nil {
		return false, err
	}
	return false, h.addField(name, value, start+len(name), start+len(line))
}

// finish checks what only the whole head can tell, and sets h.block.
func (h *respHead) finish(out []byte) error {
	if h.chunked && h.length >= 0 {
		// RFC 9112 section 6.3: a message with both "ought to be handled
		// as an error"; it is how response smuggling starts.
		return errLengthAndChunked
	}
	if h.chunked && h.minor == 0 {
		return errTransferEncoding // HTTP/1.0 has no transfer codings
	}
	h.block = out[h.statusEnd : len(out)-2]
	return nil
}

// readLine appends one line, up to and including LF, from br to out.
// Lines longer than br's buffer are put together. A clean EOF before any
// byte of the head is io.EOF (a closed keep-alive connection); inside the
// head it is io.ErrUnexpectedEOF.
func readLine(br *bufio.Reader, out []byte, read *int, limit int) ([]byte, error) {
	for {
		frag, err := br.ReadSlice('\n')
		*read += len(frag)
		if *read > limit {
			return out, errHeadTooLarge
		}
		out = append(out, frag...)
		switch err {
		case nil:
			return out, nil
		case bufio.ErrBufferFull:
			continue
		case io.EOF:
			if *read > 0 {
				return out, io.ErrUnexpectedEOF
			}
		}
		return out, err
	}
}

// parseStatusLine reads "HTTP/1.x NNN reason". The reason is not kept: the
// frontend writes its own.
func (h *respHead) parseStatusLine(s []byte) error {
	if len(s) < 12 || string(s[:7]) != "HTTP/1." || s[7] != '0' && s[7] != '1' || s[8] != ' ' {
		return errStatusLine
	}
	h.minor = int(s[7] - '0')
	code := 0
	for _, c := range s[9:12] {
		if c < '0' || c > '9' {
			return errStatusLine
		}
		code = code*10 + int(c-'0')
	}
	// 1xx to 5xx only: net/http's ResponseWriter refuses anything else.
	if code < 100 || code > 599 {
		return errStatusLine
	}
	h.status = code
	if len(s) > 12 && (s[12] != ' ' || !httpsyntax.ValidFieldValue(s[13:])) {
		return errStatusLine
	}
	return nil
}

// noteField records what a checked field line says about framing and the
// connection.
func (h *respHead) noteField(name, value []byte, kind fieldKind) error {
	switch {
	case kind == fieldContentLength:
		return h.parseContentLength(value)
	case kind != fieldHop:
	case len(name) == 10 && name[0]|0x20 == 'c': // Connection, not Keep-Alive or Proxy-*
		h.parseConnection(value)
	case len(name) == 17 && name[0]|0x20 == 't': // Transfer-Encoding, not Proxy-*
		// Only "chunked", once: "gzip, chunked" would need decoding
		// here, and chunked twice is forbidden (RFC 9112 section 6.1).
		if h.chunked || !equalFold(httpsyntax.TrimOWS(value), "chunked") {
			return errTransferEncoding
		}
		h.chunked = true
	}
	return nil
}

// splitField splits "name: value" and validates both; value comes back
// without its surrounding whitespace.
func splitField(line []byte) (name, value []byte, err error) {
	if line[0] == ' ' || line[0] == '\t' {
		return nil, nil, errObsFold
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return nil, nil, errFieldName
	}
	name = line[:colon]
	for _, c := range name {
		if !httpsyntax.IsTokenByte(c) {
			return nil, nil, errFieldName // includes whitespace before ':'
		}
	}
	value = httpsyntax.TrimOWS(line[colon+1:])
	if !httpsyntax.ValidFieldValue(value) {
		return nil, nil, errFieldValue
	}
	return name, value, nil
}

func (h *respHead) parseConnection(v []byte) {
	for len(v) > 0 {
		var t []byte
		t, v, _ = bytes.Cut(v, []byte{','})
		t = httpsyntax.TrimOWS(t)
		switch {
		case len(t) == 0:
		case equalFold(t, "close"):
			h.close = true
		case equalFold(t, "keep-alive"):
			h.keepAlive = true
		default:
			h.connList = true
		}
	}
}

// parseContentLength accepts a decimal length, or a list of the same
// length repeated (RFC 9110 section 8.6), and the same value on every
// line. 18 digits at most, so it cannot overflow.
func (h *respHead) parseContentLength(v []byte) error {
	if len(v) == 0 {
		return errContentLength
	}
	for len(v) > 0 {
		var t []byte
		t, v, _ = bytes.Cut(v, []byte{','})
		t = httpsyntax.TrimOWS(t)
		if len(t) == 0 || len(t) > 18 {
			return errContentLength
		}
		var n int64
		for _, c := range t {
			if c < '0' || c > '9' {
				return errContentLength
			}
			n = n*10 + int64(c-'0')
		}
		if h.length >= 0 && h.length != n {
			return errContentLength
		}
		h.length = n
	}
	return nil
}

// equalFold compares ASCII case-insensitively, as field names are
// compared, without converting b to a string.
func equalFold[S ~string | ~[]byte](b S, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if x|0x20 != y|0x20 || (x|0x20 < 'a' || x|0x20 > 'z') && x != y {
			return false
		}
	}
	return true
}

// copyFields adds the end-to-end fields of a validated head to dst, as
// http.Header.Add would, and reports whether the body is an event stream.
//
// All names and values are substrings of one string made from the block,
// and the value slices are capacity-capped windows of one backing array:
// two allocations for the whole head. Names are canonicalised only when
// they are not canonical already. Hop-by-hop fields, the fields Connection
// names, Transfer-Encoding and Content-Length are dropped, except that
// Content-Length is set (once, normalised) when the response may carry it
// (not a 204), and Trailer passes when the body is chunked.
func copyFields(dst http.Header, h *respHead, f framing) (eventStream bool) {
	if h.fields == 0 {
		return false
	}
	s := string(h.block)
	slots := make([]string, h.fields)
	used := 0
	keepLength := h.status != http.StatusNoContent
	var connection []string
	if h.connList {
		connection = connectionValues(s)
	}
	for s != "" {
		var line string
		line, s, _ = strings.Cut(s, "\r\n")
		colon := strings.IndexByte(line, ':')
		name, value := line[:colon], httpsyntax.TrimOWS(line[colon+1:])
		key := ""
		switch classifyField(name) {
		case fieldContentLength:
			if !keepLength {
				continue
			}
			keepLength = false // one is enough: every line said the same
			value, _, _ = strings.Cut(value, ",")
			slots[used] = httpsyntax.TrimOWS(value)
			dst["Content-Length"] = slots[used : used+1 : used+1]
			used++
			continue
		case fieldPlain, fieldHost, fieldForwarded:
			// Ordinary fields in a response.
			key = canonicalKey(name)
		case fieldTrailer:
			if f != bodyChunked {
				continue
			}
			key = "Trailer"
		default:
			continue // hop-by-hop
		}
		if connection != nil && hasToken(connection, name) {
			continue
		}
		slots[used] = value
		if old, ok := dst[key]; ok {
			dst[key] = append(old, value)
		} else {
			dst[key] = slots[used : used+1 : used+1]
		}
		used++
		if key == "Content-Type" && len(value) >= 17 && strings.EqualFold(value[:17], "text/event-stream") {
			eventStream = true
		}
	}
	return eventStream
}

// fillRaw puts a validated head's end-to-end fields into rf as they
// stand, for a writer that sends them without an http.Header (see
// httpsyntax.RawFields): the lines copyFields would leave out are dropped.
// It reports false, with rf to be ignored, for the heads only copyFields
// handles: a body that is not sized (chunked bodies carry trailers through
// the map), a Content-Length to normalise ("5, 5", or on several lines),
// a Connection naming other fields, more than httpsyntax.MaxRawLines lines.
func fillRaw(rf *httpsyntax.RawFields, h *respHead, f framing) (ok, eventStream bool) {
	if f != bodySized || h.connList || h.fields > httpsyntax.MaxRawLines {
		return false, false
	}
	rf.Reset(h.block, h.length)
	b, start, lengths := h.block, 0, 0
	for _, m := range h.marks[:h.fields] {
		colon, end := int(m.colon), int(m.end)
		rf.AddLine(start, colon, end)
		name := b[start:colon]
		switch m.kind {
		case fieldContentLength:
			lengths++
			if v := rf.Value(rf.Len() - 1); lengths > 1 || bytes.IndexByte(v, ',') >= 0 {
				return false, false
			}
		case fieldPlain, fieldHost, fieldForwarded:
			if len(name) == 12 && httpsyntax.EqualFieldName(name, "Content-Type") {
				if v := rf.Value(rf.Len() - 1); len(v) >= 17 && httpsyntax.EqualFieldName(v[:17], "text/event-stream") {
					eventStream = true
				}
			}
		default: // hop-by-hop, and Trailer without a chunked body
			rf.Drop(rf.Len() - 1)
		}
		start = end + 2
	}
	return true, eventStream
}

// connectionValues collects the values of the Connection fields of a
// validated block (rare: only when Connection names other fields).
func connectionValues(s string) []string {
	var out []string
	for s != "" {
		var line string
		line, s, _ = strings.Cut(s, "\r\n")
		name, value, _ := strings.Cut(line, ":")
		if strings.EqualFold(name, "Connection") {
			out = append(out, value)
		}
	}
	return out
}
