package admin

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSource is a Source with canned state, standing in for the server until
// the integration tests in tlsedge/ mount the real one.
type fakeSource struct {
	mu        sync.Mutex
	st        State
	reloadErr error // returned by Reload
	setErr    error // returned by SetBackendState and SetWeight
	reloads   int
	plans     [][]byte // the bodies Plan was called with
}

var _ Source = (*fakeSource)(nil)

// newFake returns a fake with two apps, two certificates and four
// listeners, its times relative to now.
func newFake(now time.Time) *fakeSource {
	now = now.UTC().Truncate(time.Second)
	return &fakeSource{st: State{
		Version:    "v1.4.0-test",
		Started:    now.Add(-3*time.Hour - 5*time.Minute),
		ConfigHash: "sha256:9f2c1e",
		Listeners: []Listener{
			{Name: "https", Addr: ":443", Proto: "https"},
			{Name: "redirect", Addr: ":80", Proto: "http-redirect"},
			{Name: "postgres", Addr: ":5432", Proto: "tcp"},
			{Name: "admin", Addr: "127.0.0.1:2019", Proto: "admin"},
		},
		Apps: []App{{
			Name: "web", Hosts: []string{"example.com", "www.example.com"}, Path: "/",
			Balance: "p2c", Sticky: true, Queue: 2,
			Backends: []Backend{
				{ID: "web-1", Addr: "10.0.0.1:8080", Up: true, AdminState: StateReady, Weight: 2, Active: true,
					InFlight: 4, Latency: 12 * time.Millisecond, Requests: 18234, StickySessions: 41, LastStickyAt: now.Add(-2 * time.Second)},
				{ID: "web-2", Addr: "10.0.0.2:8080", Up: true, AdminState: StateDrain, Weight: 1, Active: true,
					InFlight: 1, Latency: 850 * time.Microsecond, Requests: 9120, StickySessions: 3, LastStickyAt: now.Add(-2 * time.Minute)},
				{ID: "web-3", Addr: "10.0.0.3:8080", Up: false, AdminState: StateReady, Weight: 1, Active: true,
					LastError: "dial tcp 10.0.0.3:8080: connect: connection refused", LastErrorAt: now.Add(-40 * time.Second), Requests: 77},
				{ID: "web-4", Addr: "10.0.0.4:8080", Up: true, AdminState: StateMaint, Weight: 1, Priority: 1},
			},
		}, {
			Name: "api", Hosts: []string{"api.example.com"}, Path: "/v2/", Balance: "least_requests",
			Backends: []Backend{
				{ID: "api-backend-with-a-rather-long-identifier@[2001:db8::1234:5678]:8443", Addr: "[2001:db8::1234:5678]:8443",
					Up: true, AdminState: StateReady, Weight: 1, Active: true, Latency: 1500 * time.Millisecond, Requests: 5},
			},
		}},
		Certificates: []Certificate{
			{Names: []string{"example.com", "www.example.com"}, Issuer: "Let's Encrypt R11", Source: "acme", NotAfter: now.Add(41*24*time.Hour + time.Hour)},
			{Names: []string{"api.example.com"}, Issuer: "tlsedge Local CA", Source: "local-ca", NotAfter: now.Add(5*24*time.Hour + time.Hour)},
		},
		LogDropped: 0,
	}}
}

// State returns a deep enough copy: the slices the setters write to are
// cloned, so the handler reads them without racing the test.
func (f *fakeSource) State() State {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.st
	st.Apps = slices.Clone(st.Apps)
	for i := range st.Apps {
		st.Apps[i].Backends = slices.Clone(st.Apps[i].Backends)
	}
	return st
}

func (f *fakeSource) Reload(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reloadErr != nil {
		return f.reloadErr
	}
	f.reloads++
	f.st.ConfigHash = fmt.Sprintf("sha256:reload%d", f.reloads)
	return nil
}

func (f *fakeSource) SetBackendState(app, backend, state string) error {
	return f.update(app, backend, func(b *Backend) { b.AdminState = state })
}

func (f *fakeSource) SetWeight(app, backend string, weight int) error {
	return f.update(app, backend, func(b *Backend) { b.Weight = weight })
}

func (f *fakeSource) setUp(app, backend string, up bool) error {
	return f.update(app, backend, func(b *Backend) { b.Up = up })
}

func (f *fakeSource) update(app, backend string, fn func(*Backend)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.setErr != nil {
		return f.setErr
	}
	for i := range f.st.Apps {
		a := &f.st.Apps[i]
		if a.Name != app {
			continue
		}
		for j := range a.Backends {
			if a.Backends[j].ID == backend {
				fn(&a.Backends[j])
				return nil
			}
		}
		return fmt.Errorf("%w: app %q has no backend %q", ErrNotFound, app, backend)
	}
	return fmt.Errorf("%w: unknown app %q", ErrNotFound, app)
}

// Plan records the configuration it was given and answers one change.
func (f *fakeSource) Plan(_ context.Context, cfg []byte) (Plan, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.plans = append(f.plans, cfg)
	if f.reloadErr != nil {
		return Plan{}, f.reloadErr
	}
	return Plan{Changes: map[string][]string{"apps_added": {"blog"}}, Lines: []string{"app added: blog"}, ConfigHash: "sha256:plan"}, nil
}

// Explain echoes the request it would look at, as the server sees it.
func (f *fakeSource) Explain(_ context.Context, q ExplainRequest) ([]string, error) {
	r, err := q.Request()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return []string{"request " + r.Method + " " + r.Host + r.URL.RequestURI() + " from " + r.RemoteAddr + " cookie " + r.Header.Get("Cookie")}, nil
}

// Health is healthy unless the fake's reload error is set.
func (f *fakeSource) Health() (bool, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reloadErr != nil {
		return false, "unhealthy: " + f.reloadErr.Error()
	}
	return true, "ok"
}

func (f *fakeSource) planCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.plans)
}

func (f *fakeSource) reloadCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reloads
}

// startServer serves a new admin handler over src on a loopback httptest
// server, closed when the test ends.
func startServer(t *testing.T, src Source, cfg Config) *httptest.Server {
	t.Helper()
	h, err := New(src, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts
}

type response struct {
	code   int
	header http.Header
	body   string
}

// call sends one request; token "" sends no Authorization header, and
// extra headers are "Name: value" strings.
func call(t *testing.T, method, url, token, body string, extra ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range extra {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return response{resp.StatusCode, resp.Header, string(b)}
}
