package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

const testToken = "s3cret-token"

// changes lists one request per state-changing endpoint.
var changes = []struct{ name, path, body string }{
	{"reload", "/api/reload", ""},
	{"state", "/api/backends/web/web-1/state", `{"state":"maint"}`},
	{"weight", "/api/backends/web/web-1/weight", `{"weight":9}`},
	{"plan", "/api/plan", "apps: []"},
}

func TestAPIRefusesWithoutToken(t *testing.T) {
	src := newFake(time.Now())
	ts := startServer(t, src, Config{Token: testToken})
	before := src.State()
	for _, c := range changes {
		for _, tc := range []struct {
			name, auth, wantChallenge string
		}{
			{"no header", "", bearerRealm},
			{"wrong token", "Bearer nope", `error="invalid_token"`},
			{"token prefix", "Bearer " + testToken[:4], `error="invalid_token"`},
			{"token plus suffix", "Bearer " + testToken + "x", `error="invalid_token"`},
			{"basic scheme", "Basic " + testToken, bearerRealm},
			{"bare token", testToken, bearerRealm},
			{"empty bearer", "Bearer ", bearerRealm},
		} {
			t.Run(c.name+"/"+tc.name, func(t *testing.T) {
				var extra []string
				if tc.auth != "" {
					extra = append(extra, "Authorization: "+tc.auth)
				}
				r := call(t, "POST", ts.URL+c.path, "", c.body, extra...)
				if r.code != http.StatusUnauthorized {
					t.Fatalf("status %d, want 401; body %s", r.code, r.body)
				}
				if got := r.header.Get("WWW-Authenticate"); !strings.Contains(got, tc.wantChallenge) {
					t.Errorf("WWW-Authenticate %q, want it to contain %q", got, tc.wantChallenge)
				}
				assertJSONError(t, r)
				if after := src.State(); !reflect.DeepEqual(before, after) {
					t.Errorf("state changed by a refused request:\nbefore %+v\nafter  %+v", before, after)
				}
				if n := src.reloadCount(); n != 0 {
					t.Errorf("%d reloads ran for refused requests", n)
				}
				if n := src.planCount(); n != 0 {
					t.Errorf("%d plans ran for refused requests", n)
				}
			})
		}
	}
}

