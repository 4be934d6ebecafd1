package filter

// Header rules are an operator's edits of request and response headers,
// per app. HeaderRules compiles them once: names are canonicalised and
// checked, value templates are split into literal and placeholder parts.
// Serving a request walks the compiled rules and writes the header map;
// a rule whose value has no placeholder allocates nothing, because its
// one-element value slice is built once and shared by every request (so
// nothing after this filter may write into a header value slice in place;
// net/http and httputil replace slices, they never write into them).
//
// A value never carries CR, LF, NUL or any other control character but
// HTAB: literal text with one is refused when the rule is compiled, and a
// placeholder whose value has one (a decoded %0A in the path, a hostile
// SNI) expands to "" instead, so no client input can split a header.

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// HeaderRule is one edit of one header. Its one-line form, read by
// ParseHeaderRule and written by String:
//
//	set:Name=VALUE   replace every Name with VALUE
//	add:Name=VALUE   append VALUE to Name's values
//	del:Name         remove Name
//	rename:Old=New   move Old's values, all of them and in order, to New,
//	                 replacing New's; nothing happens when Old is absent
//
// VALUE is a template; these placeholders are replaced per request, and
// {{ is a literal { (a lone } is literal):
//
//	{client_ip}    host part of r.RemoteAddr, no brackets
//	{client_port}  port part of r.RemoteAddr
//	{tls_version}  "TLSv1.3", "TLSv1.2", ... ("" on plain HTTP)
//	{tls_cipher}   the cipher suite's IANA name ("" on plain HTTP)
//	{sni}          the TLS server name the client asked for
//	{request_id}   X-Request-Id (set upstream by the RequestID filter)
//	{host}         r.Host
//	{method}       r.Method
//	{path}         r.URL.Path (decoded)
//	{scheme}       "https" when the request came over TLS, else "http"
//
// Host is special on the request side: Go keeps it out of r.Header, so
// set:Host=VALUE sets r.Host (what the proxy forwards unless its Rewrite
// sets another), and add, del and rename of Host are refused there. On the
// response side Host is an ordinary header. Content-Length and
// Transfer-Encoding are refused on both sides: the server derives them
// from the body, and a rule could only corrupt the framing.
type HeaderRule struct {
	Op    string // "set", "add", "del" or "rename"
	Name  string // the header, any case
	Value string // template for set and add; the new name for rename; "" for del
}

// HeaderRulesConfig lists an app's rules; each list runs in order, and a
// placeholder sees the request as the earlier rules left it. HeaderRules
// copies what it needs: the caller keeps the config.
type HeaderRulesConfig struct {
	Request  []HeaderRule // applied before the request goes on
	Response []HeaderRule // applied when the response head goes out
}

// ParseHeaderRule reads a rule in its one-line form ("set:X-Env=prod",
// "del:Server", "rename:X-Old=X-New") and checks it as HeaderRules would.
// The text is taken as is: no space is trimmed.
func ParseHeaderRule(s string) (HeaderRule, error) {
	op, rest, ok := strings.Cut(s, ":")
	if !ok {
		return HeaderRule{}, fmt.Errorf("header rule %q: want op:Name[=VALUE] with op set, add, del or rename", s)
	}
	if !slices.Contains(hrOps[:], op) {
		return HeaderRule{}, fmt.Errorf("header rule %q: unknown op %q (want set, add, del or rename)", s, op)
	}
	rule := HeaderRule{Op: op, Name: rest}
	if op != "del" {
		if rule.Name, rule.Value, ok = strings.Cut(rest, "="); !ok {
			return HeaderRule{}, fmt.Errorf("header rule %q: want set:Name=VALUE, add:Name=VALUE or rename:Old=New", s)
		}
	}
	if _, err := compileHeaderRule(rule); err != nil {
		return HeaderRule{}, fmt.Errorf("header rule %q: %w", s, err)
	}
	return rule, nil
}

