package filter

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pageFiles writes the test's page files and returns status -> path.
func pageFiles(t *testing.T, files map[int][2]string) map[int]string {
	t.Helper()
	dir := t.TempDir()
	pages := map[int]string{}
	for status, f := range files {
		path := filepath.Join(dir, f[0])
		if err := os.WriteFile(path, []byte(f[1]), 0o600); err != nil {
			t.Fatal(err)
		}
		pages[status] = path
	}
	return pages
}

// pageWrapper is some other filter's writer between ErrorPages and the
// code that marks its answer.
type pageWrapper struct{ http.ResponseWriter }

func (w pageWrapper) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// pageBackend answers what the request asks for: ?status=503, marked as
// generated with ?gen=1, through another wrapper with ?wrap=1, with a
// second WriteHeader with ?twice=1.
func pageBackend(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("wrap") != "" {
		w = pageWrapper{w}
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Encoding", "gzip")
	h.Set("Etag", `"v1"`)
	h.Set("Retry-After", "30")
	h.Set("Set-Cookie", "a=b")
	if q.Get("gen") != "" {
		MarkGenerated(w)
	}
	switch s := q.Get("status"); s {
	case "":
		w.Write([]byte("implicit ok"))
	case "flush":
		http.NewResponseController(w).Flush() // the 200 is out: nothing to replace
		w.Write([]byte("streamed"))
	default:
		code := 0
		for _, c := range s {
			code = code*10 + int(c-'0')
		}
		w.WriteHeader(code)
		if q.Get("twice") != "" {
			w.WriteHeader(http.StatusOK) // superfluous, ignored
		}
		w.Write([]byte("backend body"))
	}
}

func TestErrorPages(t *testing.T) {
	pages := pageFiles(t, map[int][2]string{
		503: {"503.html", "<h1>{status}</h1><p>ref {request_id}, again {request_id}</p>"},
		404: {"404.txt", "not here ({status})"},
	})
	const page503 = "<h1>503</h1><p>ref &lt;id&amp;1&gt;, again &lt;id&amp;1&gt;</p>"
	for _, tc := range []struct {
		name, method, query string
		replaceBackend      bool
		code                int
		ctype, body         string
		replaced            bool
	}{
		{"generated 503 replaced", "GET", "status=503&gen=1&twice=1", false, 503, "text/html; charset=utf-8", page503, true},
		{"generated, through a wrapper", "GET", "status=503&gen=1&wrap=1", false, 503, "text/html; charset=utf-8", page503, true},
		{"backend 503 kept", "GET", "status=503", false, 503, "application/json", "backend body", false},
		{"backend 503, ReplaceBackend", "GET", "status=503", true, 503, "text/html; charset=utf-8", page503, true},
		{"backend 404, ReplaceBackend, text", "GET", "status=404", true, 404, "text/plain; charset=utf-8", "not here (404)", true},
		{"generated 500 has no page", "GET", "status=500&gen=1", true, 500, "application/json", "backend body", false},
		{"generated 200 untouched", "GET", "status=200&gen=1", false, 200, "application/json", "backend body", false},
		{"implicit 200", "GET", "gen=1", false, 200, "application/json", "implicit ok", false},
		{"flush sends 200", "GET", "status=flush&gen=1", false, 200, "application/json", "streamed", false},
		{"HEAD: headers only", "HEAD", "status=503&gen=1", false, 503, "text/html; charset=utf-8", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ErrorPages(http.HandlerFunc(pageBackend), ErrorPagesConfig{Pages: pages, ReplaceBackend: tc.replaceBackend})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			req, _ := http.NewRequest(tc.method, srv.URL+"/?"+tc.query, nil)
			req.Header.Set(RequestIDHeader, "<id&1>")
			req.Header.Set("Accept-Encoding", "identity") // no transparent gunzip
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got := resp.Header
			if resp.StatusCode != tc.code || got.Get("Content-Type") != tc.ctype || string(body) != tc.body {
				t.Errorf("%d %q %q; want %d %q %q", resp.StatusCode, got.Get("Content-Type"), body, tc.code, tc.ctype, tc.body)
			}
			if got.Get("Retry-After") != "30" || got.Get("Set-Cookie") != "a=b" {
				t.Errorf("kept headers lost: %q", got)
			}
			if gone := got.Get("Content-Encoding") == "" && got.Get("Etag") == ""; gone != tc.replaced {
				t.Errorf("body headers dropped: %v, want %v (%q)", gone, tc.replaced, got)
			}
			if tc.replaced && resp.ContentLength != int64(len(page503)) && tc.code == 503 {
				t.Errorf("Content-Length %d, want the page's %d", resp.ContentLength, len(page503))
			}
		})
	}
}