func TestAPIChanges(t *testing.T) {
	for _, tc := range []struct {
		name, path, body  string
		setErr, reloadErr error
		want              int
		wantBody          string // substring of the answer
		check             func(State) error
	}{
		{name: "drain", path: "/api/backends/web/web-1/state", body: `{"state":"drain"}`, want: 200,
			check: backendIs("web", "web-1", func(b Backend) bool { return b.AdminState == StateDrain })},
		{name: "maint by address", path: "/api/backends/web/10.0.0.1:8080/state", body: `{"state":"maint"}`, want: 200,
			wantBody: `"backend": "web-1"`,
			check:    backendIs("web", "web-1", func(b Backend) bool { return b.AdminState == StateMaint })},
		{name: "ready", path: "/api/backends/web/web-4/state", body: `{"state":"ready"}`, want: 200,
			check: backendIs("web", "web-4", func(b Backend) bool { return b.AdminState == StateReady })},
		{name: "weight", path: "/api/backends/web/web-2/weight", body: `{"weight":3}`, want: 200,
			check: backendIs("web", "web-2", func(b Backend) bool { return b.Weight == 3 })},
		{name: "escaped ID", path: "/api/backends/api/api-backend-with-a-rather-long-identifier@%5B2001:db8::1234:5678%5D:8443/weight",
			body: `{"weight":256}`, want: 200,
			check: backendIs("api", "api-backend-with-a-rather-long-identifier@[2001:db8::1234:5678]:8443", func(b Backend) bool { return b.Weight == 256 })},
		{name: "reload", path: "/api/reload", want: 200, wantBody: `"config_hash": "sha256:reload1"`},

		{name: "unknown app", path: "/api/backends/nope/web-1/state", body: `{"state":"drain"}`, want: 404, wantBody: `unknown app \"nope\"`},
		{name: "unknown backend", path: "/api/backends/web/web-9/weight", body: `{"weight":2}`, want: 404, wantBody: `no backend \"web-9\"`},
		{name: "bad state", path: "/api/backends/web/web-1/state", body: `{"state":"off"}`, want: 400, wantBody: "ready, drain or maint"},
		{name: "state case", path: "/api/backends/web/web-1/state", body: `{"state":"DRAIN"}`, want: 400},
		{name: "missing state", path: "/api/backends/web/web-1/state", body: `{}`, want: 400},
		{name: "empty body", path: "/api/backends/web/web-1/state", want: 400},
		{name: "not JSON", path: "/api/backends/web/web-1/state", body: `state=drain`, want: 400},
		{name: "unknown field", path: "/api/backends/web/web-1/state", body: `{"state":"drain","force":true}`, want: 400},
		{name: "two objects", path: "/api/backends/web/web-1/state", body: `{"state":"drain"}{"state":"maint"}`, want: 400},
		{name: "huge body", path: "/api/backends/web/web-1/state", body: `{"state":"` + strings.Repeat("x", 8<<10) + `"}`, want: 400},
		{name: "weight zero", path: "/api/backends/web/web-1/weight", body: `{"weight":0}`, want: 400, wantBody: "1..256"},
		{name: "weight negative", path: "/api/backends/web/web-1/weight", body: `{"weight":-1}`, want: 400},
		{name: "weight too big", path: "/api/backends/web/web-1/weight", body: `{"weight":257}`, want: 400},
		{name: "weight fraction", path: "/api/backends/web/web-1/weight", body: `{"weight":1.5}`, want: 400},
		{name: "weight string", path: "/api/backends/web/web-1/weight", body: `{"weight":"3"}`, want: 400},

		{name: "source not found", path: "/api/backends/web/web-1/state", body: `{"state":"drain"}`,
			setErr: fmt.Errorf("%w: backend web-1 went away in a reload", ErrNotFound), want: 404, wantBody: "went away"},
		{name: "source invalid", path: "/api/backends/web/web-1/weight", body: `{"weight":200}`,
			setErr: fmt.Errorf("%w: weight 200 above this pool's limit", ErrInvalid), want: 400},
		{name: "source conflict", path: "/api/backends/web/web-1/state", body: `{"state":"maint"}`,
			setErr: fmt.Errorf("%w: last ready backend", ErrConflict), want: 409, wantBody: "last ready backend"},
		{name: "source failure", path: "/api/backends/web/web-1/state", body: `{"state":"maint"}`,
			setErr: errors.New("disk full"), want: 500},
		{name: "reload invalid", path: "/api/reload", reloadErr: errors.New(`app "web": backend "x:y": bad port`),
			want: 409, wantBody: `the running configuration stays: app \"web\"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newFake(time.Now())
			src.setErr, src.reloadErr = tc.setErr, tc.reloadErr
			ts := startServer(t, src, Config{Token: testToken})
			before := src.State()
			r := call(t, "POST", ts.URL+tc.path, testToken, tc.body)
			if r.code != tc.want {
				t.Fatalf("status %d, want %d; body %s", r.code, tc.want, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if !strings.Contains(r.body, tc.wantBody) {
				t.Errorf("body %s, want it to contain %s", r.body, tc.wantBody)
			}
			if r.code != 200 {
				assertJSONError(t, r)
				if after := src.State(); !reflect.DeepEqual(before, after) {
					t.Errorf("a refused request changed the state")
				}
				return
			}
			if tc.check != nil {
				if err := tc.check(src.State()); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestAPIDisabledWithoutToken(t *testing.T) {
	src := newFake(time.Now())
	ts := startServer(t, src, Config{})
	before := src.State()
	for _, c := range changes {
		for _, token := range []string{"", "anything"} {
			r := call(t, "POST", ts.URL+c.path, token, c.body)
			if r.code != http.StatusForbidden || !strings.Contains(r.body, "--admin-token-file") {
				t.Errorf("%s with token %q: %d %s, want 403 naming --admin-token-file", c.name, token, r.code, r.body)
			}
		}
	}
	if !reflect.DeepEqual(before, src.State()) || src.reloadCount() != 0 {
		t.Error("the disabled API changed the state")
	}
	if r := call(t, "GET", ts.URL+"/api/state", "", ""); r.code != 200 {
		t.Errorf("GET /api/state without a token configured: %d", r.code)
	}
}

func TestAPIRefusesCrossSite(t *testing.T) {
	src := newFake(time.Now())
	ts := startServer(t, src, Config{Token: testToken})
	for _, tc := range []struct {
		name   string
		header []string
		want   int
	}{
		{"cross-site fetch", []string{"Sec-Fetch-Site: cross-site"}, 403},
		{"same-site fetch", []string{"Sec-Fetch-Site: same-site"}, 403},
		{"foreign origin", []string{"Origin: https://evil.example"}, 403},
		{"same origin", []string{"Sec-Fetch-Site: same-origin"}, 200},
		{"typed by hand", []string{"Sec-Fetch-Site: none"}, 200},
		{"curl", nil, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := src.State()
			r := call(t, "POST", ts.URL+"/api/backends/web/web-3/weight", testToken, `{"weight":7}`, tc.header...)
			if r.code != tc.want {
				t.Fatalf("status %d, want %d; body %s", r.code, tc.want, r.body)
			}
			if tc.want != 200 && !reflect.DeepEqual(before, src.State()) {
				t.Error("a cross-site request changed the state")
			}
		})
	}
}

func TestAPIStateRoundTrip(t *testing.T) {
	src := newFake(time.Now())
	ts := startServer(t, src, Config{})
	r := call(t, "GET", ts.URL+"/api/state", "", "")
	if r.code != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /api/state: %d %q", r.code, r.header.Get("Content-Type"))
	}
	var got State
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
	if want := src.State(); !reflect.DeepEqual(got, want) {
		t.Errorf("round trip differs:\n got %+v\nwant %+v", got, want)
	}
	// The wire names are part of the API.
	for _, key := range []string{`"config_hash"`, `"admin_state": "drain"`, `"latency_ns": 12000000`,
		`"sticky_sessions": 3`, `"last_sticky_at"`, `"not_after"`, `"log_dropped": 0`} {
		if !strings.Contains(r.body, key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
	if strings.Contains(r.body, "0001-01-01") {
		t.Error("zero times are on the wire; want them left out")
	}
}

func TestAPIUnknownEndpoints(t *testing.T) {
	ts := startServer(t, newFake(time.Now()), Config{Token: testToken})
	for _, tc := range []struct {
		method, path string
		want         int
		wantAllow    string
	}{
		{"GET", "/api/nope", 404, ""},
		{"GET", "/api/reload", 405, "POST"},
		{"DELETE", "/api/state", 405, "GET, HEAD"},
		{"PUT", "/api/backends/web/web-1/state", 405, "POST"},
	} {
		r := call(t, tc.method, ts.URL+tc.path, testToken, "")
		if r.code != tc.want || r.header.Get("Allow") != tc.wantAllow {
			t.Errorf("%s %s: %d Allow %q, want %d Allow %q", tc.method, tc.path, r.code, r.header.Get("Allow"), tc.want, tc.wantAllow)
			continue
		}
		assertJSONError(t, r)
	}
	if r := call(t, "GET", ts.URL+"/nope", "", ""); r.code != 404 {
		t.Errorf("GET /nope: %d", r.code)
	}
}

func TestMetrics(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintln(w, "tlsedge_requests_total 42")
	})
	ts := startServer(t, newFake(time.Now()), Config{Metrics: metrics})
	if r := call(t, "GET", ts.URL+"/metrics", "", ""); r.code != 200 || !strings.Contains(r.body, "tlsedge_requests_total 42") {
		t.Errorf("GET /metrics: %d %q", r.code, r.body)
	}
	ts = startServer(t, newFake(time.Now()), Config{})
	if r := call(t, "GET", ts.URL+"/metrics", "", ""); r.code != 404 {
		t.Errorf("GET /metrics with no Metrics handler: %d", r.code)
	}
}

func TestAuditLog(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	logf := func(msg string, kv ...any) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, fmt.Sprint(append([]any{msg}, kv...)...))
	}
	ts := startServer(t, newFake(time.Now()), Config{Token: testToken, Log: logf})
	call(t, "POST", ts.URL+"/api/backends/web/web-1/state", testToken, `{"state":"drain"}`)
	call(t, "POST", ts.URL+"/api/backends/web/web-1/weight", "wrong", `{"weight":2}`)
	call(t, "POST", ts.URL+"/api/reload", testToken, "")
	mu.Lock()
	defer mu.Unlock()
	want := []string{"backend state set", "request refused", "reloaded"}
	if len(lines) != len(want) {
		t.Fatalf("audit log %q, want %d lines", lines, len(want))
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d %q, want %q", i, lines[i], w)
		}
	}
	if strings.Contains(strings.Join(lines, "\n"), testToken) {
		t.Error("the audit log holds the token")
	}
}

func backendIs(app, id string, ok func(Backend) bool) func(State) error {
	return func(st State) error {
		for _, a := range st.Apps {
			for _, b := range a.Backends {
				if a.Name == app && b.ID == id {
					if !ok(b) {
						return fmt.Errorf("backend %s/%s is %+v", app, id, b)
					}
					return nil
				}
			}
		}
		return fmt.Errorf("no backend %s/%s", app, id)
	}
}

func assertJSONError(t *testing.T, r response) {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal([]byte(r.body), &e); err != nil || e.Error == "" {
		t.Errorf("body %q is not a JSON error (%v)", r.body, err)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q", ct)
	}
}

func TestAPIPlan(t *testing.T) {
	src := newFake(time.Now())
	ts := startServer(t, src, Config{Token: testToken})
	auth := "Authorization: Bearer " + testToken
	r := call(t, "POST", ts.URL+"/api/plan", "", "apps:\n  - hosts: [blog.example.com]\n", auth)
	var plan Plan
	if err := json.Unmarshal([]byte(r.body), &plan); r.code != http.StatusOK || err != nil || !reflect.DeepEqual(plan.Lines, []string{"app added: blog"}) {
		t.Fatalf("plan: %d %s (%v)", r.code, r.body, err)
	}
	if got := string(src.plans[0]); !strings.Contains(got, "blog.example.com") {
		t.Errorf("the source got %q, want the posted configuration", got)
	}
	// An empty body asks about the server's own configuration.
	if r := call(t, "POST", ts.URL+"/api/plan", "", "", auth); r.code != http.StatusOK || len(src.plans[1]) != 0 {
		t.Errorf("plan without a body: %d %s, source got %q", r.code, r.body, src.plans[1])
	}
	// A configuration a reload would refuse: 400 (ErrInvalid) and why.
	src.reloadErr = fmt.Errorf("%w: apps[0]: no backends", ErrInvalid)
	r = call(t, "POST", ts.URL+"/api/plan", "", "apps: []", auth)
	if r.code != http.StatusBadRequest || !strings.Contains(r.body, "a reload would be refused") || !strings.Contains(r.body, "no backends") {
		t.Errorf("refused plan: %d %s", r.code, r.body)
	}
	if n := src.reloadCount(); n != 0 {
		t.Errorf("a plan reloaded %d times", n)
	}
	big := strings.Repeat("#", maxPlanBody+1)
	if r := call(t, "POST", ts.URL+"/api/plan", "", big, auth); r.code != http.StatusRequestEntityTooLarge {
		t.Errorf("a %d-byte configuration: %d, want 413", len(big), r.code)
	}
}

func TestAPIExplain(t *testing.T) {
	src := newFake(time.Now())
	ts := startServer(t, src, Config{Token: testToken})
	// Read-only: no token needed.
	r := call(t, "POST", ts.URL+"/api/explain", "", `{"url":"https://example.com/cart?x=1","cookie":"a=b","from":"203.0.113.9"}`)
	if r.code != http.StatusOK || !strings.Contains(r.body, "request GET example.com/cart?x=1 from 203.0.113.9:50000 cookie a=b") {
		t.Fatalf("explain: %d %s", r.code, r.body)
	}
	for _, bad := range []struct{ body, want string }{
		{`{"url":"example.com/cart"}`, "is not a URL"},
		{`{"url":"https://example.com/","from":"nowhere"}`, `--from \"nowhere\" is not an IP address`},
		{`{"url":"https://example.com/","headers":["no colon"]}`, "want 'Name: value'"},
		{`{"url":`, "bad request body"},
	} {
		r := call(t, "POST", ts.URL+"/api/explain", "", bad.body)
		if r.code != http.StatusBadRequest || !strings.Contains(r.body, bad.want) {
			t.Errorf("explain %s: %d %s, want 400 with %q", bad.body, r.code, r.body, bad.want)
		}
	}
}

func TestHealthz(t *testing.T) {
	src := newFake(time.Now())
	ts := startServer(t, src, Config{})
	if r := call(t, "GET", ts.URL+"/healthz", "", ""); r.code != http.StatusOK || r.body != "ok\n" {
		t.Errorf("healthy: %d %q", r.code, r.body)
	}
	src.reloadErr = errors.New("draining")
	if r := call(t, "GET", ts.URL+"/healthz", "", ""); r.code != http.StatusServiceUnavailable || !strings.Contains(r.body, "draining") {
		t.Errorf("unhealthy: %d %q", r.code, r.body)
	}
}
