package filter

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
)

func mustRules(t testing.TB, lines ...string) []HeaderRule {
	t.Helper()
	var rules []HeaderRule
	for _, l := range lines {
		r, err := ParseHeaderRule(l)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, r)
	}
	return rules
}

// Each op on each side, against a request and a backend response that
// both carry X-A: 1, 2 and X-B: b.
func TestHeaderRulesOps(t *testing.T) {
	for _, tc := range []struct {
		rule string
		want http.Header // the headers named in the request/response after the rule
	}{
		{"set:X-A=x", http.Header{"X-A": {"x"}, "X-B": {"b"}}},
		{"set:x-new=x", http.Header{"X-A": {"1", "2"}, "X-B": {"b"}, "X-New": {"x"}}},
		{"set:X-A=", http.Header{"X-A": {""}, "X-B": {"b"}}},
		{"add:X-A=3", http.Header{"X-A": {"1", "2", "3"}, "X-B": {"b"}}},
		{"add:X-C=c", http.Header{"X-A": {"1", "2"}, "X-B": {"b"}, "X-C": {"c"}}},
		{"del:x-a", http.Header{"X-B": {"b"}}},
		{"del:X-Absent", http.Header{"X-A": {"1", "2"}, "X-B": {"b"}}},
		{"rename:X-A=X-Z", http.Header{"X-Z": {"1", "2"}, "X-B": {"b"}}},
		{"rename:X-A=X-B", http.Header{"X-B": {"1", "2"}}},
		{"rename:X-A=x-a", http.Header{"X-A": {"1", "2"}, "X-B": {"b"}}},
		{"rename:X-Absent=X-B", http.Header{"X-A": {"1", "2"}, "X-B": {"b"}}},
		{"set:X-A={method} {{literal}", http.Header{"X-A": {"GET {literal}"}, "X-B": {"b"}}},
	} {
		only := func(h http.Header) http.Header {
			out := http.Header{}
			for _, k := range []string{"X-A", "X-B", "X-C", "X-New", "X-Z", "X-Absent"} {
				if v, ok := h[k]; ok {
					out[k] = v
				}
			}
			return out
		}
		t.Run("request/"+tc.rule, func(t *testing.T) {
			var got http.Header
			h, err := HeaderRules(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = only(r.Header) }),
				HeaderRulesConfig{Request: mustRules(t, tc.rule)})
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("GET", "/", nil)
			r.Header["X-A"] = []string{"1", "2"}
			r.Header["X-B"] = []string{"b"}
			h.ServeHTTP(httptest.NewRecorder(), r)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
		t.Run("response/"+tc.rule, func(t *testing.T) {
			h, err := HeaderRules(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header()["X-A"] = []string{"1", "2"}
				w.Header()["X-B"] = []string{"b"}
				w.Write([]byte("body"))
			}), HeaderRulesConfig{Response: mustRules(t, tc.rule)})
			if err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
			if got := only(w.Result().Header); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// set:Host changes r.Host; the response rules go out with a flush that
// comes before any write.
func TestHeaderRulesHostAndFlush(t *testing.T) {
	var host string
	h, err := HeaderRules(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host = r.Host
		w.Header().Set("Server", "backend/1.0")
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Error(err)
		}
		w.Write([]byte("late"))
	}), HeaderRulesConfig{
		Request:  mustRules(t, "set:Host=internal.{host}"),
		Response: mustRules(t, "del:Server", "set:X-Edge=1"),
	})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "http://shop.example.com/", nil))
	if host != "internal.shop.example.com" {
		t.Errorf("r.Host = %q", host)
	}
	if !w.Flushed || w.Result().Header.Get("X-Edge") != "1" || w.Result().Header.Get("Server") != "" {
		t.Errorf("flushed %v, head %v: want the rules applied before the flush", w.Flushed, w.Result().Header)
	}
	var inner http.ResponseWriter = httptest.NewRecorder()
	if (&hrWriter{ResponseWriter: inner}).Unwrap() != inner {
		t.Error("Unwrap does not return the wrapped writer")
	}
}

