package filter

// Response compression: zstd or gzip, chosen from the client's
// Accept-Encoding by our order of preference, for the types worth it.
//   - A response is passed through untouched or fully re-encoded: then
//     Content-Length, Accept-Ranges and Content-Digest go, and a strong
//     ETag becomes weak (RFC 9110 section 8.8.1: other bytes, same meaning).
//   - Every response of a listed type says Vary: Accept-Encoding, also
//     when this client got it plain, so caches keep the variants apart.
//   - A body of unknown length is held until MinSize bytes; one that ends
//     shorter goes out plain with an exact Content-Length. A Flush ends
//     the holding: a stream (SSE, ReverseProxy's flushes) is compressed
//     as it flows, each Flush pushing the encoder's output out.
//   - Requests are untouched: inflating request bodies would make the
//     gateway a decompression-bomb amplifier.
//   - Encoders are pooled across instances, returned after Close.

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// CompressConfig says which responses are compressed and how. The zero
// value of each field is its default; the struct is not used after
// Compress returns.
type CompressConfig struct {
	// Encodings are the content codings offered, in our order of
	// preference: "zstd", "gzip" (the default, in that order). Empty:
	// none (Compress returns next).
	Encodings []string
	// MinSize is the smallest body compressed, in bytes (default 1024):
	// below it the framing costs more than it saves. 1 compresses all.
	MinSize int
	// Types are the media types compressed: "type/subtype" or "type/*",
	// matched in any case and without parameters. Nil: text/*,
	// application/json, application/javascript, application/xml,
	// image/svg+xml, application/wasm. Empty: none (Compress returns
	// next).
	Types []string
}

// DefaultCompressMinSize is CompressConfig.MinSize's default.
const DefaultCompressMinSize = 1024

func (c *CompressConfig) minSize() int {
	if c.MinSize == 0 {
		return DefaultCompressMinSize
	}
	return c.MinSize
}

func (c *CompressConfig) encodings() []string {
	if c.Encodings == nil {
		return []string{"zstd", "gzip"}
	}
	return c.Encodings
}

func (c *CompressConfig) types() []string {
	if c.Types == nil {
		return []string{"text/*", "application/json", "application/javascript",
			"application/xml", "image/svg+xml", "application/wasm"}
	}
	return c.Types
}

// Compress returns next with its responses compressed for clients that
// accept it. Unknown encodings and malformed types are errors.
func Compress(next http.Handler, cfg CompressConfig) (http.Handler, error) {
	if cfg.MinSize < 0 {
		return nil, fmt.Errorf("compress: negative min size %d", cfg.MinSize)
	}
	types, err := parseMediaTypes(cfg.types())
	if err != nil {
		return nil, fmt.Errorf("compress: %w", err)
	}
	f := &compress{next: next, types: types, minSize: cfg.minSize()}
	for _, name := range cfg.encodings() {
		c, ok := codingByName(strings.TrimSpace(name))
		if !ok {
			return nil, fmt.Errorf("compress: unknown encoding %q (want zstd or gzip)", name)
		}
		if slices.Contains(f.codings, c) {
			return nil, fmt.Errorf("compress: encoding %q listed twice", name)
		}
		f.codings = append(f.codings, c)
	}
	if len(f.codings) == 0 || len(types) == 0 {
		return next, nil
	}
	f.holdPool.New = func() any { b := make([]byte, 0, f.minSize); return &b }
	return f, nil
}

// A contentCoding is one of the encodings we produce.
type contentCoding uint8

const (
	codingZstd contentCoding = iota
	codingGzip
	numCodings
)

func codingByName(name string) (contentCoding, bool) {
	for c, h := range codingHeader {
		if strings.EqualFold(name, h[0]) {
			return contentCoding(c), true
		}
	}
	return 0, false
}

// codingHeader is each coding's Content-Encoding value (shared, never
// modified).
var codingHeader = [numCodings][]string{codingZstd: {"zstd"}, codingGzip: {"gzip"}}

