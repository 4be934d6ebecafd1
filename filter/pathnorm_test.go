package filter

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

var pathNormCases = []struct {
	in, want string
	err      error // want this error instead
	slash    bool  // AllowEncodedSlash
}{
	{in: "/", want: "/"},
	{in: "/admin", want: "/admin"},
	{in: "/admin/", want: "/admin/"},
	{in: "/ADMIN", want: "/ADMIN"}, // case-sensitive, not folded
	{in: "/%61dmin", want: "/admin"},
	{in: "/%41", want: "/A"},
	{in: "/%7e/%7E", want: "/~/~"},
	{in: "/a%2d%2E%5f", want: "/a-._"},
	{in: "/x/../admin", want: "/admin"},
	{in: "/a/%2e%2e/admin", want: "/admin"},
	{in: "/a/%2E./admin", want: "/admin"},
	{in: "//admin", want: "/admin"},
	{in: "/a//b///c", want: "/a/b/c"},
	{in: "/a//../b", want: "/b"}, // slashes merged before dots resolve
	{in: "/admin/.", want: "/admin/"},
	{in: "/admin/./", want: "/admin/"},
	{in: "/admin/./x", want: "/admin/x"},
	{in: "/a/b/..", want: "/a/"},
	{in: "/a/..", want: "/"},
	{in: "/.", want: "/"},
	{in: "/a//", want: "/a/"},
	{in: "/...", want: "/..."},
	{in: "/..a/.b", want: "/..a/.b"},
	{in: "/a%3f", want: "/a%3F"},
	{in: "/a%3Fb%23", want: "/a%3Fb%23"},
	{in: "/%252e%252e/admin", want: "/%252e%252e/admin"}, // double encoding stays: %25 is not unreserved
	{in: "/caf%c3%a9", want: "/caf%C3%A9"},
	{in: "/café", want: "/caf%C3%A9"},
	{in: "/a b", want: "/a%20b"},
	{in: `/a"<>`, want: "/a%22%3C%3E"},
	{in: "/a:b@c!$&'()*+,;=", want: "/a:b@c!$&'()*+,;="},
	{in: "/a%0Ab", want: "/a%0Ab"},
	{in: "*", want: "*"},
	{in: "/..", err: ErrPathAboveRoot},
	{in: "/../x", err: ErrPathAboveRoot},
	{in: "/%2e%2e/admin", err: ErrPathAboveRoot},
	{in: "/a/../../admin", err: ErrPathAboveRoot},
	{in: "/admin%2f..", err: ErrPathEncodedSlash},
	{in: "/a%2Fb", err: ErrPathEncodedSlash},
	{in: "/a%2Fb", want: "/a%2Fb", slash: true},
	{in: "/a%2fb/", want: "/a%2Fb/", slash: true},
	{in: "/a%2f..%2fadmin", err: ErrPathEncodedDots, slash: true},
	{in: "/..%2Fadmin", err: ErrPathEncodedDots, slash: true},
	{in: "/a%2F%2e", err: ErrPathEncodedDots, slash: true},
	{in: "/a%5cb", err: ErrPathBackslash},
	{in: `/a\b`, err: ErrPathBackslash},
	{in: `\admin`, err: ErrPathNotAbsolute},
	{in: "/a%00", err: ErrPathNUL},
	{in: "/a\x00", err: ErrPathNUL},
	{in: "/a\nb", err: ErrPathControl},
	{in: "/a\x7f", err: ErrPathControl},
	{in: "/%zz", err: ErrPathBadEscape},
	{in: "/a%4", err: ErrPathBadEscape},
	{in: "/a%", err: ErrPathBadEscape},
	{in: "/%g1", err: ErrPathBadEscape},
	{in: "a/b", err: ErrPathNotAbsolute},
	{in: "", err: ErrPathNotAbsolute},
}

func TestNormalizePath(t *testing.T) {
	for _, tc := range pathNormCases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := normalizePath(tc.in, tc.slash)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Errorf("%q, %v; want error %v", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("%q, %v; want %q", got, err, tc.want)
			}
			if !tc.slash {
				if got2, err := NormalizePath(tc.in); got2 != got || err != nil {
					t.Errorf("NormalizePath: %q, %v", got2, err)
				}
			}
		})
	}
}

func TestNormalizePathNoAlloc(t *testing.T) {
	for _, p := range []string{"/", "/api/v1/items/42", "/static/app.min.js", "/a%20b/c%2Fd", "/user@host:8080/~me/"} {
		if n := testing.AllocsPerRun(100, func() { normalizePath(p, true) }); n != 0 {
			t.Errorf("%q: %v allocations", p, n)
		}
	}
	h, _ := PathNorm(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), PathNormConfig{})
	r := httptest.NewRequest("GET", "/api/v1/items/42?x=1", nil)
	w := httptest.NewRecorder()
	if n := testing.AllocsPerRun(100, func() { h.ServeHTTP(w, r) }); n != 0 {
		t.Errorf("PathNorm on a normal path: %v allocations", n)
	}
}

