package filter

// Custom error pages. The chain cannot tell by itself a 502 that tlsedge
// made (no backend answered) from a 502 a backend sent, and the two want
// different treatment: tlsedge's own errors should look like the site,
// while a backend's error body is usually the application talking (a JSON
// problem report, a form's error) and is left alone unless the operator
// says otherwise.
//
// The contract: code that answers with an error of its own (the proxy's
// ErrorHandler, the queue, the ACL, the rate limiter, RequestBuffer) calls
// MarkGenerated(w) before w.WriteHeader. MarkGenerated finds the
// ErrorPages writer through the Unwrap chain of w, so any wrapper in
// between must implement Unwrap() http.ResponseWriter (every filter here
// does). Without ErrorPages in the chain it does nothing. A header was not
// used as the mark: one forgotten delete and it leaks to the client.

import (
	"bufio"
	"cmp"
	"fmt"
	"html"
	"io"
	"maps"
	"mime"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ErrorPagesConfig says which statuses get a page of the operator's. The
// zero value replaces nothing; the struct is not used after ErrorPages
// returns. The files are read once, by ErrorPages: a config reload builds
// a new filter to pick up changed files.
type ErrorPagesConfig struct {
	// Pages maps a status (400-599) to a file of at most 1 MiB. Its
	// Content-Type comes from the extension (text/html; charset=utf-8
	// when unknown). In the file, {status} stands for the status code and
	// {request_id} for the request's X-Request-Id, HTML-escaped.
	Pages map[int]string
	// ReplaceBackend replaces backend responses with these statuses too.
	// Default: only tlsedge's own answers (see MarkGenerated).
	ReplaceBackend bool
}

// MaxErrorPageSize is the largest error page file.
const MaxErrorPageSize = 1 << 20

// MarkGenerated tells the ErrorPages filter serving w, if any, that the
// response about to be written is tlsedge's own, not a backend's. Call it
// before w.WriteHeader; it costs a few type assertions.
func MarkGenerated(w http.ResponseWriter) {
	for w != nil {
		switch t := w.(type) {
		case generatedMarker:
			t.markGenerated()
			return
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return
		}
	}
}

// generatedMarker is the ErrorPages writer, as MarkGenerated sees it.
type generatedMarker interface{ markGenerated() }

// ErrorPages returns next with the bodies of its error responses replaced
// by the configured pages, read here: a file that cannot be read, is too
// large or is configured for a status outside 400-599 is an error naming
// the status and the file. Replacing keeps the status and the headers
// that still hold (Retry-After, Allow, Set-Cookie, X-Request-Id, caching)
// and drops those that describe the replaced body. A HEAD request gets
// the page's headers only.
func ErrorPages(next http.Handler, cfg ErrorPagesConfig) (http.Handler, error) {
	if len(cfg.Pages) == 0 {
		return next, nil
	}
	f := &errorPages{next: next, replaceBackend: cfg.ReplaceBackend}
	for _, status := range slices.Sorted(maps.Keys(cfg.Pages)) {
		path := cfg.Pages[status]
		if status < 400 || status > 599 {
			return nil, fmt.Errorf("error page %d (%s): status not in 400-599", status, path)
		}
		p, err := loadErrorPage(status, path)
		if err != nil {
			return nil, fmt.Errorf("error page %d: %w", status, err)
		}
		f.pages[status-400] = p
	}
	return f, nil
}

type errorPages struct {
	next           http.Handler
	pages          [200]*errorPage // by status-400; nil: no page
	replaceBackend bool
}

func (f *errorPages) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.next.ServeHTTP(&pageWriter{ResponseWriter: w, f: f, r: r}, r)
}

func (f *errorPages) page(code int) *errorPage {
	if code < 400 || code > 599 {
		return nil
	}
	return f.pages[code-400]
}

// errorPage is a loaded file, cut at its {request_id} placeholders ({status}
// is substituted at load: a page serves one status).
type errorPage struct {
	contentType []string // shared, never modified
	parts       [][]byte // the text around the {request_id}s; one part: none
	length      []string // Content-Length when there is one part
	size        int      // bytes of the parts together
}

const (
	statusHole    = "{status}"
	requestIDHole = "{request_id}"
)

