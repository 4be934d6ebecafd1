package filter

import (
	"bytes"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/httpsyntax"
)

// rawTerminal is a response writer that takes raw fields, as the server's
// HTTP/1.1 writer does, and records the head it would send.
type rawTerminal struct {
	hdr   http.Header
	raw   httpsyntax.RawFields
	on    bool
	sent  http.Header // the head as written
	asRaw bool        // it went out from the raw fields
}

func (w *rawTerminal) Header() http.Header {
	if w.on {
		w.on = false
		w.raw.CopyTo(w.hdr)
	}
	return w.hdr
}

func (w *rawTerminal) RawFields(take bool) *httpsyntax.RawFields {
	switch {
	case !take && w.on:
		return &w.raw
	case take && w.sent == nil && len(w.hdr) == 0:
		w.on = true
		return &w.raw
	}
	return nil
}

func (w *rawTerminal) WriteHeader(int) {
	if w.sent != nil {
		return
	}
	if !w.on {
		w.sent = w.hdr.Clone()
		return
	}
	w.on, w.asRaw = false, true
	w.sent = http.Header{}
	for line := range strings.SplitSeq(strings.TrimSuffix(string(w.raw.AppendTo(nil)), "\r\n"), "\r\n") {
		name, value, _ := strings.Cut(line, ":")
		k := http.CanonicalHeaderKey(name)
		w.sent[k] = append(w.sent[k], strings.TrimSpace(value))
	}
}

func (w *rawTerminal) Write(p []byte) (int, error) { w.WriteHeader(200); return len(p), nil }

// backendHandler answers with block's field lines, as the proxy does:
// raw when the writer takes them, through the map otherwise.
func backendHandler(block string, raw bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rf := httpsyntax.RawFieldsOf(w, true); raw && rf != nil {
			b := []byte(block)
			rf.Reset(b, 2)
			for start := 0; start < len(b); {
				end := start + bytes.Index(b[start:], []byte("\r\n"))
				rf.AddLine(start, start+bytes.IndexByte(b[start:end], ':'), end)
				start = end + 2
			}
			// The sticky cookie, as the server adds it.
			rf.Add("Set-Cookie", []string{"tlsedge_sticky=abc; Path=/; HttpOnly"})
		} else {
			h := w.Header()
			for line := range strings.SplitSeq(strings.TrimSuffix(block, "\r\n"), "\r\n") {
				name, value, _ := strings.Cut(line, ":")
				h.Add(name, strings.TrimSpace(value))
			}
			h.Add("Set-Cookie", "tlsedge_sticky=abc; Path=/; HttpOnly")
		}
		w.WriteHeader(200)
		w.Write([]byte("ok")) //nolint:errcheck
	})
}

// The response filter gives the same head whether the backend's fields
// come raw or through the map: hidden fields removed in any case,
// replaced ones replaced, its own added; and a head with a backend URL to
// rewrite goes through the map.
func TestResponseHeadersRawSameAsMap(t *testing.T) {
	cfg := ResponseHeadersConfig{
		HSTS:     time.Hour,
		Backends: []string{"10.0.0.5:8080"},
		Set:      SecurityHeaders(),
	}
	for _, tc := range []struct {
		name, block string
		raw         bool // the raw fields went out as they were
	}{
		{"plain", "Content-Type: text/html\r\nContent-Length: 2\r\nETag: \"x\"\r\n", true},
		{"hidden any case", "server: nginx\r\nX-POWERED-BY: php\r\nContent-Length: 2\r\nvia: 1.1 cache\r\n", true},
		{"replaced", "Strict-Transport-Security: max-age=1\r\nx-frame-options: DENY\r\nX-Request-Id: backend\r\nContent-Length: 2\r\n", true},
		{"backend cookie", "Set-Cookie: a=1; Path=/\r\nset-cookie: b=2\r\nContent-Length: 2\r\n", true},
		{"cookie domain", "Set-Cookie: a=1; Domain=10.0.0.5\r\nContent-Length: 2\r\n", false},
		{"cookie domain, tab, lower case", "set-cookie: a=1; Path=/;\tdomain=10.0.0.5\r\nContent-Length: 2\r\n", false},
		{"cookie without domain", "Set-Cookie: a=1; Path=/; SameSite=Lax; domainx\r\nContent-Length: 2\r\n", false},
		{"location", "Location: http://10.0.0.5:8080/next\r\nContent-Length: 2\r\n", false},
		{"refresh", "refresh: 0; url=http://10.0.0.5:8080/\r\nContent-Length: 2\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			serve := func(raw bool) *rawTerminal {
				h := RequestID(ResponseHeaders(backendHandler(tc.block, raw), cfg))
				w := &rawTerminal{hdr: http.Header{}}
				r := httptest.NewRequest("GET", "https://shop.example.com/", nil)
				r.TLS = &tls.ConnectionState{}
				r.Header.Set(RequestIDHeader, "client-id-1")
				h.ServeHTTP(w, r)
				return w
			}
			viaMap, viaRaw := serve(false), serve(true)
			if viaMap.asRaw || viaRaw.asRaw != tc.raw {
				t.Fatalf("sent raw: map path %v, raw path %v, want %v", viaMap.asRaw, viaRaw.asRaw, tc.raw)
			}
			if !reflect.DeepEqual(viaRaw.sent, viaMap.sent) {
				t.Errorf("raw path sent %q\nmap path sent %q", viaRaw.sent, viaMap.sent)
			}
			for _, k := range []string{"Server", "X-Powered-By", "Via"} {
				if _, ok := viaRaw.sent[k]; ok {
					t.Errorf("%s was sent", k)
				}
			}
			if got := viaRaw.sent["Strict-Transport-Security"]; len(got) != 1 || got[0] != "max-age=3600" {
				t.Errorf("Strict-Transport-Security %q", got)
			}
			if got := viaRaw.sent["X-Frame-Options"]; len(got) != 1 || got[0] != "SAMEORIGIN" {
				t.Errorf("X-Frame-Options %q", got)
			}
			if got := viaRaw.sent[RequestIDHeader]; len(got) != 1 || got[0] != "client-id-1" {
				t.Errorf("X-Request-Id %q", got)
			}
		})
	}
}

