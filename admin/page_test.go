package admin

import (
	"crypto/sha256"
	"encoding/base64"
	"html"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestStatusPageShowsEverything(t *testing.T) {
	src := newFake(time.Now())
	ts := startServer(t, src, Config{Refresh: 1500 * time.Millisecond})
	r := call(t, "GET", ts.URL+"/", "", "")
	if r.code != 200 || r.header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /: %d %q", r.code, r.header.Get("Content-Type"))
	}
	page := html.UnescapeString(r.body)
	st := src.State()
	var want []string
	for _, l := range st.Listeners {
		want = append(want, l.Name, l.Addr, l.Proto)
	}
	for _, a := range st.Apps {
		want = append(want, `data-app="`+a.Name+`"`, a.Balance, strings.Join(a.Hosts, ", ")+a.Path)
		for _, b := range a.Backends {
			want = append(want, `data-backend="`+b.ID+`"`, b.Addr)
		}
	}
	for _, c := range st.Certificates {
		want = append(want, strings.Join(c.Names, ", "), c.Issuer, c.Source)
	}
	want = append(want,
		st.Version, st.ConfigHash, "3h ago", // started
		`<meta http-equiv="refresh" content="2">`, // 1.5s rounds up
		`<meta name="viewport" content="width=device-width, initial-scale=1">`,
		"3/4 up", "1/1 up", "queue 2", "sticky sessions",
		"connection refused", "40s ago", // web-3's last error
		"last 2m ago",     // web-2's newest sticky session
		"in 41d", "in 5d", // expiry
		"12ms", "850µs", "1.50s", // latency
		"p1 standby", "p0 active",
	)
	for _, w := range want {
		if !strings.Contains(page, w) {
			t.Errorf("page lacks %q", w)
		}
	}
	if strings.Contains(r.body, "<script") || strings.Contains(r.body, "src=") || strings.Contains(r.body, "href=") {
		t.Error("page loads something or runs a script; it must be self-contained")
	}
}

func TestStatusPageEscapes(t *testing.T) {
	src := newFake(time.Now())
	src.st.Apps[0].Name = `<img src=x onerror=alert(1)>`
	src.st.Apps[0].Backends[0].ID = `"><script>alert(2)</script>`
	src.st.Apps[0].Backends[2].LastError = `</td><script>alert(3)</script>`
	src.st.Certificates[0].Issuer = `<b onmouseover=alert(4)>`
	ts := startServer(t, src, Config{})
	r := call(t, "GET", ts.URL+"/", "", "")
	for _, bad := range []string{"<script>", "<img", "<b onmouseover"} {
		if strings.Contains(r.body, bad) {
			t.Errorf("page holds unescaped %q", bad)
		}
	}
	if !strings.Contains(r.body, "&lt;script&gt;alert(3)") {
		t.Error("the escaped error text is missing")
	}
}

func TestSecurityHeaders(t *testing.T) {
	ts := startServer(t, newFake(time.Now()), Config{Token: testToken, Metrics: okHandler{}})
	page := call(t, "GET", ts.URL+"/", "", "")
	style := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindStringSubmatch(page.body)
	if style == nil {
		t.Fatal("page has no <style>")
	}
	sum := sha256.Sum256([]byte(style[1]))
	wantCSP := "style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"

	for _, tc := range []struct{ method, path, token string }{
		{"GET", "/", ""},
		{"GET", "/api/state", ""},
		{"GET", "/metrics", ""},
		{"GET", "/api/nope", ""},
		{"POST", "/api/reload", ""},
		{"POST", "/api/reload", testToken},
	} {
		r := call(t, tc.method, ts.URL+tc.path, tc.token, "")
		for k, v := range map[string]string{
			"Cache-Control":          "no-store",
			"X-Content-Type-Options": "nosniff",
			"X-Frame-Options":        "DENY",
			"Referrer-Policy":        "no-referrer",
		} {
			if got := r.header.Get(k); got != v {
				t.Errorf("%s %s: %s %q, want %q", tc.method, tc.path, k, got, v)
			}
		}
		csp := r.header.Get("Content-Security-Policy")
		if !strings.HasPrefix(csp, "default-src 'none'; ") || !strings.Contains(csp, wantCSP) {
			t.Errorf("%s %s: CSP %q, want default-src 'none' and %s", tc.method, tc.path, csp, wantCSP)
		}
	}
}

