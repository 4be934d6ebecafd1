package filter

import (
	"bufio"
	"cmp"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

func TestNegotiateEncoding(t *testing.T) {
	ours := []contentCoding{codingZstd, codingGzip}
	theirs := []contentCoding{codingGzip, codingZstd}
	for _, tc := range []struct {
		accept string // field lines, "\n" between
		prefs  []contentCoding
		want   string // "": identity
	}{
		{"", ours, ""},
		{"gzip", ours, "gzip"},
		{"gzip, deflate, br, zstd", ours, "zstd"},
		{"gzip, deflate, br, zstd", theirs, "gzip"},
		{"zstd;q=0.5, gzip", ours, "gzip"},
		{"zstd;q=0.5, gzip;q=0.5", theirs, "gzip"},
		{"zstd;q=0, gzip;q=0", ours, ""},
		{"*", ours, "zstd"},
		{"*;q=0", ours, ""},
		{"gzip;q=0, *", ours, "zstd"},
		{"zstd;q=0, *", ours, "gzip"},
		{"br, *;q=0.1", ours, "zstd"},
		{"br, identity", ours, ""},
		{"GZIP;Q=1.0", ours, "gzip"},
		{"x-gzip", ours, "gzip"},
		{"gzip;q=2, zstd;q=1.5", ours, ""},
		{"gzip;q=0.5;level=1, zstd;q=0.4", ours, "gzip"},
		{"gzip ;\tq=0.001", ours, "gzip"},
		{"gzip;q=", ours, ""},
		{"zstd;q=0, zstd", ours, ""},
		{" , ,gzip,", ours, "gzip"},
		{"br\nzstd;q=0.2\ngzip;q=0.3", ours, "gzip"},
	} {
		got := ""
		if i := negotiateEncoding(strings.Split(tc.accept, "\n"), tc.prefs); i >= 0 {
			got = codingHeader[tc.prefs[i]][0]
		}
		if got != tc.want {
			t.Errorf("Accept-Encoding %q, prefs %v: got %q, want %q", tc.accept, tc.prefs, got, tc.want)
		}
	}
}

func TestCompressConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg CompressConfig
		err string
	}{
		{CompressConfig{Encodings: []string{"gzip", "br"}}, `unknown encoding "br"`},
		{CompressConfig{Encodings: []string{"gzip", "GZIP"}}, `encoding "GZIP" listed twice`},
		{CompressConfig{Types: []string{"text/html", "text"}}, `type "text"`},
		{CompressConfig{Types: []string{"*/*"}}, `type "*/*"`},
		{CompressConfig{MinSize: -1}, "negative min size"},
	} {
		if _, err := Compress(http.NotFoundHandler(), tc.cfg); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%+v: error %v, want one with %q", tc.cfg, err, tc.err)
		}
	}
	next := http.NewServeMux()
	for _, cfg := range []CompressConfig{{Encodings: []string{}}, {Types: []string{}}} {
		if h, err := Compress(next, cfg); err != nil || h != http.Handler(next) {
			t.Errorf("%+v: %v, %v; want next itself", cfg, h, err)
		}
	}
}

// decode reads a body in the coding its head says.
func decode(t testing.TB, res *http.Response) string {
	t.Helper()
	var r io.Reader = res.Body
	switch ce := res.Header.Get("Content-Encoding"); ce {
	case "gzip":
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case "zstd":
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	case "":
	default:
		t.Fatalf("Content-Encoding %q", ce)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s body: %v", res.Header.Get("Content-Encoding"), err)
	}
	return string(b)
}

var htmlPage = strings.Repeat("<tr><td class=\"name\">tlsedge</td><td class=\"v\">gateway</td></tr>\n", 250) // 16 KiB

