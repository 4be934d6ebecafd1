package filter

// Body substitution (nginx's sub_filter), streamed: each rule is a stage
// that holds back, between writes, only the bytes a match could still
// start in (the longest match less one), so memory is bounded by the
// rules, not the body, and a match split across writes is found.
//
// The output is the rules applied in order to the whole body
// (strings.ReplaceAll, regexp.ReplaceAll): exactly for literals and for
// regexps whose matches fit in MaxMatch. To keep that promise, regexps
// that can match the empty string are refused, and so are ^, $, \A, \z,
// \b and \B (they would see the edges of a write, not of the text); the
// held tail starts on a UTF-8 boundary, so a regexp sees the characters
// the whole body has.
//
// Only text as sent is rewritten: compressed bodies (put Compress outside
// Subst), ranges, HEAD and responses without Content-Type (net/http would
// sniff their type from bytes the rules could change) pass unchanged.

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"regexp/syntax"
	"strings"
	"sync"
	"unicode/utf8"
)

// SubstConfig says what to rewrite in which responses. The zero value of
// each field is its default; the struct is not used after Subst returns.
type SubstConfig struct {
	// Rules apply in order, each to the output of the one before. None:
	// Subst returns next.
	Rules []SubstRule
	// Types are the media types rewritten: "type/subtype" or "type/*",
	// in any case, parameters ignored. Nil: text/html, text/plain,
	// text/css, text/javascript, text/xml, application/javascript,
	// application/json, application/xml. Empty: none (returns next).
	Types []string
	// MaxMatch is the longest text, in bytes, a regexp match is sure to
	// be found in (default 4096). A regexp rule holds back MaxMatch-1
	// bytes at most between writes (less if its matches cannot be that
	// long); a match that could be longer may be cut short or missed. A
	// pattern that needs more than MaxMatch bytes is refused.
	MaxMatch int
}

// DefaultSubstMaxMatch is SubstConfig.MaxMatch's default.
const DefaultSubstMaxMatch = 4096

func (c *SubstConfig) maxMatch() int {
	if c.MaxMatch == 0 {
		return DefaultSubstMaxMatch
	}
	return c.MaxMatch
}

func (c *SubstConfig) types() []string {
	if c.Types == nil {
		return []string{"text/html", "text/plain", "text/css", "text/javascript", "text/xml",
			"application/javascript", "application/json", "application/xml"}
	}
	return c.Types
}

// SubstRule replaces every From in a body with To. A literal From is
// matched byte for byte. A regexp (Go's RE2 syntax) is matched
// leftmost-first, as regexp.ReplaceAll does, and its To may name groups
// ($1, ${name}; $$ for a dollar).
type SubstRule struct {
	From, To string
	Regexp   bool
}

// ParseSubstRule reads "FROM=>TO" (literal) or "~REGEXP=>TO". The first
// "=>" ends FROM, so FROM holds none (a regexp can say =\>); TO can. A
// literal FROM starting with "~" is written as a regexp: ~\~...
func ParseSubstRule(s string) (SubstRule, error) {
	from, to, ok := strings.Cut(s, "=>")
	if !ok {
		return SubstRule{}, fmt.Errorf("subst rule %q: want FROM=>TO or ~REGEXP=>TO", s)
	}
	r := SubstRule{From: from, To: to}
	if rest, ok := strings.CutPrefix(from, "~"); ok {
		r.From, r.Regexp = rest, true
	}
	if _, err := compileSubstRule(r, substUnbounded); err != nil {
		return SubstRule{}, fmt.Errorf("subst rule %q: %w", s, err)
	}
	return r, nil
}

// String is the rule in ParseSubstRule's syntax. A literal From that the
// syntax cannot carry as it is (one starting with "~" or holding "=>")
// is written as the regexp that matches it.
func (r SubstRule) String() string {
	switch {
	case r.Regexp:
		return "~" + strings.ReplaceAll(r.From, "=>", `=\>`) + "=>" + r.To
	case strings.HasPrefix(r.From, "~") || strings.Contains(r.From, "=>"):
		from := strings.ReplaceAll(regexp.QuoteMeta(r.From), "=>", `=\>`)
		return "~" + from + "=>" + strings.ReplaceAll(r.To, "$", "$$")
	}
	return r.From + "=>" + r.To
}