type okHandler struct{}

func (okHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {}

func TestView(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	h := &handler{}
	st := State{
		Apps: []App{{Name: "a", Backends: []Backend{
			{ID: "up", Up: true},
			{ID: "drain", Up: true, AdminState: StateDrain},
			{ID: "down-drain", AdminState: StateDrain},
			{ID: "maint-down", AdminState: StateMaint},
			{ID: "down", AdminState: StateReady},
		}}},
		Certificates: []Certificate{
			{NotAfter: now.Add(-time.Hour)},
			{NotAfter: now.Add(47 * time.Hour)},
			{NotAfter: now.Add(10 * 24 * time.Hour)},
			{NotAfter: now.Add(60 * 24 * time.Hour)},
		},
	}
	v := h.view(st, now)
	wantStatus := []string{"up", "drain", "down", "maint", "down"}
	for i, b := range v.Apps[0].Backends {
		if b.Status != wantStatus[i] {
			t.Errorf("backend %s: status %q, want %q", b.ID, b.Status, wantStatus[i])
		}
	}
	if v.Apps[0].Backends[0].AdminState != StateReady {
		t.Errorf("empty admin state shows as %q, want ready", v.Apps[0].Backends[0].AdminState)
	}
	if v.Apps[0].Up != 2 {
		t.Errorf("%d up, want 2", v.Apps[0].Up)
	}
	wantCert := []struct{ class, expires string }{
		{"bad", "expired 1h ago"}, {"bad", "in 47h"}, {"warn", "in 10d"}, {"ok", "in 60d"},
	}
	for i, c := range v.Certificates {
		if c.Class != wantCert[i].class || c.Expires != wantCert[i].expires {
			t.Errorf("certificate %d: %s %q, want %s %q", i, c.Class, c.Expires, wantCert[i].class, wantCert[i].expires)
		}
	}
	if v.Refresh != 2 {
		t.Errorf("default refresh %ds, want 2s", v.Refresh)
	}
}

func TestRelTime(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "now"},
		{-999 * time.Millisecond, "now"},
		{-5 * time.Second, "5s ago"},
		{-59 * time.Second, "59s ago"},
		{-3*time.Minute - 59*time.Second, "3m ago"},
		{-90 * time.Minute, "1h ago"},
		{-47 * time.Hour, "47h ago"},
		{-49 * time.Hour, "2d ago"},
		{41*24*time.Hour + time.Hour, "in 41d"},
		{30 * time.Second, "in 30s"},
	} {
		if got := relTime(now.Add(tc.d), now); got != tc.want {
			t.Errorf("relTime(%v): %q, want %q", tc.d, got, tc.want)
		}
	}
	if got := relTime(time.Time{}, now); got != "never" {
		t.Errorf("zero time: %q", got)
	}
}

func TestFmtLatency(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "–"},
		{850 * time.Microsecond, "850µs"},
		{1234 * time.Microsecond, "1.2ms"},
		{12 * time.Millisecond, "12ms"},
		{999 * time.Millisecond, "999ms"},
		{1500 * time.Millisecond, "1.50s"},
	} {
		if got := fmtLatency(tc.d); got != tc.want {
			t.Errorf("fmtLatency(%v): %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestConfigRefresh(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int
	}{{0, 2}, {-time.Second, 2}, {time.Millisecond, 1}, {time.Second, 1}, {1001 * time.Millisecond, 2}, {10 * time.Second, 10}} {
		c := Config{Refresh: tc.d}
		if got := c.refreshSeconds(); got != tc.want {
			t.Errorf("Refresh %v: %ds, want %d", tc.d, got, tc.want)
		}
	}
}