func TestCompressRoundTrip(t *testing.T) {
	pieces := []string{htmlPage[:1], htmlPage[1:700], htmlPage[700:]} // the first below MinSize: held
	for _, enc := range []string{"zstd", "gzip"} {
		for _, length := range []bool{false, true} {
			t.Run(enc+"/length="+strconv.FormatBool(length), func(t *testing.T) {
				head := map[string]string{"Content-Type": "text/html; charset=utf-8", "Etag": `"v1"`, "Accept-Ranges": "bytes"}
				if length {
					head["Content-Length"] = strconv.Itoa(len(htmlPage))
				}
				h, err := Compress(substBackend{head, 200, pieces}, CompressConfig{})
				if err != nil {
					t.Fatal(err)
				}
				r := httptest.NewRequest("GET", "/", nil)
				r.Header.Set("Accept-Encoding", "gzip, "+enc+";q=1, zstd;q=0.9")
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				res := w.Result()
				hd := res.Header
				if hd.Get("Content-Encoding") != enc || hd.Get("Vary") != "Accept-Encoding" || hd.Get("Etag") != `W/"v1"` ||
					hd.Get("Content-Length") != "" || hd.Get("Accept-Ranges") != "" {
					t.Errorf("head %v", hd)
				}
				if w.Body.Len() > len(htmlPage)/10 {
					t.Errorf("%d bytes for %d", w.Body.Len(), len(htmlPage))
				}
				if got := decode(t, res); got != htmlPage {
					t.Errorf("decoded %d bytes, want the %d sent", len(got), len(htmlPage))
				}
			})
		}
	}
}

func TestCompressLeavesAlone(t *testing.T) {
	f, err := Compress(nil, CompressConfig{})
	if err != nil {
		t.Fatal(err)
	}
	big := []string{htmlPage}
	html := func(kv ...string) map[string]string {
		h := map[string]string{"Content-Type": "text/html"}
		for i := 0; i < len(kv); i += 2 {
			h[kv[i]] = kv[i+1]
		}
		return h
	}
	for _, tc := range []struct {
		name    string
		method  string
		accept  string // "": gzip, zstd
		backend substBackend
		vary    bool
		length  string // Content-Length wanted; "": none
	}{
		{name: "small", backend: substBackend{html(), 0, []string{"<p>", "hi</p>"}}, vary: true, length: "9"},
		{name: "small empty", backend: substBackend{html(), 200, nil}, vary: true, length: "0"},
		{name: "small declared", backend: substBackend{html("Content-Length", "9"), 200, []string{"<p>hi</p>"}}, vary: true, length: "9"},
		{name: "client wants none", accept: "br", backend: substBackend{html(), 200, big}, vary: true},
		{name: "client refuses", accept: "gzip;q=0, zstd;q=0", backend: substBackend{html(), 200, big}, vary: true},
		{name: "encoded", backend: substBackend{html("Content-Encoding", "br"), 200, big}},
		{name: "no-transform", backend: substBackend{html("Cache-Control", "public, No-Transform"), 200, big}},
		{name: "image", backend: substBackend{map[string]string{"Content-Type": "image/png"}, 200, big}},
		{name: "no type", backend: substBackend{nil, 200, big}},
		{name: "head", method: "HEAD", backend: substBackend{html("Content-Length", "16250"), 200, nil}, length: "16250"},
		{name: "not modified", backend: substBackend{html(), 304, nil}, vary: true},
		{name: "no content", backend: substBackend{html(), 204, nil}, vary: true},
		{name: "range", backend: substBackend{html("Content-Range", "bytes 0-16249/99999"), 206, big}, vary: true},
		{name: "vary kept", accept: "br", backend: substBackend{html("Vary", "Origin, accept-encoding"), 200, big}, vary: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.(*compress).next = tc.backend
			r := httptest.NewRequest(cmp.Or(tc.method, "GET"), "/", nil)
			r.Header.Set("Accept-Encoding", cmp.Or(tc.accept, "gzip, zstd"))
			w := httptest.NewRecorder()
			f.ServeHTTP(w, r)
			res := w.Result()
			if ce := res.Header.Get("Content-Encoding"); ce != tc.backend.header["Content-Encoding"] {
				t.Errorf("Content-Encoding %q", ce)
			}
			if w.Body.String() != strings.Join(tc.backend.body, "") {
				t.Errorf("body changed: %d bytes", w.Body.Len())
			}
			if vary := headerHasToken(res.Header["Vary"], "Accept-Encoding"); vary != tc.vary || len(res.Header["Vary"]) > 1 {
				t.Errorf("Vary %q, want Accept-Encoding: %v", res.Header["Vary"], tc.vary)
			}
			if cl := res.Header.Get("Content-Length"); cl != tc.length {
				t.Errorf("Content-Length %q, want %q", cl, tc.length)
			}
		})
	}
}