// String is the rule's one-line form.
func (r HeaderRule) String() string {
	if r.Op == "del" {
		return r.Op + ":" + r.Name
	}
	return r.Op + ":" + r.Name + "=" + r.Value
}

// HeaderRules returns next with cfg's rules applied to its requests and
// responses; an error names the first bad rule. Response rules run at the
// first WriteHeader with a final status (1xx heads go out untouched),
// Write or Flush, whichever comes first, or when next returns having
// written nothing; the response writer wrapper is then the one
// allocation per request.
func HeaderRules(next http.Handler, cfg HeaderRulesConfig) (http.Handler, error) {
	f := &headerRules{next: next}
	for i, rule := range cfg.Request {
		c, err := compileHeaderRule(rule)
		if err == nil && (c.name == "Host" && c.op != hrSet || c.to == "Host") {
			err = fmt.Errorf("%s of Host: only set:Host is possible on a request (it sets r.Host)", rule.Op)
		}
		if err != nil {
			return nil, fmt.Errorf("request header rule %d (%s): %w", i+1, rule, err)
		}
		c.host = c.name == "Host"
		f.req = append(f.req, c)
	}
	for i, rule := range cfg.Response {
		c, err := compileHeaderRule(rule)
		if err != nil {
			return nil, fmt.Errorf("response header rule %d (%s): %w", i+1, rule, err)
		}
		f.resp = append(f.resp, c)
	}
	if len(f.req) == 0 && len(f.resp) == 0 {
		return next, nil
	}
	return f, nil
}

type hrOp uint8

const (
	hrSet hrOp = iota
	hrAdd
	hrDel
	hrRename
)

var hrOps = [...]string{hrSet: "set", hrAdd: "add", hrDel: "del", hrRename: "rename"}

// hrPlaceholder says what a template part is; hrLiteral is text.
type hrPlaceholder uint8

const (
	hrLiteral hrPlaceholder = iota
	hrClientIP
	hrClientPort
	hrTLSVersion
	hrTLSCipher
	hrSNI
	hrRequestID
	hrHost
	hrMethod
	hrPath
	hrScheme
)

// hrPlaceholders names the placeholders, by kind.
var hrPlaceholders = [...]string{
	hrClientIP: "client_ip", hrClientPort: "client_port", hrTLSVersion: "tls_version", hrTLSCipher: "tls_cipher",
	hrSNI: "sni", hrRequestID: "request_id", hrHost: "host", hrMethod: "method", hrPath: "path", hrScheme: "scheme",
}

type hrPart struct {
	ph  hrPlaceholder
	lit string // when ph is hrLiteral
}

// hrRule is a compiled rule, read-only once built.
type hrRule struct {
	op     hrOp
	name   string   // canonical
	to     string   // canonical new name, for rename
	host   bool     // set:Host on the request side: writes r.Host
	lit    string   // the value when the template has no placeholder
	value  []string // {lit}, shared by every request; nil when parts is used
	parts  []hrPart // the template, when it has placeholders
	litLen int      // bytes of literal text in parts
}

func compileHeaderRule(rule HeaderRule) (hrRule, error) {
	var c hrRule
	op := slices.Index(hrOps[:], rule.Op)
	if op < 0 {
		return c, fmt.Errorf("unknown op %q (want set, add, del or rename)", rule.Op)
	}
	c.op = hrOp(op)
	var err error
	if c.name, err = hrHeaderName(rule.Name); err != nil {
		return c, err
	}
	switch c.op {
	case hrDel:
		if rule.Value != "" {
			return c, fmt.Errorf("del takes no value (got %q)", rule.Value)
		}
	case hrRename:
		if c.to, err = hrHeaderName(rule.Value); err != nil {
			return c, fmt.Errorf("new name: %w", err)
		}
	default:
		if c.parts, err = hrCompileTemplate(rule.Value); err != nil {
			return c, err
		}
		if len(c.parts) == 1 && c.parts[0].ph == hrLiteral {
			c.lit, c.parts = c.parts[0].lit, nil
		}
		if c.parts == nil {
			c.value = []string{c.lit}
		}
		for _, p := range c.parts {
			c.litLen += len(p.lit)
		}
	}
	return c, nil
}

