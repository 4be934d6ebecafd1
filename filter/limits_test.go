package filter

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// limitsRequest builds a request with the given target, extra header
// values (X-N-i: v) and Cookie fields.
func limitsRequest(target string, fields int, cookies ...string) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	r.RequestURI = target
	r.Header = http.Header{}
	for i := 0; i < fields; i++ {
		r.Header.Add("X-N-"+strconv.Itoa(i), "v")
	}
	for _, c := range cookies {
		r.Header.Add("Cookie", c)
	}
	return r
}

func TestLimits(t *testing.T) {
	long := func(n int) string { return "/" + strings.Repeat("a", n-1) }
	cookie := func(n int) string { return "c=" + strings.Repeat("x", n-2) }
	for _, tc := range []struct {
		name string
		cfg  LimitsConfig
		r    *http.Request
		code int
		body string
	}{
		{"url at limit", LimitsConfig{}, limitsRequest(long(8192), 0), 200, ""},
		{"url one over", LimitsConfig{}, limitsRequest(long(8193), 0), 414, "414 request target over 8192 bytes\n"},
		{"url query counted", LimitsConfig{MaxURL: 10}, limitsRequest("/abc?12345", 0), 200, ""},
		{"url query one over", LimitsConfig{MaxURL: 10}, limitsRequest("/abc?123456", 0), 414, ""},
		{"url off", LimitsConfig{MaxURL: -1}, limitsRequest(long(100000), 0), 200, ""},
		{"fields at limit", LimitsConfig{}, limitsRequest("/", 99), 200, ""}, // + Host = 100
		{"fields one over", LimitsConfig{}, limitsRequest("/", 100), 431, "431 more than 100 header fields\n"},
		{"fields custom", LimitsConfig{MaxHeaderFields: 3}, limitsRequest("/", 1, "a=1", "b=2"), 431, ""},
		{"fields off", LimitsConfig{MaxHeaderFields: -1}, limitsRequest("/", 1000), 200, ""},
		{"cookie at limit", LimitsConfig{}, limitsRequest("/", 0, cookie(8192)), 200, ""},
		{"cookie one over", LimitsConfig{}, limitsRequest("/", 0, cookie(8193)), 431, "431 cookies over 8192 bytes\n"},
		{"cookies split at limit", LimitsConfig{}, limitsRequest("/", 0, cookie(4000), cookie(4000), cookie(192)), 200, ""},
		{"cookies split one over", LimitsConfig{}, limitsRequest("/", 0, cookie(4000), cookie(4000), cookie(193)), 431, "cookies"},
		{"cookie custom", LimitsConfig{MaxCookieBytes: 10}, limitsRequest("/", 0, "a=1234", "b=12"), 200, ""},
		{"cookie custom over", LimitsConfig{MaxCookieBytes: 10}, limitsRequest("/", 0, "a=1234", "b=123"), 431, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			called := false
			h, err := Limits(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { called = true }), tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, tc.r)
			if w.Code != tc.code || called != (tc.code == 200) {
				t.Fatalf("%d, next called %v; want %d", w.Code, called, tc.code)
			}
			if !strings.Contains(w.Body.String(), tc.body) {
				t.Errorf("body %q, want %q", w.Body.String(), tc.body)
			}
		})
	}
}

// A request built by hand has no RequestURI: its escaped path and query
// are measured instead.
func TestLimitsNoRequestURI(t *testing.T) {
	h, _ := Limits(http.NotFoundHandler(), LimitsConfig{MaxURL: 12})
	for target, want := range map[string]int{"/a%20b?q=1": 404, "/a%20b?q=123": 404, "/a%20b?q=1234": 414} {
		r := httptest.NewRequest("GET", target, nil)
		r.RequestURI = ""
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("%s: %d, want %d", target, w.Code, want)
		}
	}
	mux := http.NewServeMux()
	if h, _ := Limits(mux, LimitsConfig{MaxURL: -1, MaxHeaderFields: -1, MaxCookieBytes: -1}); h != http.Handler(mux) {
		t.Error("all limits off: want next itself")
	}
}

// HTTP/2 requests get the answers our HTTP/1.1 parser gives.
func TestLimitsHTTP2(t *testing.T) {
	h, _ := Limits(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}), LimitsConfig{})
	ts := httptest.NewUnstartedServer(h)
	ts.EnableHTTP2 = true
	ts.StartTLS()
	defer ts.Close()
	for _, tc := range []struct {
		fields int
		path   string
		code   int
	}{
		{99, "/", 200},
		{100, "/", 431},
		{0, "/" + strings.Repeat("a", 8192), 414},
	} {
		req, _ := http.NewRequest("GET", ts.URL+tc.path, nil)
		for i := 0; i < tc.fields; i++ {
			req.Header.Add("X-N-"+strconv.Itoa(i), "v")
		}
		// Go's client adds Accept-Encoding and User-Agent unless they
		// are set: set them as two of the fields.
		if tc.fields > 0 {
			req.Header.Del("X-N-0")
			req.Header.Del("X-N-1")
			req.Header.Set("Accept-Encoding", "gzip")
			req.Header.Set("User-Agent", "limits-test")
		}
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != tc.code {
			t.Errorf("%d fields, %d-byte path: %s %d %q, want HTTP/2 %d", tc.fields, len(tc.path), resp.Proto, resp.StatusCode, body, tc.code)
		}
	}
}

func TestLimitsNoAlloc(t *testing.T) {
	h, _ := Limits(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), LimitsConfig{})
	r := limitsRequest("/api/items?page=2", 20, "session=abc", "theme=dark")
	w := httptest.NewRecorder()
	if n := testing.AllocsPerRun(100, func() { h.ServeHTTP(w, r) }); n != 0 {
		t.Errorf("%v allocations on the pass path", n)
	}
}