// Subst returns next with the rules applied to its text responses. The
// rules are compiled here; a response costs a pooled set of stage
// buffers, taken only when its type says it is rewritten.
func Subst(next http.Handler, cfg SubstConfig) (http.Handler, error) {
	if cfg.MaxMatch < 0 {
		return nil, fmt.Errorf("subst: negative max match %d", cfg.MaxMatch)
	}
	types, err := parseMediaTypes(cfg.types())
	if err != nil {
		return nil, fmt.Errorf("subst: %w", err)
	}
	if len(cfg.Rules) == 0 || len(types) == 0 {
		return next, nil
	}
	f := &subst{next: next, types: types}
	for i, r := range cfg.Rules {
		c, err := compileSubstRule(r, cfg.maxMatch())
		if err != nil {
			return nil, fmt.Errorf("subst: rule %d %q: %w", i+1, r.String(), err)
		}
		f.rules = append(f.rules, c)
	}
	return f, nil
}

// substUnbounded is "no limit" in match lengths (arithmetic saturates).
const substUnbounded = 1 << 30

// substRule is a compiled rule.
type substRule struct {
	lit    []byte         // a literal From; nil for a regexp
	re     *regexp.Regexp // a regexp From
	to     []byte
	expand bool // a regexp's To names groups: expanded per match
	// window is the longest match to be found: a stage settles a
	// position once window bytes follow it, and holds back window-1.
	window int
}

func compileSubstRule(r SubstRule, maxMatch int) (*substRule, error) {
	if r.From == "" {
		return nil, fmt.Errorf("empty FROM")
	}
	c := &substRule{to: []byte(r.To)}
	if !r.Regexp {
		c.lit, c.window = []byte(r.From), len(r.From)
		return c, nil
	}
	re, err := regexp.Compile(r.From)
	if err != nil {
		return nil, err // it quotes the pattern
	}
	tree, err := syntax.Parse(r.From, syntax.Perl) // as regexp.Compile does
	if err != nil {
		return nil, err
	}
	lo, hi, err := substMatchLen(tree)
	switch {
	case err != nil:
		return nil, err
	case lo >= substUnbounded:
		return nil, fmt.Errorf("regexp %q never matches", r.From)
	case lo == 0:
		return nil, fmt.Errorf("regexp %q can match the empty string", r.From)
	case lo > maxMatch:
		return nil, fmt.Errorf("regexp %q needs %d bytes, over the max match %d", r.From, lo, maxMatch)
	}
	c.re, c.window = re, min(hi, maxMatch)
	c.expand = strings.Contains(r.To, "$")
	return c, nil
}