// A flushed event reaches a real client, decoded, while the handler still
// waits; http.ResponseController reaches the connection through Unwrap.
func TestCompressFlushStreams(t *testing.T) {
	for _, enc := range []string{"zstd", "gzip"} {
		t.Run(enc, func(t *testing.T) {
			step := make(chan struct{})
			h, err := Compress(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				rc := http.NewResponseController(w)
				if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
					t.Error(err)
				}
				for i := range 3 {
					io.WriteString(w, "data: event "+strconv.Itoa(i)+"\n\n")
					if err := rc.Flush(); err != nil {
						t.Error(err)
					}
					select {
					case <-step:
					case <-r.Context().Done(): // the client gave up
						return
					}
				}
			}), CompressConfig{})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			req, _ := http.NewRequest("GET", srv.URL, nil)
			req.Header.Set("Accept-Encoding", enc) // set by hand: the transport leaves the body alone
			client := srv.Client()
			client.Timeout = 10 * time.Second // a lost flush fails the read, not the run
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if ce := res.Header.Get("Content-Encoding"); ce != enc {
				t.Fatalf("Content-Encoding %q", ce)
			}
			var zr io.Reader
			if enc == "gzip" {
				zr, err = gzip.NewReader(res.Body)
			} else {
				var d *zstd.Decoder
				d, err = zstd.NewReader(res.Body, zstd.WithDecoderConcurrency(1))
				zr = d
			}
			if err != nil {
				t.Fatal(err)
			}
			lines := bufio.NewReader(zr)
			for i := range 3 {
				line, err := lines.ReadString('\n')
				if want := "data: event " + strconv.Itoa(i) + "\n"; line != want || err != nil {
					t.Fatalf("read %q, %v; want %q before the handler goes on", line, err, want)
				}
				lines.ReadString('\n')
				step <- struct{}{}
			}
		})
	}
}

// BenchmarkCompress is the cost of a 16 KiB page; the encoders come from
// the pool, so allocations are the wrapper's and the head's.
func BenchmarkCompress(b *testing.B) {
	page := []byte(htmlPage) // as a proxy writes: bytes, no string conversion
	for _, enc := range []string{"zstd", "gzip"} {
		b.Run(enc, func(b *testing.B) {
			h, err := Compress(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Content-Type"] = []string{"text/html"}
				w.Write(page)
			}), CompressConfig{})
			if err != nil {
				b.Fatal(err)
			}
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("Accept-Encoding", enc)
			b.SetBytes(int64(len(htmlPage)))
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(&discardWriter{h: http.Header{}}, r)
			}
		})
	}
}

type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// refNegotiate is negotiateEncoding written plainly, with maps and a
// regexp for the weight.
func refNegotiate(lines []string, prefs []contentCoding) int {
	qvalue := regexp.MustCompile(`^(0(\.[0-9]{0,3})?|1(\.0{0,3})?)$`)
	weights := map[string]float64{}
	for _, line := range lines {
		for _, elem := range strings.Split(line, ",") {
			parts := strings.Split(elem, ";")
			name := strings.Trim(parts[0], " \t")
			if strings.EqualFold(name, "x-gzip") {
				name = "gzip"
			}
			q, ok := 1.0, name != ""
			for _, p := range parts[1:] {
				if p = strings.Trim(p, " \t"); len(p) >= 2 && strings.EqualFold(p[:2], "q=") {
					q, _ = strconv.ParseFloat(p[2:], 64)
					if ok = qvalue.MatchString(p[2:]); !ok {
						break
					}
				}
			}
			for _, known := range []string{"gzip", "zstd", "*"} {
				if _, seen := weights[known]; ok && !seen && strings.EqualFold(name, known) {
					weights[known] = q
				}
			}
		}
	}
	best, bestQ := -1, 0.0
	for i, c := range prefs {
		q, ok := weights[codingHeader[c][0]]
		if !ok {
			q = weights["*"]
		}
		if q > bestQ {
			best, bestQ = i, q
		}
	}
	return best
}

func FuzzAcceptEncoding(f *testing.F) {
	for _, s := range []string{"gzip, zstd", "zstd;q=0.5, gzip;q=0.500", "*;q=0.1, gzip;q=0", "x-gzip;Q=1.", "gzip;q=0.0001\nzstd", "a;q=1;q=0"} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, accept string, gzipFirst bool) {
		prefs := []contentCoding{codingZstd, codingGzip}
		if gzipFirst {
			prefs = []contentCoding{codingGzip, codingZstd}
		}
		lines := strings.Split(accept, "\n")
		got, want := negotiateEncoding(lines, prefs), refNegotiate(lines, prefs)
		if got != want {
			t.Errorf("%q, prefs %v: got %d, reference %d", accept, prefs, got, want)
		}
	})
}