// gzipLevel is 5: the best ratio klauspost/compress reaches with its
// fast matchers (levels 1-6, and its own default); 7-9 switch to the lazy
// matcher, several times the CPU for a few percent, paid per response.
const gzipLevel = 5

// zstdWindow bounds the zstd window at 512 KiB, inside RFC 9659's 8 MiB
// limit for HTTP. The encoder keeps window+128 KiB of history, and pooled
// encoders live as long as the pool does: 8 MiB each would be the
// gateway's largest memory cost, for web bodies that rarely reach 512 KiB.
const zstdWindow = 512 << 10

// A compressEncoder is what the pools hold: both encoders, reused by Reset.
type compressEncoder interface {
	io.Writer
	Flush() error
	Close() error
	Reset(io.Writer)
}

var (
	_ compressEncoder = (*gzip.Writer)(nil)
	_ compressEncoder = (*zstd.Encoder)(nil)
)

var encoderPools = [numCodings]sync.Pool{
	codingZstd: {New: func() any {
		// Options are constants: NewWriter cannot fail. Concurrency 1:
		// one goroutine per response, no encoder goroutines to own.
		e, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithWindowSize(zstdWindow), zstd.WithLowerEncoderMem(true))
		return e
	}},
	codingGzip: {New: func() any {
		w, _ := gzip.NewWriterLevel(nil, gzipLevel) // a valid level: cannot fail
		return w
	}},
}

type compress struct {
	next     http.Handler
	types    mediaTypes
	codings  []contentCoding // our preference order
	minSize  int
	holdPool sync.Pool // of *[]byte, cap minSize
}

func (f *compress) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cw := &compressWriter{ResponseWriter: w, f: f, head: r.Method == http.MethodHead,
		coding: negotiateEncoding(r.Header["Accept-Encoding"], f.codings)}
	f.next.ServeHTTP(cw, r)
	// Not deferred: a panicking next (ReverseProxy's ErrAbortHandler)
	// must not have its body ended as if complete.
	cw.finish()
}

// The states of a compressWriter.
const (
	czNone   = iota // no final status yet
	czPass          // the body goes out as next writes it
	czHold          // holding the start of the body until MinSize
	czEncode        // compressing
	czDone          // finished
)

// compressWriter compresses next's response. Like any ResponseWriter it
// is used by one goroutine at a time.
type compressWriter struct {
	http.ResponseWriter
	f      *compress
	head   bool // a HEAD request
	coding int  // index in f.codings the client takes best; -1: none
	code   int  // next's final status; 0: none yet
	state  int
	hold   *[]byte // the body held in czHold; nil until the first write
	enc    compressEncoder
}

var _ http.Flusher = (*compressWriter)(nil)