// hrHeaderName checks a header name (an RFC 9110 token) and canonicalises it.
func hrHeaderName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("empty header name")
	}
	for i := 0; i < len(name); i++ {
		if !hrTokenByte(name[i]) {
			return "", fmt.Errorf("%q is not a header name (letters, digits and !#$%%&'*+-.^_`|~)", name)
		}
	}
	name = http.CanonicalHeaderKey(name)
	if name == "Content-Length" || name == "Transfer-Encoding" {
		return "", fmt.Errorf("%s is the server's to set, from the body", name)
	}
	return name, nil
}

func hrTokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// hrBadValue reports the characters a header value must not hold: the
// control characters but HTAB (RFC 9110 5.5).
func hrBadValue(c rune) bool { return c < ' ' && c != '\t' || c == 0x7f }

// hrCompileTemplate splits a value into literal and placeholder parts,
// adjacent literals merged.
func hrCompileTemplate(v string) ([]hrPart, error) {
	var parts []hrPart
	var lit []byte
	flush := func() {
		if len(lit) > 0 {
			parts = append(parts, hrPart{lit: string(lit)})
			lit = lit[:0]
		}
	}
	for i := 0; i < len(v); {
		c := v[i]
		switch {
		case c == '{' && i+1 < len(v) && v[i+1] == '{':
			lit = append(lit, '{')
			i += 2
		case c == '{':
			end := strings.IndexByte(v[i+1:], '}')
			if end < 0 {
				return nil, fmt.Errorf("value %q: unclosed { at byte %d (a literal { is written {{)", v, i)
			}
			name := v[i+1 : i+1+end]
			ph := slices.Index(hrPlaceholders[1:], name) + 1 // [0] is hrLiteral
			if ph == 0 {
				return nil, fmt.Errorf("value %q: unknown placeholder {%s} (want one of {%s})", v, name, strings.Join(hrPlaceholders[1:], "}, {"))
			}
			flush()
			parts = append(parts, hrPart{ph: hrPlaceholder(ph)})
			i += end + 2
		case hrBadValue(rune(c)):
			return nil, fmt.Errorf("value %q: control character %q at byte %d", v, c, i)
		default:
			lit = append(lit, c)
			i++
		}
	}
	flush()
	return parts, nil
}

type headerRules struct {
	next      http.Handler
	req, resp []hrRule
}

func (f *headerRules) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if len(f.req) > 0 {
		if r.Header == nil {
			r.Header = make(http.Header)
		}
		for i := range f.req {
			f.req[i].apply(r.Header, r)
		}
	}
	if len(f.resp) == 0 {
		f.next.ServeHTTP(w, r)
		return
	}
	rw := &hrWriter{ResponseWriter: w, rules: f.resp, r: r}
	f.next.ServeHTTP(rw, r)
	// A handler that wrote nothing leaves the head to the server, which
	// sends it after we return: the rules go first. (After a hijack
	// this edits a map nobody reads.)
	rw.apply()
}

func (c *hrRule) apply(h http.Header, r *http.Request) {
	switch c.op {
	case hrSet:
		switch {
		case c.host:
			r.Host = c.expand(r)
		case c.value != nil:
			h[c.name] = c.value
		default:
			h[c.name] = []string{c.expand(r)}
		}
	case hrAdd:
		old := h[c.name]
		if len(old) == 0 && c.value != nil {
			h[c.name] = c.value // cap 1: a later append copies it
			return
		}
		h[c.name] = append(old, c.expand(r))
	case hrDel:
		delete(h, c.name)
	case hrRename:
		if v, ok := h[c.name]; ok && c.to != c.name {
			delete(h, c.name)
			h[c.to] = v
		}
	}
}