// The filter rewrites the URL the backend sees (over a real server, so
// Go's own request parsing comes first) and refuses what it must.
func TestPathNorm(t *testing.T) {
	type seen struct{ path, rawPath, escaped, uri string }
	got := make(chan seen, 1)
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.URL.Path, r.URL.RawPath, r.URL.EscapedPath(), r.RequestURI}
	})
	for _, tc := range []struct {
		cfg        PathNormConfig
		target     string
		code       int
		path, want string // r.URL.Path and EscapedPath at the backend
		body       string // a piece of the 400 body
	}{
		{target: "/shop/cart?x=1", code: 200, path: "/shop/cart", want: "/shop/cart"},
		{target: "/%61dmin/./x/../users?x=1", code: 200, path: "/admin/users", want: "/admin/users"},
		{target: "//admin", code: 200, path: "/admin", want: "/admin"},
		{target: "/a%3fb", code: 200, path: "/a?b", want: "/a%3Fb"},
		{target: "/x%20y/%C3%A9", code: 200, path: "/x y/é", want: "/x%20y/%C3%A9"},
		{target: "/files/a%2Fb", code: 400, body: "encoded slash"},
		{target: "/files/a%2fb", cfg: PathNormConfig{AllowEncodedSlash: true}, code: 200, path: "/files/a/b", want: "/files/a%2Fb"},
		{target: "/a/%2e%2e/%2e%2e/etc/passwd", code: 400, body: "above the root"},
		{target: `/admin\x`, code: 400, body: "backslash"},
	} {
		t.Run(tc.target, func(t *testing.T) {
			h, err := PathNorm(backend, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			ts := httptest.NewServer(h)
			defer ts.Close()
			conn, err := net.Dial("tcp", ts.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: shop.example.com\r\nConnection: close\r\n\r\n", tc.target) // as is
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("%d %q, want %d", resp.StatusCode, body, tc.code)
			}
			if tc.code != 200 {
				if !strings.Contains(string(body), tc.body) {
					t.Errorf("body %q, want %q in it", body, tc.body)
				}
				return
			}
			s := <-got
			if s.path != tc.path || s.escaped != tc.want || s.uri != tc.target {
				t.Errorf("backend saw %+v, want path %q, escaped %q, RequestURI kept", s, tc.path, tc.want)
			}
		})
	}
}

func FuzzNormalizePath(f *testing.F) {
	for _, tc := range pathNormCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, p string) {
		strict, strictErr := NormalizePath(p)
		for _, allow := range []bool{false, true} {
			out, err := normalizePath(p, allow)
			if !allow && (out != strict || !errors.Is(err, strictErr)) {
				t.Fatalf("%q: NormalizePath %q, %v; normalizePath %q, %v", p, strict, strictErr, out, err)
			}
			if isNormalPath(p, allow) {
				if slow, err := rebuildPath(p, allow); slow != p || err != nil {
					t.Fatalf("%q (allow %v) passes the fast path, but its normal form is %q, %v", p, allow, slow, err)
				}
			}
			if err != nil || out == "*" {
				continue
			}
			if again, err := normalizePath(out, allow); again != out || err != nil {
				t.Fatalf("%q -> %q -> %q, %v: not idempotent", p, out, again, err)
			}
			if !strings.HasPrefix(out, "/") || strings.Contains(out, "//") || strings.Contains(out, "/./") ||
				strings.Contains(out, "/../") || strings.HasSuffix(out, "/.") || strings.HasSuffix(out, "/..") {
				t.Fatalf("%q -> %q", p, out)
			}
			if !allow && strings.Contains(strings.ToUpper(out), "%2F") {
				t.Fatalf("%q -> %q: encoded slash", p, out)
			}
			for i := 0; i < len(out); i++ {
				switch c := out[i]; {
				case c == '%':
					h := out[i+1 : i+3]
					if h != strings.ToUpper(h) {
						t.Fatalf("%q -> %q: lowercase escape", p, out)
					}
					if v, _ := url.PathUnescape("%" + h); pnClass[v[0]] == pnUnreserved {
						t.Fatalf("%q -> %q: %%%s is unreserved", p, out, h)
					}
					i += 2
				case c != '/' && (pnClass[c] == pnEscape || pnClass[c] == pnRefused):
					t.Fatalf("%q -> %q: raw %q", p, out, c)
				}
			}
			dec, err := url.PathUnescape(out)
			if err != nil {
				t.Fatalf("%q -> %q: %v", p, out, err)
			}
			if strings.Contains(dec+"/", "/../") || strings.Contains(dec+"/", "/./") {
				t.Fatalf("%q -> %q decodes to %q", p, out, dec)
			}
		}
	})
}