// Unwrap lets http.ResponseController reach the client's writer.
func (w *compressWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *compressWriter) WriteHeader(code int) {
	if w.state != czNone {
		return // superfluous: the first final status counts, as in net/http
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.ResponseWriter.WriteHeader(code) // 1xx (103 Early Hints) goes now
		return
	}
	w.code, w.state = code, czPass
	h := w.Header()
	if w.head || !identityEncoded(h) || headerHasToken(h["Cache-Control"], "no-transform") || !w.f.types.match(h) {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	if !headerHasToken(h["Vary"], "Accept-Encoding") && !headerHasToken(h["Vary"], "*") {
		h["Vary"] = append(h["Vary"], "Accept-Encoding")
	}
	n, err := strconv.ParseInt(strings.TrimSpace(h.Get("Content-Length")), 10, 64)
	known := err == nil && n >= 0
	switch {
	case w.coding < 0 || code < 200 || code == http.StatusNoContent || code == http.StatusNotModified ||
		code == http.StatusPartialContent || h["Content-Range"] != nil || known && n < int64(w.f.minSize):
		w.ResponseWriter.WriteHeader(code)
	case known:
		w.startEncoding()
	default:
		w.state = czHold // the head waits with the body
	}
}

// startEncoding sends the head of a compressed response and takes an
// encoder writing to the client.
func (w *compressWriter) startEncoding() {
	h := w.Header()
	for _, k := range []string{"Content-Length", "Accept-Ranges", "Content-Md5", "Content-Digest"} {
		delete(h, k) // Repr-Digest stays: it is of the uncompressed bytes
	}
	c := w.f.codings[w.coding]
	h["Content-Encoding"] = codingHeader[c]
	weakenETag(h)
	w.ResponseWriter.WriteHeader(w.code)
	w.enc = encoderPools[c].Get().(compressEncoder)
	w.enc.Reset(w.ResponseWriter)
	w.state = czEncode
}

func (w *compressWriter) Write(p []byte) (int, error) {
	if w.state == czNone {
		w.WriteHeader(http.StatusOK)
	}
	switch w.state {
	case czEncode:
		return w.enc.Write(p)
	case czHold:
		if w.held()+len(p) < w.f.minSize {
			if w.hold == nil {
				w.hold = w.f.holdPool.Get().(*[]byte)
			}
			*w.hold = append(*w.hold, p...)
			return len(p), nil
		}
		if err := w.encodeHeld(); err != nil {
			return 0, err
		}
		return w.enc.Write(p)
	}
	return w.ResponseWriter.Write(p)
}

// encodeHeld starts compressing with what is held.
func (w *compressWriter) encodeHeld() error {
	w.startEncoding()
	if w.hold == nil {
		return nil
	}
	_, err := w.enc.Write(*w.hold)
	w.releaseHold()
	return err
}

func (w *compressWriter) held() int {
	if w.hold == nil {
		return 0
	}
	return len(*w.hold)
}

func (w *compressWriter) releaseHold() {
	*w.hold = (*w.hold)[:0]
	w.f.holdPool.Put(w.hold)
	w.hold = nil
}

// FlushError is what http.ResponseController.Flush calls: a held body is
// compressed from here on (a flushing next is streaming), and what the
// encoder holds is pushed to the client.
func (w *compressWriter) FlushError() error {
	if w.state == czNone {
		w.WriteHeader(http.StatusOK) // as net/http: a flush sends the head
	}
	if w.state == czHold {
		if err := w.encodeHeld(); err != nil {
			return err
		}
	}
	if w.state == czEncode {
		if err := w.enc.Flush(); err != nil {
			return err
		}
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Flush is FlushError for callers that assert http.Flusher.
func (w *compressWriter) Flush() { w.FlushError() } //nolint:errcheck // http.Flusher has no error

// finish ends the body: a held one goes out plain with its length, an
// encoder writes its end and goes back to the pool.
func (w *compressWriter) finish() {
	switch w.state {
	case czHold:
		if h := w.Header(); h["Trailer"] == nil { // trailers need chunking: no length then
			h["Content-Length"] = []string{strconv.Itoa(w.held())}
		}
		w.ResponseWriter.WriteHeader(w.code)
		if w.hold != nil {
			w.ResponseWriter.Write(*w.hold) //nolint:errcheck // the client may be gone
			w.releaseHold()
		}
	case czEncode:
		w.enc.Close()           //nolint:errcheck // the client may be gone
		w.enc.Reset(io.Discard) // the pool must not keep a response alive
		encoderPools[w.f.codings[w.coding]].Put(w.enc)
		w.enc = nil
	}
	w.state = czDone
}

// negotiateEncoding picks, from the Accept-Encoding field lines, the
// coding in prefs the client weighs highest (ties: the first in prefs);
// -1 when it accepts none (q=0 refuses; "*" stands for the unlisted).
// A name listed twice counts once, at its first weight; an element with
// a malformed weight is ignored. No allocation.
func negotiateEncoding(accept []string, prefs []contentCoding) int {
	var q [numCodings + 1]int // weights in thousandths; the last is "*"'s
	for i := range q {
		q[i] = -1
	}
	for _, line := range accept {
		for line != "" {
			var elem string
			elem, line, _ = strings.Cut(line, ",")
			name, w, ok := parseCodingElem(elem)
			c, known := codingByName(name)
			switch {
			case !ok:
				continue
			case name == "*":
				c, known = numCodings, true
			case strings.EqualFold(name, "x-gzip"): // RFC 9110 section 8.4.1.3
				c, known = codingGzip, true
			}
			if known && q[c] < 0 {
				q[c] = w
			}
		}
	}
	best, bestQ := -1, 0
	for i, c := range prefs {
		w := q[c]
		if w < 0 {
			w = q[numCodings]
		}
		if w > bestQ {
			best, bestQ = i, w
		}
	}
	return best
}

// parseCodingElem reads `coding *( OWS ";" OWS param )` where a "q"
// param is the weight (RFC 9110 section 12.4.2), in thousandths.
func parseCodingElem(elem string) (name string, q int, ok bool) {
	name, params, _ := strings.Cut(elem, ";")
	name = strings.Trim(name, " \t")
	if name == "" {
		return "", 0, false
	}
	q = 1000
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		p = strings.Trim(p, " \t")
		if len(p) >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=' {
			if q, ok = parseQValue(p[2:]); !ok {
				return "", 0, false
			}
		}
	}
	return name, q, true
}

// parseQValue reads `"0" [ "." 0*3DIGIT ] / "1" [ "." 0*3("0") ]`.
func parseQValue(s string) (int, bool) {
	if s == "" || len(s) > 5 || s[0] != '0' && s[0] != '1' || len(s) > 1 && s[1] != '.' {
		return 0, false
	}
	q, unit := int(s[0]-'0')*1000, 100
	for i := 2; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		q += int(s[i]-'0') * unit
		unit /= 10
	}
	return q, q <= 1000
}