// A static page (no {request_id}) is shared: no allocation per answer.
func TestErrorPagesStatic(t *testing.T) {
	pages := pageFiles(t, map[int][2]string{429: {"slow.html", "slow down: {status}"}})
	h, err := ErrorPages(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		MarkGenerated(w)
		w.WriteHeader(http.StatusTooManyRequests)
	}), ErrorPagesConfig{Pages: pages})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if w.Code != 429 || w.Body.String() != "slow down: 429" || w.Header().Get("Content-Length") != "14" {
		t.Errorf("%d %q %q", w.Code, w.Body, w.Header())
	}
	p := h.(*errorPages).page(429)
	if a, b := p.render(nil), p.render(nil); &a[0] != &b[0] {
		t.Error("static page copied per answer")
	}
}

// MarkGenerated without ErrorPages in the chain does nothing, and does
// not loop on writers without Unwrap.
func TestErrorPagesMarkAlone(t *testing.T) {
	w := httptest.NewRecorder()
	MarkGenerated(pageWrapper{w})
	MarkGenerated(w)
	MarkGenerated(nil)
}

func TestErrorPagesConfig(t *testing.T) {
	next := http.NotFoundHandler()
	if h, err := ErrorPages(next, ErrorPagesConfig{}); err != nil || h == nil {
		t.Errorf("no pages: %v", err)
	}
	dir := t.TempDir()
	big := filepath.Join(dir, "big.html")
	os.WriteFile(big, bytes.Repeat([]byte("x"), MaxErrorPageSize+1), 0o600)
	ok := filepath.Join(dir, "ok.html")
	os.WriteFile(ok, []byte("ok"), 0o600)
	missing := filepath.Join(dir, "missing.html")
	for _, tc := range []struct {
		pages map[int]string
		want  []string // in the error
	}{
		{map[int]string{503: missing}, []string{"503", missing}},
		{map[int]string{502: big}, []string{"502", big, "over"}},
		{map[int]string{399: ok}, []string{"399", ok}},
		{map[int]string{600: ok}, []string{"600"}},
		{map[int]string{404: dir}, []string{"404", dir}}, // a directory
	} {
		_, err := ErrorPages(next, ErrorPagesConfig{Pages: tc.pages})
		if err == nil {
			t.Errorf("%v accepted", tc.pages)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %q does not name %q", tc.pages, err, w)
			}
		}
	}
}

// The filters' own answers are marked: RequestBuffer's 413 gets the page,
// through ResponseBuffer's writer.
func TestErrorPagesChain(t *testing.T) {
	pages := pageFiles(t, map[int][2]string{413: {"413.html", "too big"}})
	inner, _ := RequestBuffer(http.NotFoundHandler(), RequestBufferConfig{Max: 10})
	buffered, _ := ResponseBuffer(inner, ResponseBufferConfig{})
	h, err := ErrorPages(buffered, ErrorPagesConfig{Pages: pages})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/", strings.NewReader("more than ten bytes")))
	if w.Code != 413 || w.Body.String() != "too big" || w.Header().Get("Content-Length") != "7" {
		t.Errorf("%d %q %q", w.Code, w.Body, w.Header())
	}
}
