package filter

import (
	"bytes"
	"cmp"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestParseSubstRule(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want SubstRule
		err  string // part of the error; "" for none
	}{
		{in: "http://backend:8080=>https://www.example.com", want: SubstRule{From: "http://backend:8080", To: "https://www.example.com"}},
		{in: "old=>", want: SubstRule{From: "old"}},
		{in: "a=>b=>c", want: SubstRule{From: "a", To: "b=>c"}},
		{in: "a==>b", want: SubstRule{From: "a=", To: "b"}},
		{in: `~v(\d+)\.(\d+)=>v$1-$2`, want: SubstRule{From: `v(\d+)\.(\d+)`, To: "v$1-$2", Regexp: true}},
		{in: `~(?i)Copyright 20\d\d=>© 2025`, want: SubstRule{From: `(?i)Copyright 20\d\d`, To: "© 2025", Regexp: true}},
		{in: "no arrow", err: `"no arrow": want FROM=>TO`},
		{in: "=>x", err: `"=>x": empty FROM`},
		{in: "~=>x", err: `"~=>x": empty FROM`},
		{in: "~(=>x", err: "missing closing )"},
		{in: "~a*=>x", err: "can match the empty string"},
		{in: "~x|=>y", err: "can match the empty string"},
		{in: `~\bword\b=>x`, err: "word boundaries"},
		{in: "~^<html>=>x", err: "anchors"},
		{in: "~(?m)end$=>x", err: "anchors"},
		{in: "~[^\\x00-\\x{10FFFF}]=>x", err: "never matches"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSubstRule(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one with %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
			if back, err := ParseSubstRule(got.String()); err != nil || back != got {
				t.Errorf("String %q parses back as %+v, %v", got.String(), back, err)
			}
		})
	}
}

// A literal the syntax cannot carry is written as the regexp matching it,
// To's dollars escaped.
func TestSubstRuleStringQuotes(t *testing.T) {
	for _, r := range []SubstRule{{From: "~tilde", To: "$1"}, {From: "a=>b", To: "x$y"}, {From: "(.*)=>", To: "$$"}} {
		p, err := ParseSubstRule(r.String())
		if err != nil || !p.Regexp {
			t.Fatalf("%+v: String %q: %+v, %v", r, r.String(), p, err)
		}
		body := "<" + r.From + "|" + r.From + ">"
		want := strings.ReplaceAll(body, r.From, r.To)
		if got := regexp.MustCompile(p.From).ReplaceAllString(body, p.To); got != want {
			t.Errorf("%+v: %q gives %q, want %q", r, r.String(), got, want)
		}
	}
}

func TestSubstConfigErrors(t *testing.T) {
	ok := SubstRule{From: "a", To: "b"}
	for _, tc := range []struct {
		cfg SubstConfig
		err string
	}{
		{SubstConfig{Rules: []SubstRule{ok}, MaxMatch: -1}, "negative max match"},
		{SubstConfig{Rules: []SubstRule{ok}, Types: []string{"html"}}, `type "html"`},
		{SubstConfig{Rules: []SubstRule{ok}, Types: []string{"*/*"}}, `type "*/*"`},
		{SubstConfig{Rules: []SubstRule{ok, {From: "x{100}", Regexp: true}}, MaxMatch: 50}, `rule 2 "~x{100}=>": regexp "x{100}" needs 100 bytes, over the max match 50`},
		{SubstConfig{Rules: []SubstRule{{From: "(", Regexp: true}}}, `rule 1 "~(=>"`},
	} {
		if _, err := Subst(http.NotFoundHandler(), tc.cfg); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%+v: error %v, want one with %q", tc.cfg, err, tc.err)
		}
	}
	next := http.NewServeMux()
	for _, cfg := range []SubstConfig{{}, {Rules: []SubstRule{ok}, Types: []string{}}} {
		if h, err := Subst(next, cfg); err != nil || h != http.Handler(next) {
			t.Errorf("%+v: %v, %v; want next itself", cfg, h, err)
		}
	}
}

// substBackend answers with the request's case: head and body as it says.
type substBackend struct {
	header map[string]string
	code   int      // 0: Write without WriteHeader
	body   []string // the writes
}

func (b substBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for k, v := range b.header {
		w.Header().Set(k, v)
	}
	if b.code != 0 {
		w.WriteHeader(b.code)
		w.WriteHeader(http.StatusTeapot) // superfluous: ignored
	}
	for _, p := range b.body {
		io.WriteString(w, p)
	}
}

