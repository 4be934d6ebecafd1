package filter

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strconv"
	"sync/atomic"
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
		id = f.prefix + strconv.FormatUint(f.n.Add(1), 36)
		r.Header[RequestIDHeader] = []string{id}
	}
	f.next.ServeHTTP(w, r)
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
