package filter

import (
	"errors"
	"io"
	"net/http"
	"strconv"
)

// MaxBody returns next behind a request body limit of n bytes (n <= 0: no
// limit). A body whose Content-Length says more is answered 413 before
// anything reaches the backend; a chunked body is cut at the limit (the
// request then fails and the backend sees it end early).
func MaxBody(next http.Handler, n int64) http.Handler {
	if n <= 0 {
		return next
	}
	return &maxBody{next: next, n: n}
}

// ErrBodyTooLarge is the read error of a chunked body over the limit.
var ErrBodyTooLarge = errors.New("request body over the app's limit")

type maxBody struct {
	next http.Handler
	n    int64
}

func (m *maxBody) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > m.n {
		h := w.Header()
		h["Content-Type"] = []string{"text/plain; charset=utf-8"}
		h["Connection"] = []string{"close"} // the rest of the body is not read
		MarkGenerated(w)
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		io.WriteString(w, "413 request body over "+strconv.FormatInt(m.n, 10)+" bytes\n") //nolint:errcheck // the client may be gone
		return
	}
	if r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody {
		r.Body = &limitedBody{rc: r.Body, left: m.n}
	}
	m.next.ServeHTTP(w, r)
}

// limitedBody fails a read past the limit instead of returning EOF, so a
// cut body is never mistaken for a complete one.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One more byte would be over: check there is one.
		var one [1]byte
		if n, err := b.rc.Read(one[:]); n > 0 {
			return 0, ErrBodyTooLarge
		} else if err != nil {
			return 0, err
		}
		return 0, nil
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