// writeTerminal is a terminal writer that takes raw fields and writes the
// head into a scratch buffer, as the server's HTTP/1.1 writer does, so
// that the benchmark below compares the two paths end to end.
type writeTerminal struct {
	rawTerminal
	out []byte
}

func (w *writeTerminal) WriteHeader(int) {
	b := w.out[:0]
	if w.on {
		w.on = false
		b = w.raw.AppendTo(b)
	} else {
		for k, vs := range w.hdr {
			for _, v := range vs {
				if httpsyntax.IsToken(k) && httpsyntax.ValidFieldValue(v) {
					b = append(append(append(append(b, k...), ": "...), v...), "\r\n"...)
				}
			}
		}
	}
	w.out = b
}

func (w *writeTerminal) Write(p []byte) (int, error) { return len(p), nil }

// benchBackend answers with block's fields the way the proxy does, at
// the proxy's cost: raw, the lines found and marked; as a map, what
// upstream's copyFields does (one string of the block, one slice of value
// slots, a map entry per field whose name is canonical already).
func benchBackend(block string, raw bool) http.Handler {
	bb := []byte(block)
	cookie := []string{"tlsedge_sticky=MTc2NDUzMjQwMHxhYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODk; Path=/; HttpOnly; Secure; SameSite=Lax"}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rf := httpsyntax.RawFieldsOf(w, true); raw && rf != nil {
			rf.Reset(bb, 1024)
			for start := 0; start < len(bb); {
				end := start + bytes.Index(bb[start:], []byte("\r\n"))
				rf.AddLine(start, start+bytes.IndexByte(bb[start:end], ':'), end)
				if httpsyntax.EqualFieldName(bb[start:start+10], "Connection") {
					rf.Drop(rf.Len() - 1) // hop-by-hop, as fillRaw marks it
				}
				start = end + 2
			}
			rf.Add("Set-Cookie", cookie)
		} else {
			h := w.Header()
			s := string(bb)
			slots := make([]string, strings.Count(s, "\r\n"))
			for i := 0; s != ""; i++ {
				var line string
				line, s, _ = strings.Cut(s, "\r\n")
				name, value, _ := strings.Cut(line, ":")
				if name == "Connection" {
					continue
				}
				slots[i] = httpsyntax.TrimOWS(value)
				h[name] = slots[i : i+1 : i+1]
			}
			h["Set-Cookie"] = cookie
		}
		w.WriteHeader(200)
	})
}

// BenchmarkResponseHeadRaw is a backend's head (nine fields, one of them
// hop-by-hop, and the sticky cookie) through the response filter (hidden
// fields, HSTS, security headers, URL rewriting on) and written out, as a
// map (built as copyFields builds it, filtered, walked and checked) and
// raw (lines marked, filtered in place, copied):
//
//	go test -run '^$' -bench ResponseHeadRaw -benchmem ./filter
func BenchmarkResponseHeadRaw(b *testing.B) {
	const block = "Server: nginx/1.22.1\r\nDate: Mon, 30 Nov 2026 20:00:00 GMT\r\nContent-Type: text/plain\r\n" +
		"Content-Length: 1024\r\nLast-Modified: Mon, 30 Nov 2026 19:00:00 GMT\r\nConnection: keep-alive\r\n" +
		"ETag: \"6929a2e0-400\"\r\nAccept-Ranges: bytes\r\nX-Powered-By: PHP/8.3\r\n"
	cfg := ResponseHeadersConfig{HSTS: 365 * 24 * time.Hour, Backends: []string{"127.0.0.1:9001"}, Set: SecurityHeaders()}
	for _, raw := range []bool{false, true} {
		name := "map"
		if raw {
			name = "raw"
		}
		b.Run(name, func(b *testing.B) {
			h := ResponseHeaders(benchBackend(block, raw), cfg)
			r := httptest.NewRequest("GET", "https://shop.example.com/", nil)
			r.TLS = &tls.ConnectionState{Version: tls.VersionTLS13}
			r.Header[RequestIDHeader] = []string{"0f3c9a2be41d7a55-1"}
			w := &writeTerminal{rawTerminal: rawTerminal{hdr: http.Header{}}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.hdr)
				w.sent = nil
				h.ServeHTTP(w, r)
			}
		})
	}
}