// mediaTypes is a compiled Types list (Subst's and Compress's): lower
// case "type/subtype", or "type/" for "type/*".
type mediaTypes []string

func parseMediaTypes(list []string) (mediaTypes, error) {
	var out mediaTypes
	for _, t := range list {
		s := strings.ToLower(strings.TrimSpace(t))
		typ, sub, ok := strings.Cut(s, "/")
		if !ok || !isMediaToken(typ) || typ == "*" || sub != "*" && !isMediaToken(sub) {
			return nil, fmt.Errorf("type %q: want type/subtype or type/*", t)
		}
		if sub == "*" {
			s = typ + "/"
		}
		out = append(out, s)
	}
	return out, nil
}

// isMediaToken: a lower-case RFC 9110 token.
func isMediaToken(s string) bool {
	return s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~") == ""
}

// match tells whether the response's Content-Type is listed.
func (m mediaTypes) match(h http.Header) bool {
	ct := h["Content-Type"]
	if len(ct) == 0 {
		return false
	}
	v, _, _ := strings.Cut(ct[0], ";")
	v = strings.Trim(v, " \t")
	for _, t := range m {
		if t[len(t)-1] == '/' {
			if len(v) > len(t) && strings.EqualFold(v[:len(t)], t) {
				return true
			}
		} else if strings.EqualFold(v, t) {
			return true
		}
	}
	return false
}

// identityEncoded: no Content-Encoding, or "identity".
func identityEncoded(h http.Header) bool {
	ce := h["Content-Encoding"]
	return len(ce) == 0 || len(ce) == 1 && (ce[0] == "" || strings.EqualFold(strings.TrimSpace(ce[0]), "identity"))
}

// weakenETag makes a strong validator weak: the bytes are changed, the
// representation is not.
func weakenETag(h http.Header) {
	if e := h["Etag"]; len(e) == 1 && strings.HasPrefix(e[0], `"`) {
		h["Etag"] = []string{"W/" + e[0]}
	}
}

// headerHasToken tells whether a comma-separated list field has the token
// (before any "=argument"), in any case.
func headerHasToken(lines []string, token string) bool {
	for _, line := range lines {
		for line != "" {
			var elem string
			elem, line, _ = strings.Cut(line, ",")
			elem, _, _ = strings.Cut(elem, "=")
			if strings.EqualFold(strings.Trim(elem, " \t"), token) {
				return true
			}
		}
	}
	return false
}