// substMatchLen bounds the bytes a match of re spans, and refuses the
// zero-width assertions a stream cannot honour. Bounds are loose where
// exactness costs: a case-folded character may be up to 4 bytes, and a
// class or U+FFFD may match one invalid byte.
func substMatchLen(re *syntax.Regexp) (lo, hi int, err error) {
	add := func(a, b int) int { return min(a+b, substUnbounded) }
	mul := func(a, n int) int {
		if n > 0 && a > substUnbounded/n {
			return substUnbounded
		}
		return a * n
	}
	switch re.Op {
	case syntax.OpNoMatch:
		return substUnbounded, 0, nil
	case syntax.OpCharClass:
		if len(re.Rune) == 0 { // [^\x00-\x{10FFFF}]
			return substUnbounded, 0, nil
		}
		n := utf8.RuneLen(re.Rune[len(re.Rune)-1])
		if n < 0 {
			n = utf8.UTFMax
		}
		return 1, n, nil
	case syntax.OpEmptyMatch:
		return 0, 0, nil
	case syntax.OpLiteral:
		for _, r := range re.Rune {
			n := utf8.RuneLen(r)
			switch {
			case re.Flags&syntax.FoldCase != 0:
				lo, hi = lo+1, hi+utf8.UTFMax
			case r == utf8.RuneError || n < 0:
				lo, hi = lo+1, hi+3
			default:
				lo, hi = lo+n, hi+n
			}
		}
		return lo, hi, nil
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return 1, utf8.UTFMax, nil
	case syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return 0, 0, fmt.Errorf("%s: anchors and word boundaries would match at the edges of a write", re)
	case syntax.OpCapture:
		return substMatchLen(re.Sub[0])
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpRepeat:
		sl, sh, err := substMatchLen(re.Sub[0])
		if err != nil {
			return 0, 0, err
		}
		lo, hi = 0, substUnbounded
		switch re.Op {
		case syntax.OpPlus:
			lo = sl
		case syntax.OpQuest:
			hi = sh
		case syntax.OpRepeat:
			lo = mul(sl, re.Min)
			if re.Max >= 0 {
				hi = mul(sh, re.Max)
			}
		}
		if sh == 0 {
			hi = 0
		}
		return lo, hi, nil
	case syntax.OpConcat, syntax.OpAlternate:
		for i, sub := range re.Sub {
			sl, sh, err := substMatchLen(sub)
			if err != nil {
				return 0, 0, err
			}
			switch {
			case re.Op == syntax.OpConcat:
				lo, hi = add(lo, sl), add(hi, sh)
			case i == 0:
				lo, hi = sl, sh
			default:
				lo, hi = min(lo, sl), max(hi, sh)
			}
		}
		return lo, hi, nil
	}
	return 0, 0, fmt.Errorf("%s: unsupported regexp operator", re)
}

type subst struct {
	next  http.Handler
	types mediaTypes
	rules []*substRule
	pool  sync.Pool // of *substChain, stages and buffers kept
}

func (f *subst) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &substWriter{ResponseWriter: w, f: f, head: r.Method == http.MethodHead}
	f.next.ServeHTTP(sw, r)
	// Not deferred: a panicking next (ReverseProxy's ErrAbortHandler)
	// must not have its held tail sent as if the body had ended.
	sw.finish()
}

// substWriter rewrites next's body. Like any ResponseWriter it is used by
// one goroutine at a time.
type substWriter struct {
	http.ResponseWriter
	f     *subst
	head  bool        // a HEAD request
	code  int         // next's final status; 0: none yet
	chain *substChain // non-nil while the body is rewritten
}

var _ http.Flusher = (*substWriter)(nil)

