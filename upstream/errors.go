package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
)

// ErrNoBackend means no backend of the pool could be tried: all are in a
// passive backoff window (or were already tried by this request).
var ErrNoBackend = errors.New("upstream: no backend available")

// DialError is a failed connect to a backend. Nothing of the request was
// sent, so the request may be retried on another backend.
type DialError struct {
	Addr string // host:port dialled
	Err  error  // the net.Dialer error
}

// Error reads "upstream: connect to backend: dial tcp 10.0.0.1:80: connect:
// connection refused"; the net.OpError already names the address.
func (e *DialError) Error() string { return "upstream: connect to backend: " + e.Err.Error() }

func (e *DialError) Unwrap() error { return e.Err }

// backendError is a failure on a backend connection after it was made: an
// I/O error, a timeout, or a malformed response (a *protocolError). Some of
// the request may have reached the backend, so it is never sent again
// elsewhere (see attempt.stale for the one exception).
type backendError struct {
	op  string // what failed: "write request", "read response head", ...
	err error
}

func (e *backendError) Error() string { return "upstream: " + e.op + ": " + e.err.Error() }

func (e *backendError) Unwrap() error { return e.err }

// protocolError is a response that breaks HTTP/1.1 framing or syntax
// (RFC 9112). Such a connection is never reused.
type protocolError struct{ reason string }

func (e *protocolError) Error() string { return "malformed response: " + e.reason }

// clientBodyError is a failure to read the client's request body: the
// client went away or sent a broken body. It is the client's problem, not
// the backend's, so it is answered 400 and not logged as a failure.
type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string { return "upstream: read request body: " + e.err.Error() }

func (e *clientBodyError) Unwrap() error { return e.err }

// clientWriteError is a failure to write the response to the client.
type clientWriteError struct{ err error }

func (e *clientWriteError) Error() string { return "upstream: write response: " + e.err.Error() }

func (e *clientWriteError) Unwrap() error { return e.err }

// StatusClientClosedRequest is nginx's non-standard 499: the client closed
// the connection before the response. It is only ever logged, never sent.
const StatusClientClosedRequest = 499

// StatusCode maps an error of the forwarding path to the status the client
// gets. It is the only place that does, so error pages, access logs and
// metrics agree:
//
//   - 400 Bad Request when the client's request body could not be read;
//     408 Request Timeout when it stopped coming (frontend.body_timeout).
//   - 503 Service Unavailable when no backend could be tried (ErrNoBackend):
//     the service is known to be down, the client may come back later.
//   - 504 Gateway Timeout when a backend did not connect or answer in time
//     (dial timeout, response header timeout, a deadline).
//   - 502 Bad Gateway for everything else: refused or reset connections,
//     malformed responses.
func StatusCode(err error) int {
	var ce *clientBodyError
	if errors.As(err, &ce) {
		var ne net.Error
		if errors.Is(ce.err, os.ErrDeadlineExceeded) || errors.As(ce.err, &ne) && ne.Timeout() {
			return http.StatusRequestTimeout // the client paused longer than the body timeout
		}
		return http.StatusBadRequest
	}
	var qe *QueueError
	if errors.Is(err, ErrNoBackend) || errors.As(err, &qe) {
		return http.StatusServiceUnavailable
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return http.StatusGatewayTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// errorPages holds the bodies written for proxy errors, built once. They say
// what the status says and nothing else: no backend names, addresses or Go
// error strings reach the client (those go to the log).
type errorPages map[int][]byte

func newErrorPages() errorPages {
	pages := make(errorPages)
	for code, msg := range map[int]string{
		http.StatusBadRequest:         "The request body could not be read.",
		http.StatusRequestTimeout:     "The request body stopped coming.",
		http.StatusBadGateway:         "The server could not get a valid response from the application.",
		http.StatusServiceUnavailable: "The application is temporarily unavailable.",
		http.StatusGatewayTimeout:     "The application did not respond in time.",
	} {
		title := strconv.Itoa(code) + " " + http.StatusText(code)
		pages[code] = fmt.Appendf(nil, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>%s</title></head>\n"+
			"<body><h1>%s</h1><p>%s Please try again later.</p></body></html>\n", title, title, msg)
	}
	return pages
}

// write sends the page for code; codes without a page get the 502 page.
func (pages errorPages) write(w http.ResponseWriter, code int) {
	body, ok := pages[code]
	if !ok {
		code, body = http.StatusBadGateway, pages[http.StatusBadGateway]
	}
	// Headers that filters set before the proxy (HSTS, security headers)
	// stay; the backend's headers never got here.
	// An error page the operator configured replaces ours: tell the
	// writer this answer is the gateway's own, not the backend's.
	if g, ok := w.(interface{ Generated() }); ok {
		g.Generated()
	}
	h := w.Header()
	h["Content-Type"] = []string{"text/html; charset=utf-8"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	h["Cache-Control"] = []string{"no-store"}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	w.WriteHeader(code)
	_, _ = w.Write(body) // the client may be gone; nothing left to do
}
