package tlsedge

import (
	"io"
	"net/http"
	"time"
)

// h2BodyIdle gives HTTP/2 request bodies the idle timeout HTTP/1.1 bodies
// have (frontend.body_timeout): a client that stops sending in the middle
// of a body gets its stream ended after the timeout instead of holding a
// backend connection open (slowloris on the body). Go's HTTP/2 server has
// no such timeout of its own but honours a read deadline per stream
// (http.ResponseController.SetReadDeadline), set here before every read.
func h2BodyIdle(next http.Handler, timeout time.Duration) http.Handler {
	if timeout <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
			r.Body = &idleBody{ReadCloser: r.Body, rc: http.NewResponseController(w), timeout: timeout}
		}
		next.ServeHTTP(w, r)
	})
}

type idleBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
}

func (b *idleBody) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.timeout)) // unsupported: the read is unbounded, as before
	return b.ReadCloser.Read(p)
}
