package filter

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strconv"
	"sync/atomic"
	"unsafe"
)

// RequestIDHeader carries the request id to the backend and back.
const RequestIDHeader = "X-Request-Id"

// RequestID returns next with an X-Request-Id on every request (kept when
// the client sent a sane one, made otherwise), so the backend's logs and
// the access log name the same request; ResponseHeaders echoes it in the
// response.
func RequestID(next http.Handler) http.Handler {
	var prefix [8]byte
	rand.Read(prefix[:]) //nolint:errcheck // never fails (crypto/rand)
	return &requestID{next: next, prefix: hex.EncodeToString(prefix[:]) + "-"}
}

// requestID makes ids from a random per-process prefix and a counter:
// unique across instances and restarts, and cheaper than 16 random bytes
// per request.
type requestID struct {
	next   http.Handler
	prefix string
	n      atomic.Uint64
}

func (f *requestID) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get(RequestIDHeader)
	if !saneID(id) {
		r.Header[RequestIDHeader] = f.newID()
	}
	f.next.ServeHTTP(w, r)
}

// idValue is a request id and the header value that holds it, made in
// one allocation: the id's bytes live in buf, and vals[0] is a string
// over them (never written again once made).
type idValue struct {
	vals [1]string
	buf  [maxIDLen]byte
}

// maxIDLen fits the 16-character hex prefix, "-" and a counter in base 36
// (13 characters at most for a uint64).
const maxIDLen = 32

// newID returns a fresh id as a header value.
func (f *requestID) newID() []string {
	v := new(idValue)
	b := append(v.buf[:0], f.prefix...)
	b = strconv.AppendUint(b, f.n.Add(1), 36)
	v.vals[0] = unsafe.String(unsafe.SliceData(b), len(b))
	return v.vals[:]
}

// saneID accepts ids of 1-128 visible ASCII characters without quotes or
// separators that could break a log line; anything else is replaced.
func saneID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '\\' || c == ',' || c == ';' {
			return false
		}
	}
	return true
}