// A 103 Early Hints head goes out untouched; the final head gets the
// rules, also when the handler writes nothing at all.
func TestHeaderRulesInformationalAndEmpty(t *testing.T) {
	h, err := HeaderRules(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hints" {
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Write([]byte("body"))
		}
	}), HeaderRulesConfig{Response: mustRules(t, "del:Link", "set:X-Edge=1")})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	defer ts.Close()
	for _, path := range []string{"/hints", "/empty"} {
		var hints textproto.MIMEHeader
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			hints = h
			return nil
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", ts.URL+path, nil)
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("X-Edge") != "1" || resp.Header.Get("Link") != "" {
			t.Errorf("%s: final head %v", path, resp.Header)
		}
		if path == "/hints" && (hints.Get("Link") == "" || hints.Get("X-Edge") != "") {
			t.Errorf("103 head %v: want it untouched", hints)
		}
	}
}

// The placeholders over a real TLS connection, with the request id set
// upstream, an SNI the client sends and a path with a decoded newline
// that must not reach a header.
func TestHeaderRulesPlaceholdersTLS(t *testing.T) {
	type seen struct {
		hdr    http.Header
		cipher string
		id     string
	}
	got := make(chan seen, 1)
	rules := mustRules(t,
		"set:X-Client={client_ip}:{client_port}",
		"set:X-TLS={tls_version} {tls_cipher}",
		"set:X-SNI={sni}",
		"set:X-Id=<{request_id}>",
		"set:X-Where={scheme}://{host}{path} {method}",
		"set:X-Path={path}",
	)
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Header.Clone(), tls.CipherSuiteName(r.TLS.CipherSuite), r.Header.Get(RequestIDHeader)}
	})
	h, err := HeaderRules(backend, HeaderRulesConfig{Request: rules, Response: mustRules(t, "set:X-Back={tls_version}|{scheme}")})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewTLSServer(RequestID(h))
	defer ts.Close()
	client := ts.Client()
	tr := client.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.ServerName = "example.com" // in httptest's certificate
	client.Transport = tr

	for _, tc := range []struct {
		path, wantPath, wantWhere string
	}{
		{"/shop/cart?x=1", "/shop/cart", "https://" + ts.Listener.Addr().String() + "/shop/cart POST"},
		{"/a%0Ab", "", "https://" + ts.Listener.Addr().String() + " POST"}, // {path} has LF: empty
	} {
		resp, err := client.Post(ts.URL+tc.path, "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		s := <-got
		port := strings.TrimPrefix(s.hdr.Get("X-Client"), "127.0.0.1:")
		if port == s.hdr.Get("X-Client") || port == "" {
			t.Errorf("X-Client = %q, want 127.0.0.1:port", s.hdr.Get("X-Client"))
		}
		for name, want := range map[string]string{
			"X-TLS":   "TLSv1.3 " + s.cipher,
			"X-SNI":   "example.com",
			"X-Id":    "<" + s.id + ">",
			"X-Where": tc.wantWhere,
			"X-Path":  tc.wantPath,
		} {
			if v := s.hdr.Get(name); v != want {
				t.Errorf("%s: %s = %q, want %q", tc.path, name, v, want)
			}
		}
		if s.id == "" {
			t.Error("no request id upstream")
		}
		if v := resp.Header.Get("X-Back"); v != "TLSv1.3|https" {
			t.Errorf("response X-Back = %q", v)
		}
	}
}

// Plain HTTP: the TLS placeholders are empty and the scheme is http.
func TestHeaderRulesPlain(t *testing.T) {
	var v string
	h, _ := HeaderRules(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { v = r.Header.Get("X-T") }),
		HeaderRulesConfig{Request: mustRules(t, "set:X-T=[{tls_version}][{tls_cipher}][{sni}]{scheme} [{client_ip}]:{client_port}")})
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "[2001:db8::1]:4433"
	h.ServeHTTP(httptest.NewRecorder(), r)
	if v != "[][][]http [2001:db8::1]:4433" {
		t.Errorf("X-T = %q", v)
	}
}