func TestSubstResponses(t *testing.T) {
	f, err := Subst(nil, SubstConfig{Rules: []SubstRule{
		{From: "http://backend:8080/", To: "https://www.example.com/"},
		{From: `v(\d)\.(\d)`, To: "v$1-$2", Regexp: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	page := []string{"<a href=\"http://back", "end:8080/x\">v1", ".2</a>"}
	const rewritten = `<a href="https://www.example.com/x">v1-2</a>`
	html := map[string]string{"Content-Type": "text/html; charset=utf-8", "Content-Length": "41", "Etag": `"abc"`, "Accept-Ranges": "bytes"}
	with := func(k, v string) map[string]string {
		h := map[string]string{}
		for k, v := range html {
			h[k] = v
		}
		h[k] = v
		return h
	}
	for _, tc := range []struct {
		name    string
		method  string
		backend substBackend
		want    string // body; "" for the backend's own
		etag    string
	}{
		{name: "html", backend: substBackend{html, 200, page}, want: rewritten, etag: `W/"abc"`},
		{name: "implicit 200", backend: substBackend{html, 0, page}, want: rewritten, etag: `W/"abc"`},
		{name: "type case", backend: substBackend{with("Content-Type", "TEXT/HTML"), 200, page}, want: rewritten, etag: `W/"abc"`},
		{name: "weak etag stays", backend: substBackend{with("Etag", `W/"x"`), 200, page}, want: rewritten, etag: `W/"x"`},
		{name: "identity", backend: substBackend{with("Content-Encoding", "identity"), 200, page}, want: rewritten, etag: `W/"abc"`},
		{name: "error page", backend: substBackend{html, 502, page}, want: rewritten, etag: `W/"abc"`},
		{name: "other type", backend: substBackend{with("Content-Type", "image/svg+xml"), 200, page}},
		{name: "no type", backend: substBackend{with("Content-Type", ""), 200, page}},
		{name: "compressed", backend: substBackend{with("Content-Encoding", "gzip"), 200, page}},
		{name: "range", backend: substBackend{with("Content-Range", "bytes 0-40/100"), 206, page}},
		{name: "head", method: "HEAD", backend: substBackend{html, 200, nil}},
		{name: "not modified", backend: substBackend{html, 304, nil}},
		{name: "no content", backend: substBackend{html, 204, nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.(*subst).next = tc.backend
			w := httptest.NewRecorder()
			f.ServeHTTP(w, httptest.NewRequest(cmp.Or(tc.method, "GET"), "/", nil))
			res := w.Result()
			if tc.want == "" { // untouched
				if w.Body.String() != strings.Join(tc.backend.body, "") || res.Header.Get("Etag") != tc.backend.header["Etag"] ||
					res.Header.Get("Content-Length") != tc.backend.header["Content-Length"] {
					t.Errorf("changed: %d %v %q", res.StatusCode, res.Header, w.Body)
				}
				return
			}
			if w.Body.String() != tc.want || res.StatusCode != cmp.Or(tc.backend.code, 200) {
				t.Errorf("got %d %q, want %q", res.StatusCode, w.Body, tc.want)
			}
			if h := res.Header; h.Get("Content-Length") != "" || h.Get("Accept-Ranges") != "" || h.Get("Etag") != tc.etag {
				t.Errorf("head %v: want no length, no ranges, ETag %s", h, tc.etag)
			}
		})
	}
}

// A flush sends what is settled at once (the client reads it while the
// handler waits); the start of a possible match stays held, and is
// replaced when the rest comes.
func TestSubstFlushStreams(t *testing.T) {
	step := make(chan struct{})
	h, err := Subst(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		rc := http.NewResponseController(w)
		io.WriteString(w, "hello wor")
		if err := rc.Flush(); err != nil {
			t.Error(err)
		}
		select {
		case <-step:
		case <-r.Context().Done(): // the client gave up
			return
		}
		io.WriteString(w, "ld!")
	}), SubstConfig{Rules: []SubstRule{{From: "world", To: "there"}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := srv.Client()
	client.Timeout = 10 * time.Second // a held flush fails the read, not the run
	res, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	buf := make([]byte, 64)
	n, err := res.Body.Read(buf)
	if string(buf[:n]) != "hello" {
		t.Errorf("first read %q, %v; want the settled %q", buf[:n], err, "hello")
	}
	close(step)
	rest, _ := io.ReadAll(res.Body)
	if got := string(buf[:n]) + string(rest); got != "hello there!" {
		t.Errorf("body %q", got)
	}
}

// substWhole is the reference: each rule on the whole body, in order.
func substWhole(t testing.TB, body []byte, rules []SubstRule) []byte {
	for _, r := range rules {
		if r.Regexp {
			body = regexp.MustCompile(r.From).ReplaceAll(body, []byte(r.To))
		} else {
			body = bytes.ReplaceAll(body, []byte(r.From), []byte(r.To))
		}
	}
	return body
}

// checkWriter compares what it is written with want, keeping nothing.
type checkWriter struct {
	want []byte
	off  int
	bad  int // offset of the first difference; -1: none
}

func (c *checkWriter) Write(p []byte) (int, error) {
	if c.bad < 0 && (c.off+len(p) > len(c.want) || !bytes.Equal(c.want[c.off:c.off+len(p)], p)) {
		c.bad = c.off
	}
	c.off += len(p)
	return len(p), nil
}

// substSizes are the odd sizes a body is written in, in turn.
var substSizes = []int{1, 3, 7, 4093, 65537, 31, 100003, 2, 8191, 5}

// A 20 MiB body written in odd-sized pieces, with a match across every
// cut, comes out as the whole-body replacement, and every stage's memory
// stays within its window and a step or two. Dense matches and patterns
// without a literal prefix are slow under -race: they get 1 MiB.
func TestSubstStreamsBoundedMemory(t *testing.T) {
	fast := []SubstRule{
		{From: "needle", To: "pin"},
		{From: `id=(\d{1,6});`, To: "ID[$1]", Regexp: true},
		{From: `pi(n)`, To: "Pé$1", Regexp: true}, // the first rule's output
	}
	t.Run("20MiB", func(t *testing.T) {
		lorem := strings.Repeat("lorem ipsum dolor sit amet, consectetur adipiscing elit. ", 100)
		needles := []string{"needle", "id=123456;", "id=7;", "pin"}
		var body bytes.Buffer
		crossed, cut := 0, 0
		for i := 0; body.Len() < 20<<20; i++ {
			cut += substSizes[i%len(substSizes)]
			nd := needles[i%len(needles)]
			start := cut - 1 - i%(len(nd)-1) // the needle crosses the cut
			if start < body.Len() {
				continue
			}
			for body.Len() < start {
				body.WriteString(lorem[:min(len(lorem), start-body.Len())])
			}
			body.WriteString(nd)
			crossed++
		}
		if crossed < 500 {
			t.Fatalf("only %d matches across cuts", crossed)
		}
		testSubstStream(t, body.Bytes(), fast)
	})
	t.Run("dense", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		words := []string{"needle", "need", "le", "id=", "42", "123456;", "id=7;", "é", "中", "x", "cafÉ", " ", "\n", "<p>", "ca"}
		var body bytes.Buffer
		for body.Len() < 1<<20 {
			body.WriteString(words[rng.IntN(len(words))])
		}
		testSubstStream(t, body.Bytes(), append(fast[:3:3],
			SubstRule{From: `[é中]{2}x?`, To: "<2>", Regexp: true},         // runes cut by writes
			SubstRule{From: `(?i)caf(?:e|é)`, To: "coffee", Regexp: true}, // case folding: a wider window
			// Matches only a byte the regexp cannot decode: there is none
			// unless a held tail starts inside a character.
			SubstRule{From: `[\x{FFFD}\x{FFFE}]`, To: "<bad>", Regexp: true},
		))
	})
}

func testSubstStream(t *testing.T, body []byte, rules []SubstRule) {
	want := substWhole(t, body, rules)
	f, err := Subst(nil, SubstConfig{Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	out := &checkWriter{want: want, bad: -1}
	chain := f.(*subst).getChain(out)
	for p, i := body, 0; len(p) > 0; i++ {
		n := min(substSizes[i%len(substSizes)], len(p))
		if _, err := chain.stages[0].Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	for i := range chain.stages {
		if err := chain.stages[i].run(true); err != nil {
			t.Fatal(err)
		}
	}
	if out.bad >= 0 || out.off != len(want) {
		t.Fatalf("output differs from whole-body replacement at %d (%d bytes, want %d)", out.bad, out.off, len(want))
	}
	for i, s := range chain.stages {
		if cap(s.buf) > 2*(s.rule.window+substStep) || cap(s.out) > 4*substStep {
			t.Errorf("stage %d (window %d): buffers grew to %d and %d bytes", i, s.rule.window, cap(s.buf), cap(s.out))
		}
	}
}

// Cuts inside a character: a regexp must not see its pieces, neither at
// the end of a write nor at the start of a held tail.
func TestSubstCutCharacters(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		writes  []string
	}{
		{`[a-z]{1,6}[\x{FFFD}\x{FFFE}]`, []string{"abcdef\xf0\x9f\x98", "\x80 ok"}},
		{`[\x{FFFD}\x{FFFE}]`, []string{"ab中", "中", "\xe4", "\xb8\xad", "x"}},
		{`.{2}x`, []string{"中中", "\xe4\xb8", "\xadx", "é\xff", "x"}},
	} {
		rules := []SubstRule{{From: tc.pattern, To: "<$0>", Regexp: true}}
		body := strings.Join(tc.writes, "")
		want := substWhole(t, []byte(body), rules)
		h, err := Subst(substBackend{map[string]string{"Content-Type": "text/plain"}, 200, tc.writes}, SubstConfig{Rules: rules})
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
		if w.Body.String() != string(want) {
			t.Errorf("%s on %q: got %q, want %q", tc.pattern, tc.writes, w.Body, want)
		}
	}
}

// Chained and cut writes through the handler equal the whole-body
// replacement. Patterns are bounded (or MaxMatch covers the body), so
// the equality is promised for every input.
func FuzzSubst(f *testing.F) {
	f.Add([]byte("hello world, hello wor ld"), "world", "there", []byte{3, 1, 4}, uint8(0))
	f.Add([]byte("aab ab ccd aaaab"), "ab", "$1", []byte{1, 1, 1, 1}, uint8(1))
	f.Add([]byte("é中é中x éé"), "中", "x", []byte{1, 2, 1}, uint8(3))
	f.Add([]byte("xyzxyxyz KkK"), "x", "", []byte{2, 5}, uint8(5))
	f.Add([]byte("ababcabab abc"), "abc", "c", []byte{7}, uint8(6))
	f.Add([]byte("中中é中x\xffé"), "中x", "", []byte{0, 1, 2, 3}, uint8(7))
	patterns := []string{`a{1,3}b`, `[ab]c?d`, `(x|xy|xyz)`, `(é|中){1,2}x?`, `\d{2,4}`, `(?i)k`, `(ab)+c`, `.{2}`}
	f.Fuzz(func(t *testing.T, body []byte, lit, to string, cuts []byte, pat uint8) {
		if len(body) > 1<<16 {
			return
		}
		var rules []SubstRule
		if lit != "" {
			rules = append(rules, SubstRule{From: lit, To: to})
		}
		rules = append(rules, SubstRule{From: patterns[int(pat)%len(patterns)], To: "[$0$1]", Regexp: true})
		if q := regexp.QuoteMeta(lit); lit != "" && utf8.ValidString(lit) {
			rules = append(rules, SubstRule{From: q + "{1,2}", To: to, Regexp: true})
		}
		want := substWhole(t, body, rules)
		// Longer than the text the unbounded (ab)+c sees, and than the
		// bounded patterns' matches: every match is within MaxMatch, so
		// streaming must be exact.
		mid := body // what (ab)+c sees
		if lit != "" {
			mid = bytes.ReplaceAll(body, []byte(lit), []byte(to))
		}
		maxMatch := len(mid) + 2*len(lit) + 64
		h, err := Subst(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			p := body
			for i := 0; len(p) > 0; i++ {
				n := len(p)
				if len(cuts) > 0 {
					n = min(int(cuts[i%len(cuts)])+1, len(p))
				}
				w.Write(p[:n])
				p = p[n:]
			}
		}), SubstConfig{Rules: rules, MaxMatch: maxMatch})
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
		if !bytes.Equal(w.Body.Bytes(), want) {
			t.Fatalf("rules %v on %q cut by %v:\n got %q\nwant %q", rules, body, cuts, w.Body.Bytes(), want)
		}
	})
}

// Whatever the line, parsing does not panic, and what it accepts prints
// back as itself and builds a filter.
func FuzzParseSubstRule(f *testing.F) {
	for _, s := range []string{"a=>b", "~a(b+)c=>$1", "=>", "~=>", "a==>>b", `~x=\>y=>z`, "~\\Q=>\\E=>x", "~(?i)k=>K"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseSubstRule(s)
		if err != nil {
			if r != (SubstRule{}) {
				t.Errorf("%q: error %v with rule %+v", s, err, r)
			}
			return
		}
		if r.From == "" {
			t.Errorf("%q: empty From accepted", s)
		}
		if back, err := ParseSubstRule(r.String()); err != nil || back != r {
			t.Errorf("%q: String %q parses back as %+v, %v; want %+v", s, r.String(), back, err, r)
		}
		if _, err := Subst(http.NotFoundHandler(), SubstConfig{Rules: []SubstRule{r}, MaxMatch: substUnbounded}); err != nil {
			t.Errorf("%q parsed but Subst refuses it: %v", s, err)
		}
	})
}