// expand fills the template in one string built to its final size.
func (c *hrRule) expand(r *http.Request) string {
	if c.parts == nil {
		return c.lit
	}
	var buf [8]string // placeholder values, each looked up once
	vals := buf[:0]
	n := c.litLen
	for _, p := range c.parts {
		if p.ph != hrLiteral {
			v := hrPlaceholderValue(p.ph, r)
			if strings.ContainsFunc(v, hrBadValue) {
				v = ""
			}
			vals = append(vals, v)
			n += len(v)
		}
	}
	var b strings.Builder
	b.Grow(n)
	for _, p := range c.parts {
		if p.ph == hrLiteral {
			b.WriteString(p.lit)
		} else {
			b.WriteString(vals[0])
			vals = vals[1:]
		}
	}
	return b.String()
}

func hrPlaceholderValue(ph hrPlaceholder, r *http.Request) string {
	switch ph {
	case hrClientIP:
		ip, _ := hrSplitRemote(r.RemoteAddr)
		return ip
	case hrClientPort:
		_, port := hrSplitRemote(r.RemoteAddr)
		return port
	case hrTLSVersion:
		if r.TLS != nil && r.TLS.Version-tls.VersionTLS10 < uint16(len(hrTLSVersions)) {
			return hrTLSVersions[r.TLS.Version-tls.VersionTLS10]
		}
	case hrTLSCipher:
		if r.TLS != nil {
			if name, ok := hrCipherNames()[r.TLS.CipherSuite]; ok {
				return name
			}
			return tls.CipherSuiteName(r.TLS.CipherSuite)
		}
	case hrSNI:
		if r.TLS != nil {
			return r.TLS.ServerName
		}
	case hrRequestID:
		if v := r.Header[RequestIDHeader]; len(v) > 0 {
			return v[0]
		}
	case hrHost:
		return r.Host
	case hrMethod:
		return r.Method
	case hrPath:
		if r.URL != nil {
			return r.URL.Path
		}
	case hrScheme:
		if r.TLS != nil {
			return "https"
		}
		return "http"
	}
	return ""
}

// hrSplitRemote splits "ip:port", "[ip6]:port" or a bare address without
// allocating.
func hrSplitRemote(remote string) (host, port string) {
	if rest, ok := strings.CutPrefix(remote, "["); ok {
		host, port, _ = strings.Cut(rest, "]")
		return host, strings.TrimPrefix(port, ":")
	}
	i := strings.LastIndexByte(remote, ':')
	if i < 0 || strings.IndexByte(remote[:i], ':') >= 0 { // none, or a bare IPv6 address
		return remote, ""
	}
	return remote[:i], remote[i+1:]
}

// hrTLSVersions are the names of TLS 1.0 to 1.3 (0x0301 to 0x0304) as
// OpenSSL writes them, which is what nginx and HAProxy put in headers.
var hrTLSVersions = [...]string{"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"}

// hrCipherNames maps suite ids to names once: tls.CipherSuiteName builds
// two slices per call.
var hrCipherNames = sync.OnceValue(func() map[uint16]string {
	m := make(map[uint16]string)
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		m[s.ID] = s.Name
	}
	return m
})

// hrWriter applies the response rules to the response head, once.
type hrWriter struct {
	http.ResponseWriter
	rules []hrRule
	r     *http.Request
	done  bool
}

func (w *hrWriter) apply() {
	if w.done {
		return
	}
	w.done = true
	h := w.ResponseWriter.Header()
	for i := range w.rules {
		w.rules[i].apply(h, w.r)
	}
}

func (w *hrWriter) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.apply()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *hrWriter) Write(p []byte) (int, error) {
	w.apply()
	return w.ResponseWriter.Write(p)
}

// FlushError is what http.ResponseController.Flush calls: a flush sends
// the head, so the rules go first.
func (w *hrWriter) FlushError() error {
	w.apply()
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Flush is FlushError for callers that assert http.Flusher.
func (w *hrWriter) Flush() { w.FlushError() } //nolint:errcheck // http.Flusher has no error to return

// Unwrap lets http.ResponseController reach Hijack and the deadlines.
func (w *hrWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