func TestParseHeaderRuleErrors(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want: a piece of the error
	}{
		{"set X-A=1", "want op:Name"},
		{"put:X-A=1", `unknown op "put"`},
		{"SET:X-A=1", `unknown op "SET"`},
		{"set:X-A", "want set:Name=VALUE"},
		{"rename:X-A", "or rename:Old=New"},
		{"set:=1", "empty header name"},
		{"set:X A=1", `"X A" is not a header name`},
		{"set:X-A:=1", `"X-A:" is not a header name`},
		{"del:X-A=1", `"X-A=1" is not a header name`},
		{"rename:X-A=X B", `new name: "X B" is not a header name`},
		{"set:X-A={nope}", "unknown placeholder {nope}"},
		{"set:X-A={client_ip", "unclosed {"},
		{"set:X-A=a\r\nX-Evil: 1", "control character '\\r'"},
		{"add:X-A=\x00", "control character '\\x00'"},
		{"set:Content-Length=0", "Content-Length is the server's"},
		{"rename:X-A=transfer-encoding", "Transfer-Encoding is the server's"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			_, err := ParseHeaderRule(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one with %q", err, tc.want)
			}
		})
	}
	for _, rule := range []string{"add:Host=x", "del:Host", "rename:Host=X-Host", "rename:X-Host=Host"} {
		if _, err := HeaderRules(http.NotFoundHandler(), HeaderRulesConfig{Request: mustRules(t, rule)}); err == nil {
			t.Errorf("request rule %q accepted", rule)
		}
		if _, err := HeaderRules(http.NotFoundHandler(), HeaderRulesConfig{Response: mustRules(t, rule)}); err != nil {
			t.Errorf("response rule %q: %v", rule, err)
		}
	}
	if _, err := HeaderRules(http.NotFoundHandler(), HeaderRulesConfig{Request: []HeaderRule{{Op: "drop", Name: "X"}}}); err == nil {
		t.Error("a bad rule in the config accepted")
	}
}

// A literal set on the request side allocates nothing, and neither does
// a placeholder-free add of a header the request lacks.
func TestHeaderRulesNoAlloc(t *testing.T) {
	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	h, err := HeaderRules(next, HeaderRulesConfig{Request: mustRules(t, "set:X-Env=prod", "add:X-Tag=edge", "del:X-Tag", "rename:X-Env=X-Stage")})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if n := testing.AllocsPerRun(100, func() { h.ServeHTTP(w, r) }); n != 0 {
		t.Errorf("%v allocations per request, want 0", n)
	}
}

func FuzzParseHeaderRule(f *testing.F) {
	for _, s := range []string{"set:X-A=1", "add:X-A={client_ip}", "del:Server", "rename:X-A=X-B", "set:Host={sni}",
		"set:X-A={{{path}}", "set:X-A={request_id}{host}{method}{scheme}{tls_version}{tls_cipher}{client_port}", "set:X=a\tb"} {
		f.Add(s, "a\r\nb")
	}
	f.Fuzz(func(t *testing.T, s, dirty string) {
		rule, err := ParseHeaderRule(s)
		if err != nil {
			return
		}
		if again, err := ParseHeaderRule(rule.String()); err != nil || again != rule {
			t.Fatalf("%q: String %q reads back as %+v, %v", s, rule.String(), again, err)
		}
		reqRules := []HeaderRule{rule}
		if _, err := HeaderRules(http.NotFoundHandler(), HeaderRulesConfig{Request: reqRules}); err != nil {
			reqRules = nil // a Host rule only possible on the response side
		}
		var reqHeader http.Header
		var reqHost string
		h, err := HeaderRules(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			reqHeader, reqHost = r.Header.Clone(), r.Host
			w.Write([]byte("x"))
		}), HeaderRulesConfig{Request: reqRules, Response: []HeaderRule{rule}})
		if err != nil {
			t.Fatalf("%q parsed but does not compile: %v", s, err)
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.URL.Path = "/" + dirty
		r.Host = "h" + dirty
		r.RemoteAddr = dirty + ":1"
		r.Header[RequestIDHeader] = []string{dirty}
		r.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, ServerName: dirty}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		clean := func(where string, v string) {
			if strings.ContainsAny(v, "\r\n\x00") {
				t.Fatalf("%q: %s = %q", s, where, v)
			}
		}
		if rule.Op == "set" || rule.Op == "add" {
			name := http.CanonicalHeaderKey(rule.Name)
			if reqRules != nil {
				if name == "Host" {
					clean("r.Host", reqHost)
				} else {
					v := reqHeader[name]
					clean("request "+name, v[len(v)-1])
				}
			}
			v := w.Result().Header[name]
			clean("response "+name, v[len(v)-1])
		}
	})
}