func loadErrorPage(status int, path string) (*errorPage, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err // names the path
	}
	defer file.Close()
	b, err := io.ReadAll(io.LimitReader(file, MaxErrorPageSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > MaxErrorPageSize {
		return nil, fmt.Errorf("%s is over %d bytes", path, MaxErrorPageSize)
	}
	ct := mime.TypeByExtension(filepath.Ext(path))
	p := &errorPage{contentType: []string{cmp.Or(ct, "text/html; charset=utf-8")}}
	text := strings.ReplaceAll(string(b), statusHole, strconv.Itoa(status))
	for _, part := range strings.Split(text, requestIDHole) {
		p.parts = append(p.parts, []byte(part))
		p.size += len(part)
	}
	if len(p.parts) == 1 {
		p.length = []string{strconv.Itoa(p.size)}
	}
	return p, nil
}

// render is the page for r: shared bytes when it has no placeholder.
func (p *errorPage) render(r *http.Request) []byte {
	if len(p.parts) == 1 {
		return p.parts[0]
	}
	id := html.EscapeString(r.Header.Get(RequestIDHeader))
	b := make([]byte, 0, p.size+(len(p.parts)-1)*len(id))
	b = append(b, p.parts[0]...)
	for _, part := range p.parts[1:] {
		b = append(b, id...)
		b = append(b, part...)
	}
	return b
}

// replacedHeaders describe the body being replaced. Content-Disposition
// too: a backend's "attachment" would make the browser save our page.
var replacedHeaders = []string{
	"Content-Encoding", "Content-Length", "Content-Range", "Transfer-Encoding",
	"Etag", "Last-Modified", "Content-Disposition", "Trailer",
}

// The states of a pageWriter.
const (
	pageUndecided  = iota // no status yet
	pageForwarding        // not ours: everything goes through
	pageReplaced          // the page is out; next's body is dropped
)

// pageWriter decides at the status: pass next's response or send a page.
// Used by one goroutine at a time, like any ResponseWriter.
type pageWriter struct {
	http.ResponseWriter
	f         *errorPages
	r         *http.Request
	generated bool
	state     int
}

var (
	_ generatedMarker = (*pageWriter)(nil)
	_ http.Flusher    = (*pageWriter)(nil)
	_ http.Hijacker   = (*pageWriter)(nil)
)

func (w *pageWriter) markGenerated() { w.generated = true }

// Unwrap lets http.ResponseController reach the client's writer.
func (w *pageWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *pageWriter) WriteHeader(code int) {
	switch w.state {
	case pageForwarding:
		w.ResponseWriter.WriteHeader(code)
		return
	case pageReplaced:
		return
	}
	p := w.f.page(code)
	if p == nil || !w.generated && !w.f.replaceBackend {
		if code >= 200 || code == http.StatusSwitchingProtocols {
			w.state = pageForwarding
		} // else informational: the real status is still to come
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.state = pageReplaced
	h := w.Header()
	for _, name := range replacedHeaders {
		delete(h, name)
	}
	body := p.render(w.r)
	h["Content-Type"] = p.contentType
	if p.length != nil {
		h["Content-Length"] = p.length
	} else {
		h["Content-Length"] = []string{strconv.Itoa(len(body))}
	}
	w.ResponseWriter.WriteHeader(code)
	if w.r.Method != http.MethodHead {
		w.ResponseWriter.Write(body) //nolint:errcheck // the client may be gone
	}
}

func (w *pageWriter) Write(p []byte) (int, error) {
	if w.state == pageUndecided {
		w.WriteHeader(http.StatusOK)
	}
	if w.state == pageReplaced {
		return len(p), nil // next's own error body, dropped
	}
	return w.ResponseWriter.Write(p)
}

// FlushError is what http.ResponseController.Flush calls. A flush before
// any status sends 200, as net/http does.
func (w *pageWriter) FlushError() error {
	if w.state == pageUndecided {
		w.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Flush is FlushError for callers that assert http.Flusher.
func (w *pageWriter) Flush() { w.FlushError() } //nolint:errcheck // http.Flusher has no error

// Hijack is for callers that assert http.Hijacker (gorilla/websocket
// does) rather than use http.ResponseController.
func (w *pageWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}