// Unwrap lets http.ResponseController reach the client's writer.
func (w *substWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *substWriter) WriteHeader(code int) {
	if w.code != 0 {
		return // superfluous: the first final status counts, as in net/http
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.ResponseWriter.WriteHeader(code) // 1xx (103 Early Hints) goes now
		return
	}
	w.code = code
	h := w.Header()
	if !w.head && code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified &&
		code != http.StatusPartialContent && h["Content-Range"] == nil && identityEncoded(h) && w.f.types.match(h) {
		// The bytes change: their length, ranges, digests and a strong
		// validator (RFC 9110 section 8.8.1) no longer hold.
		for _, k := range []string{"Content-Length", "Accept-Ranges", "Content-Md5", "Content-Digest", "Repr-Digest"} {
			delete(h, k)
		}
		weakenETag(h)
		w.chain = w.f.getChain(w.ResponseWriter)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *substWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.chain == nil {
		return w.ResponseWriter.Write(p)
	}
	return w.chain.stages[0].Write(p)
}

// FlushError is what http.ResponseController.Flush calls. Every write
// already sent what it settled; what is held back (a possible match's
// start) stays held, so a match spanning a flush is still replaced.
func (w *substWriter) FlushError() error {
	if w.code == 0 {
		w.WriteHeader(http.StatusOK) // as net/http: a flush sends the head
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Flush is FlushError for callers that assert http.Flusher.
func (w *substWriter) Flush() { w.FlushError() } //nolint:errcheck // http.Flusher has no error

// finish sends what the stages hold, the end of the body.
func (w *substWriter) finish() {
	if w.chain == nil {
		return
	}
	// In order: a stage's last output reaches the next before it ends.
	for i := range w.chain.stages {
		if w.chain.stages[i].run(true) != nil {
			break // the client is gone
		}
	}
	w.f.putChain(w.chain)
	w.chain = nil
}

// substChain is one response's stages: each writes to the next, the last
// to the client.
type substChain struct{ stages []substStage }

func (f *subst) getChain(w io.Writer) *substChain {
	c, _ := f.pool.Get().(*substChain)
	if c == nil {
		c = &substChain{stages: make([]substStage, len(f.rules))}
		for i := range c.stages {
			c.stages[i].rule = f.rules[i]
			if i > 0 {
				c.stages[i-1].next = &c.stages[i]
			}
		}
	}
	c.stages[len(c.stages)-1].next = w
	return c
}

func (f *subst) putChain(c *substChain) {
	for i := range c.stages {
		s := &c.stages[i]
		s.buf, s.out, s.err = s.buf[:0], s.out[:0], nil
	}
	c.stages[len(c.stages)-1].next = nil // the pool must not keep a response alive
	f.pool.Put(c)
}

// substStep is how much of a write a stage takes in at a time: a stage's
// memory is its held-back window plus a step or so of output, whatever
// the size of the writes.
const substStep = 32 << 10

// substStage applies one rule to a stream.
type substStage struct {
	rule *substRule
	buf  []byte // held back from the last step, then the current step
	out  []byte // output not yet written to next
	next io.Writer
	err  error // sticky: next failed
}

func (s *substStage) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), substStep)
		s.buf = append(s.buf, p[:k]...)
		p = p[k:]
		if err := s.run(false); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// run replaces the matches it can settle in buf and writes out what
// precedes the first position a match of up to window bytes could start
// at with the text to come. At the end of the body (eof) all is settled.
func (s *substStage) run(eof bool) error {
	r, buf := s.rule, s.buf
	end := len(buf)
	if !eof && r.re != nil {
		end = substWholeRunes(buf) // a regexp must not see half a character
	}
	done := 0 // buf[:done] is in out
	for done < end {
		src := buf[done:end]
		var m []int
		if r.re == nil {
			if i := bytes.Index(src, r.lit); i >= 0 {
				m = []int{i, i + len(r.lit)} // on the stack: it does not escape
			}
		} else if r.expand {
			m = r.re.FindSubmatchIndex(src)
		} else {
			m = r.re.FindIndex(src)
		}
		if m == nil || !eof && len(src)-m[0] < r.window {
			break // none, or more text could make it longer or different
		}
		s.out = append(s.out, src[:m[0]]...)
		if r.expand {
			s.out = r.re.Expand(s.out, r.to, src, m)
		} else {
			s.out = append(s.out, r.to...)
		}
		done += m[1]
		if len(s.out) >= substStep {
			if err := s.flush(); err != nil {
				return err
			}
		}
	}
	hold := len(buf)
	if !eof {
		hold = max(end-r.window+1, done)
		if r.re != nil {
			hold = max(substRuneStart(buf, hold), done)
		}
	}
	s.out = append(s.out, buf[done:hold]...)
	s.buf = buf[:copy(buf, buf[hold:])]
	return s.flush()
}

func (s *substStage) flush() error {
	if len(s.out) == 0 || s.err != nil {
		return s.err
	}
	_, s.err = s.next.Write(s.out)
	s.out = s.out[:0]
	return s.err
}

// substWholeRunes is len(b) less a UTF-8 sequence cut short at its end.
func substWholeRunes(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax+1; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return i
			}
			break
		}
	}
	return len(b)
}

// substRuneStart backs i up to the start of the character it is inside.
// The boundaries of valid UTF-8 are the same whatever the decoding
// started from, so the regexp sees the held tail as the whole body has it.
func substRuneStart(b []byte, i int) int {
	for j := i - 1; j >= 0 && j > i-utf8.UTFMax; j-- {
		if utf8.RuneStart(b[j]) {
			if _, n := utf8.DecodeRune(b[j:]); j+n > i {
				return j
			}
			return i
		}
	}
	return i
}
