package upstream

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// errBadOutboundRequest means the request cannot be serialised as it is:
// a field name that is not a token, a value with CR, LF or NUL, a bad
// method or target. The frontend parser lets none of these through, so it
// is a filter's mistake; nothing was sent.
var errBadOutboundRequest = errors.New("upstream: request has a field or target that cannot be sent")

// hasBody reports whether r carries a body to forward.
func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// replayable reports whether r may be sent again after a reused
// connection died before answering: a safe method (RFC 9110 section 9.2.1)
// and no body, net/http's rule. A bodyless POST whose connection died may
// still have been acted on.
func replayable(r *http.Request) bool {
	switch r.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return !hasBody(r)
	}
	return false
}

// writeRequestHead serialises the request line and fields of r into bw,
// ready for the body. addr is the backend address, the Host of a request
// that came without one (HTTP/1.0).
//
// Fields go out as the client sent them except: hop-by-hop fields and the
// ones Connection names are dropped (Te passes as "trailers" only); the
// client's Forwarded and X-Forwarded-* are dropped and ours written, since
// we are the edge and what a client claims about earlier hops is not
// trusted; Content-Length and Transfer-Encoding are ours, from the body.
func writeRequestHead(bw *bufio.Writer, r *http.Request, addr string) error {
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	if !isToken(method) {
		return errBadOutboundRequest
	}
	// The head is put together in the writer's free space and handed to
	// it in one Write: one bufio call, not four per field. A head larger
	// than the space is put together in a new array instead.
	b := append(bw.AvailableBuffer(), method...)
	b = append(b, ' ')
	b, err := appendTarget(b, method, r.URL)
	if err != nil {
		return err
	}
	// The backend sees the Host the client asked for, not its own address:
	// virtual hosts, redirects and cookies on the backend depend on it.
	host := r.Host
	if host == "" {
		host = addr
	}
	if !validFieldValue(host) {
		return errBadOutboundRequest
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\n"...)

	connection := r.Header["Connection"]
	for k, vs := range r.Header {
		switch classifyField(k) {
		case fieldPlain:
		case fieldTE:
			// "Te: trailers" is end-to-end in practice (gRPC needs it).
			if hasToken(vs, "trailers") {
				b = append(b, "Te: trailers\r\n"...)
			}
			continue
		default:
			continue
		}
		if len(connection) > 0 && hasToken(connection, k) {
			continue
		}
		if !isToken(k) {
			return errBadOutboundRequest
		}
		for _, v := range vs {
			if !validFieldValue(v) {
				return errBadOutboundRequest
			}
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}

	// The values httputil.ProxyRequest.SetXForwarded wrote before, plus
	// RFC 7239 Forwarded.
	if ip, ok := clientHost(r.RemoteAddr); ok {
		b = append(b, "X-Forwarded-For: "...)
		b = append(b, ip...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "X-Forwarded-Host: "...)
	b = append(b, r.Host...)
	if r.TLS != nil {
		b = append(b, "\r\nX-Forwarded-Proto: https\r\nForwarded: "...)
	} else {
		b = append(b, "\r\nX-Forwarded-Proto: http\r\nForwarded: "...)
	}
	b = appendForwarded(b, r)
	b = append(b, "\r\n"...)

	switch {
	case hasBody(r) && r.ContentLength > 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, r.ContentLength, 10)
		b = append(b, "\r\n\r\n"...)
	case hasBody(r):
		b = append(b, "Transfer-Encoding: chunked\r\n\r\n"...)
	case method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch:
		// net/http's rule: these methods announce an empty body, since
		// some servers answer 411 Length Required otherwise.
		b = append(b, "Content-Length: 0\r\n\r\n"...)
	default:
		b = append(b, "\r\n"...)
	}
	_, _ = bw.Write(b) // bufio errors are sticky; Flush reports them
	return nil
}

// appendTarget appends the request-target: u's escaped path and query
// (what net/http's transport sends), or the authority for CONNECT.
func appendTarget(b []byte, method string, u *url.URL) ([]byte, error) {
	if u == nil {
		return append(b, '/'), nil
	}
	var path, query string
	switch {
	case method == http.MethodConnect && u.Path == "":
		path = u.Host
	case u.Opaque != "":
		path = u.RequestURI() // rare; allocates
	default:
		path = u.EscapedPath()
		if path == "" {
			path = "/"
		}
		query = u.RawQuery
	}
	if !validTarget(path) || !validTarget(query) {
		return b, errBadOutboundRequest
	}
	b = append(b, path...)
	if u.ForceQuery || query != "" {
		b = append(b, '?')
		b = append(b, query...)
	}
	return b, nil
}

// validTarget reports whether s has no whitespace or control characters,
// which would split the request line.
func validTarget(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// writeRequest sends r to c: the head, then the body as the head framed
// it. st.bodyRead records whether a byte of the client's body may have
// been consumed, st.writeFailed whether the backend refused bytes.
func (st *attempt) writeRequest(c *h1Conn, r *http.Request, addr string) error {
	if err := writeRequestHead(c.bw, r, addr); err != nil {
		return err
	}
	switch {
	case !hasBody(r):
		return st.flush(c)
	case r.ContentLength > 0:
		return st.writeSized(c, r.Body, r.ContentLength)
	default:
		return st.writeChunked(c, r)
	}
}

func (st *attempt) flush(c *h1Conn) error {
	if err := c.bw.Flush(); err != nil {
		st.writeFailed = true
		return &backendError{op: "write request", err: err}
	}
	return nil
}

// writeSized sends exactly n bytes of body. A body that fits the write
// buffer is read straight into it and leaves with the head in one write;
// a larger one goes through the copy buffer, one write per read, each
// bounded by ResponseHeaderTimeout so that a backend that stops reading
// cannot hold the request forever.
func (st *attempt) writeSized(c *h1Conn, body io.Reader, n int64) error {
	bw := c.bw
	if n <= int64(bw.Available()) {
		p := bw.AvailableBuffer()[:n]
		st.bodyRead = true
		if _, err := io.ReadFull(body, p); err != nil {
			return &clientBodyError{err: err}
		}
		_, _ = bw.Write(p)
		return st.flush(c)
	}
	if err := st.flush(c); err != nil {
		return err
	}
	buf := st.copyBuffer()
	for n > 0 {
		st.bodyRead = true
		k, err := body.Read(buf[:min(int64(len(buf)), n)])
		if k > 0 {
			n -= int64(k)
			if werr := st.writeBody(c, buf[:k]); werr != nil {
				return werr
			}
		}
		if err == io.EOF && n > 0 {
			err = io.ErrUnexpectedEOF
		}
		if err != nil && err != io.EOF {
			return &clientBodyError{err: err}
		}
		if err == io.EOF {
			break
		}
	}
	return st.endBody(c)
}

// chunkRoom is the space kept in front of each chunk for its size line:
// up to 8 hex digits and CRLF (a 32 KiB chunk needs 4).
const chunkRoom = 10

// writeChunked sends a body of unknown length with the chunked coding,
// one chunk per read of the client's body, framed in place in the copy
// buffer so that each chunk is one write. The client's trailers follow the
// last chunk.
func (st *attempt) writeChunked(c *h1Conn, r *http.Request) error {
	buf := st.copyBuffer()
	for {
		st.bodyRead = true
		k, err := r.Body.Read(buf[chunkRoom : len(buf)-2])
		if k > 0 {
			var size [16]byte
			h := strconv.AppendUint(size[:0], uint64(k), 16)
			start := chunkRoom - len(h) - 2
			copy(buf[start:], h)
			buf[chunkRoom-2], buf[chunkRoom-1] = '\r', '\n'
			end := chunkRoom + k
			buf[end], buf[end+1] = '\r', '\n'
			if werr := st.writeBody(c, buf[start:end+2]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return &clientBodyError{err: err}
		}
	}
	b := append(c.bw.AvailableBuffer(), "0\r\n"...)
	for k, vs := range r.Trailer {
		if classifyField(k) != fieldPlain || !isToken(k) {
			continue
		}
		for _, v := range vs {
			if validFieldValue(v) {
				b = append(b, k...)
				b = append(b, ": "...)
				b = append(b, v...)
				b = append(b, "\r\n"...)
			}
		}
	}
	b = append(b, "\r\n"...)
	_, _ = c.bw.Write(b)
	if err := st.flush(c); err != nil {
		return err
	}
	return st.endBody(c)
}

// writeBody writes p through the write buffer (so that the head and a
// first small chunk share a write) and flushes it, with a write deadline:
// the body may be large and the backend slow to take it.
func (st *attempt) writeBody(c *h1Conn, p []byte) error {
	st.writeDeadline = true
	if err := c.nc.SetWriteDeadline(time.Now().Add(st.p.pool.cfg.ResponseHeaderTimeout)); err != nil {
		st.writeFailed = true
		return &backendError{op: "write request", err: err}
	}
	_, _ = c.bw.Write(p)
	return st.flush(c)
}

// endBody clears the write deadline set by writeBody.
func (st *attempt) endBody(c *h1Conn) error {
	if st.writeDeadline {
		st.writeDeadline = false
		if err := c.nc.SetWriteDeadline(time.Time{}); err != nil {
			return &backendError{op: "write request", err: err}
		}
	}
	return nil
}
