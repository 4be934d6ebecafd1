package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	stdlog "log"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// fastHealth is a check every 25ms. The timeout is generous for loopback
// so that a busy -race run does not fail a check the test expects to pass.
func fastHealth() HealthConfig {
	return HealthConfig{Path: "/healthz", Interval: 25 * time.Millisecond, Timeout: 20 * time.Millisecond}
}

// healthLog is a logrus hook that keeps every line a checker logs and, for
// each, what snap returned at that moment. The checker logs from the
// backend's goroutine between two checks, so a count of requests taken
// there is exactly the number of checks that led to the line.
type healthLog struct {
	mu    sync.Mutex
	lines []healthLine
	snap  func() int64
}

type healthLine struct {
	level  logrus.Level
	msg    string
	fields logrus.Fields
	snap   int64
}

func newHealthLog(snap func() int64) (*logrus.Entry, *healthLog) {
	hl := &healthLog{snap: snap}
	logger := logrus.New()
	logger.SetOutput(io.Discard)
	logger.SetLevel(logrus.DebugLevel)
	logger.AddHook(hl)
	return logger.WithField("app", "test"), hl
}

func (hl *healthLog) Levels() []logrus.Level { return logrus.AllLevels }

func (hl *healthLog) Fire(e *logrus.Entry) error {
	l := healthLine{level: e.Level, msg: e.Message, fields: maps.Clone(e.Data)}
	if hl.snap != nil {
		l.snap = hl.snap()
	}
	hl.mu.Lock()
	defer hl.mu.Unlock()
	hl.lines = append(hl.lines, l)
	return nil
}

func (hl *healthLog) all() []healthLine {
	hl.mu.Lock()
	defer hl.mu.Unlock()
	return append([]healthLine(nil), hl.lines...)
}

// checkLine fails t unless l is the state change from -> to of the backend
// named id at addr, with a reason containing reason.
func checkLine(t *testing.T, l healthLine, id, addr, from, to, reason string) {
	t.Helper()
	wantLevel := logrus.WarnLevel
	if to == stateUp {
		wantLevel = logrus.InfoLevel
	}
	if want := "backend " + id + " " + from + " -> " + to; l.msg != want || l.level != wantLevel {
		t.Errorf("line %q at %s, want %q at %s", l.msg, l.level, want, wantLevel)
	}
	f := l.fields
	if f["backend"] != id || f["addr"] != addr || f["from"] != from || f["to"] != to || f["app"] != "test" {
		t.Errorf("line fields %v, want backend=%s addr=%s from=%s to=%s app=test", f, id, addr, from, to)
	}
	if got, _ := f["reason"].(string); !strings.Contains(got, reason) {
		t.Errorf("reason %q, want it to contain %q", got, reason)
	}
}

// startHealthPool builds a pool over addrs (backends "b0", "b1", ...) in
// reg and starts its checker, stopped at cleanup.
func startHealthPool(t *testing.T, reg *Registry, cfg HealthConfig, log *logrus.Entry, addrs ...string) (*Pool, *HealthChecker) {
	t.Helper()
	bcs := make([]BackendConfig, len(addrs))
	for i, a := range addrs {
		bcs[i] = BackendConfig{ID: "b" + strconv.Itoa(i), Addr: a}
	}
	pool, err := NewPool(PoolConfig{Backends: bcs}, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	h, err := StartHealth(context.Background(), pool, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	return pool, h
}

// switchBackend answers every request with the status in code and counts
// the answers by status, and remembers the last request's User-Agent and
// Host.
type switchBackend struct {
	*httptest.Server
	code    atomic.Int64
	answers sync.Map // status -> *atomic.Int64
	ua      atomic.Value
	host    atomic.Value
}

func newSwitchBackend(t *testing.T, code int) *switchBackend {
	t.Helper()
	sb := &switchBackend{}
	sb.code.Store(int64(code))
	sb.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sb.ua.Store(r.UserAgent())
		sb.host.Store(r.Host)
		c := int(sb.code.Load())
		sb.counter(c).Add(1) // before the answer: the checker cannot see it uncounted
		w.WriteHeader(c)
	}))
	t.Cleanup(sb.Close)
	return sb
}

func (sb *switchBackend) counter(code int) *atomic.Int64 {
	n, _ := sb.answers.LoadOrStore(code, new(atomic.Int64))
	return n.(*atomic.Int64)
}

func (sb *switchBackend) addr() string { return sb.Listener.Addr().String() }

func TestHealthFallAndRise(t *testing.T) {
	sb := newSwitchBackend(t, http.StatusServiceUnavailable)
	var phase atomic.Int64 // the status whose answers snap counts
	phase.Store(http.StatusServiceUnavailable)
	log, hl := newHealthLog(func() int64 { return sb.counter(int(phase.Load())).Load() })
	cfg := fastHealth()
	cfg.Host = "app.example"
	pool, _ := startHealthPool(t, nil, cfg, log, sb.addr())
	b := pool.Backend("b0")

	eventually(t, "backend down", b.CheckedDown)
	if b.Up(time.Now()) {
		t.Error("Up is true for a backend the check holds down")
	}
	lines := hl.all()
	if len(lines) != 1 {
		t.Fatalf("%d lines after going down, want 1: %v", len(lines), lines)
	}
	checkLine(t, lines[0], "b0", sb.addr(), stateUp, stateDown, "status 503, want 200-399")
	if lines[0].snap != DefaultHealthFall {
		t.Errorf("down after %d failed checks, want Fall = %d", lines[0].snap, DefaultHealthFall)
	}
	if ua, host := sb.ua.Load(), sb.host.Load(); ua != healthUserAgent || host != "app.example" {
		t.Errorf("check sent User-Agent %q, Host %q; want %q, %q", ua, host, healthUserAgent, "app.example")
	}

	phase.Store(http.StatusOK)
	sb.code.Store(http.StatusOK)
	eventually(t, "backend up", func() bool { return !b.CheckedDown() })
	lines = hl.all()
	if len(lines) != 2 {
		t.Fatalf("%d lines after coming up, want 2: %v", len(lines), lines)
	}
	checkLine(t, lines[1], "b0", sb.addr(), stateDown, stateUp, "status 200")
	if lines[1].snap != DefaultHealthRise {
		t.Errorf("up after %d passed checks, want Rise = %d", lines[1].snap, DefaultHealthRise)
	}
}

// healthCase is a backend and a check of it, and the verdict expected.
type healthCase struct {
	name   string
	cfg    func(*HealthConfig)
	answer http.HandlerFunc // nil: the backend's port is closed
	down   string           // reason of going down; "" means it stays up
}

func TestHealthVerdicts(t *testing.T) {
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "all ok") }
	nowhere := "http://" + refusedAddr(t) + "/"
	cases := []healthCase{
		{name: "pass", answer: ok},
		{name: "status", answer: func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusServiceUnavailable)
		}, down: "status 503, want 200-399"},
		{name: "status range", cfg: func(c *HealthConfig) { c.StatusMin, c.StatusMax = 200, 204 },
			answer: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusPartialContent) },
			down:   "status 206, want 200-204"},
		{name: "redirect not followed", answer: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, nowhere, http.StatusFound)
		}},
		{name: "body present", cfg: func(c *HealthConfig) { c.Body = "ok" }, answer: ok},
		{name: "body lacks", cfg: func(c *HealthConfig) { c.Body = "ok" },
			answer: func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "starting") },
			down:   `body lacks "ok"`},
		{name: "body past 64 KiB", cfg: func(c *HealthConfig) { c.Body = "ok" },
			answer: func(w http.ResponseWriter, _ *http.Request) {
				_, _ = io.WriteString(w, strings.Repeat("x", healthBodyLimit)+"ok")
			}, down: `body lacks "ok"`},
		{name: "refused", down: "connection refused"},
		{name: "tcp refused", cfg: func(c *HealthConfig) { *c = HealthConfig{TCP: true, Interval: c.Interval} },
			down: "connection refused"},
		{name: "hang", answer: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			down: "timeout after 20ms"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr, checks := refusedAddr(t), new(atomic.Int64)
			if tc.answer != nil {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					checks.Add(1)
					tc.answer(w, r)
				}))
				t.Cleanup(srv.Close)
				addr = srv.Listener.Addr().String()
			}
			cfg := fastHealth()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			log, hl := newHealthLog(nil)
			pool, _ := startHealthPool(t, nil, cfg, log, addr)
			b := pool.Backend("b0")

			if tc.down == "" {
				// Checks run one after another: once the backend has seen
				// Fall+1 of them, Fall verdicts are in.
				eventually(t, "Fall+1 checks", func() bool { return checks.Load() > DefaultHealthFall })
				if b.CheckedDown() || len(hl.all()) != 0 {
					t.Fatalf("backend down (%v) or state logged: %v", b.CheckedDown(), hl.all())
				}
				return
			}
			eventually(t, "backend down", b.CheckedDown)
			lines := hl.all()
			if len(lines) != 1 {
				t.Fatalf("%d lines, want 1: %v", len(lines), lines)
			}
			checkLine(t, lines[0], "b0", addr, stateUp, stateDown, tc.down)
		})
	}
}

// tcpBackend accepts connections on addr and closes them, counting them.
type tcpBackend struct {
	l       net.Listener
	accepts atomic.Int64
	wg      sync.WaitGroup
}

func listenTCPBackend(t *testing.T, addr string) *tcpBackend {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	tb := &tcpBackend{l: l}
	tb.wg.Go(func() {
		for { // ends when close closes the listener
			c, err := l.Accept()
			if err != nil {
				return
			}
			tb.accepts.Add(1)
			_ = c.Close()
		}
	})
	t.Cleanup(tb.close)
	return tb
}

func (tb *tcpBackend) close() {
	_ = tb.l.Close()
	tb.wg.Wait()
}

func TestHealthTCP(t *testing.T) {
	tb := listenTCPBackend(t, "127.0.0.1:0")
	addr := tb.l.Addr().String()
	log, hl := newHealthLog(nil)
	pool, _ := startHealthPool(t, nil, HealthConfig{TCP: true, Interval: 20 * time.Millisecond}, log, addr)
	b := pool.Backend("b0")

	eventually(t, "Fall+1 connects", func() bool { return tb.accepts.Load() > DefaultHealthFall })
	if b.CheckedDown() || len(hl.all()) != 0 {
		t.Fatalf("listening backend down (%v) or state logged: %v", b.CheckedDown(), hl.all())
	}

	tb.close()
	eventually(t, "closed backend down", b.CheckedDown)
	if lines := hl.all(); len(lines) != 1 {
		t.Fatalf("%d lines, want 1: %v", len(lines), lines)
	} else {
		checkLine(t, lines[0], "b0", addr, stateUp, stateDown, "connection refused")
	}

	tb = listenTCPBackend(t, addr)
	eventually(t, "reopened backend up", func() bool { return !b.CheckedDown() })
	if lines := hl.all(); len(lines) != 2 {
		t.Fatalf("%d lines, want 2: %v", len(lines), lines)
	} else {
		checkLine(t, lines[1], "b0", addr, stateDown, stateUp, "connected")
	}
	if n := tb.accepts.Load(); n < DefaultHealthRise {
		t.Errorf("up after %d connects, want at least Rise = %d", n, DefaultHealthRise)
	}
}

func TestHealthHTTPS(t *testing.T) {
	var checks atomic.Int64
	var seen atomic.Value // "host sni" of the last check
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.Host + " " + r.TLS.ServerName)
		checks.Add(1)
		_, _ = io.WriteString(w, "ok")
	}))
	srv.Config.ErrorLog = stdlog.New(io.Discard, "", 0) // the refused handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs

	for _, tc := range []struct {
		name, host string
		tls        *tls.Config
		seen       string // host and server name the backend saw
		down       string
	}{
		// The test certificate is for 127.0.0.1 and example.com; an IP is
		// verified but never sent as SNI.
		{name: "trusted", tls: &tls.Config{RootCAs: roots}, seen: addr + " "},
		{name: "host is server name", host: "example.com", tls: &tls.Config{RootCAs: roots}, seen: "example.com example.com"},
		{name: "untrusted", tls: &tls.Config{RootCAs: x509.NewCertPool()}, down: "certificate signed by unknown authority"},
		{name: "wrong name", host: "other.example", tls: &tls.Config{RootCAs: roots}, down: "other.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Handshakes are slow under -race: a longer timeout.
			cfg := HealthConfig{Path: "/healthz", Interval: 100 * time.Millisecond, Timeout: 80 * time.Millisecond}
			cfg.Body, cfg.Host, cfg.TLS = "ok", tc.host, tc.tls
			log, hl := newHealthLog(nil)
			pool, h := startHealthPool(t, nil, cfg, log, addr)
			b := pool.Backend("b0")
			if tc.down != "" {
				eventually(t, "backend down", b.CheckedDown)
				checkLine(t, hl.all()[0], "b0", addr, stateUp, stateDown, tc.down)
				return
			}
			start := checks.Load()
			eventually(t, "Fall+1 checks", func() bool { return checks.Load()-start > DefaultHealthFall })
			h.Stop() // no check of this subtest runs into the next one
			if b.CheckedDown() || len(hl.all()) != 0 {
				t.Fatalf("backend down (%v) or state logged: %v", b.CheckedDown(), hl.all())
			}
			if got := seen.Load(); got != tc.seen {
				t.Errorf("backend saw host and server name %q, want %q", got, tc.seen)
			}
		})
	}
}

// TestHealthReloadKeepsVerdict shows a reload's new checker continuing
// from the shared backend's state: a down backend stays down, without a
// line, until it passes Rise checks.
func TestHealthReloadKeepsVerdict(t *testing.T) {
	sb := newSwitchBackend(t, http.StatusServiceUnavailable)
	reg := NewRegistry()
	log1, _ := newHealthLog(nil)
	pool1, h1 := startHealthPool(t, reg, fastHealth(), log1, sb.addr())
	eventually(t, "backend down", pool1.Backend("b0").CheckedDown)
	h1.Stop()

	log2, hl2 := newHealthLog(nil)
	pool2, _ := startHealthPool(t, reg, fastHealth(), log2, sb.addr())
	b := pool2.Backend("b0")
	if b != pool1.Backend("b0") {
		t.Fatal("reload did not share the backend")
	}
	failed := sb.counter(http.StatusServiceUnavailable)
	start := failed.Load()
	eventually(t, "Fall+1 checks", func() bool { return failed.Load()-start > DefaultHealthFall })
	if !b.CheckedDown() || len(hl2.all()) != 0 {
		t.Fatalf("new checker changed the state (down %v): %v", b.CheckedDown(), hl2.all())
	}
	sb.code.Store(http.StatusOK)
	eventually(t, "backend up", func() bool { return !b.CheckedDown() })
	if lines := hl2.all(); len(lines) != 1 {
		t.Fatalf("%d lines, want 1: %v", len(lines), lines)
	} else {
		checkLine(t, lines[0], "b0", sb.addr(), stateDown, stateUp, "status 200")
	}
}

func TestHealthStopEndsGoroutines(t *testing.T) {
	var inflight atomic.Int64
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inflight.Add(1)
		defer inflight.Add(-1)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(release) }) // before Close, which waits for handlers
	live := newSwitchBackend(t, http.StatusOK)
	pool, err := NewPool(PoolConfig{Backends: []BackendConfig{
		{ID: "hang", Addr: hang.Listener.Addr().String()},
		{ID: "live", Addr: live.addr()},
		{ID: "dead", Addr: refusedAddr(t)},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	// Fall 1: a check of the hanging backend that Stop ends would take it
	// down at once if it counted. The timeout keeps that check in flight
	// long after it is seen to arrive.
	cfg := HealthConfig{Interval: time.Second, Timeout: 900 * time.Millisecond, Fall: 1}

	for _, tc := range []struct {
		name string
		stop func(h *HealthChecker, cancel context.CancelFunc)
	}{
		{"Stop", func(h *HealthChecker, _ context.CancelFunc) { h.Stop(); h.Stop() }},
		{"context", func(_ *HealthChecker, cancel context.CancelFunc) { cancel() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := runtime.NumGoroutine()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			h, err := StartHealth(ctx, pool, cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if n := runtime.NumGoroutine(); n < base+3 {
				t.Fatalf("%d goroutines after start, want at least %d", n, base+3)
			}
			eventually(t, "a check at the hanging backend", func() bool { return inflight.Load() == 1 })
			tc.stop(h, cancel)
			eventually(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= base })
			h.Stop() // returns at once after the context ended too
			eventually(t, "the hanging check to be abandoned", func() bool { return inflight.Load() == 0 })
			if pool.Backend("hang").CheckedDown() {
				t.Error("the check ended by stopping recorded a verdict")
			}
			if pool.Backend("live").CheckedDown() {
				t.Error("live backend down")
			}
		})
	}
}

func TestHealthFirstChecksSpread(t *testing.T) {
	const interval = 100 * time.Millisecond
	for _, phase := range []time.Duration{0, 30 * time.Millisecond, interval - 1} {
		seen := make(map[time.Duration]bool)
		for i := range 4 {
			d := firstCheck(i, 4, phase, interval)
			if d < 0 || d >= interval || seen[d] {
				t.Errorf("phase %s: backend %d first checked after %s, want distinct delays in [0, %s)", phase, i, d, interval)
			}
			seen[d] = true
		}
	}
	if d := firstCheck(0, 1, 0, interval); d != 0 {
		t.Errorf("single backend, phase 0: %s", d)
	}
}

func TestHealthConfigErrors(t *testing.T) {
	pool, err := NewPool(PoolConfig{Backends: []BackendConfig{{Addr: "127.0.0.1:1"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	for _, tc := range []struct {
		cfg  HealthConfig
		want string
	}{
		{HealthConfig{Interval: -time.Second}, "Interval -1s must not be negative"},
		{HealthConfig{Timeout: -time.Second}, "Timeout -1s must not be negative"},
		{HealthConfig{Timeout: 5 * time.Second}, "Timeout 5s must be shorter than Interval 5s"},
		{HealthConfig{Interval: time.Second, Timeout: 2 * time.Second}, "Timeout 2s must be shorter than Interval 1s"},
		{HealthConfig{Rise: -1}, "Rise -1 must be at least 1"},
		{HealthConfig{Fall: -2}, "Fall -2 must be at least 1"},
		{HealthConfig{StatusMin: 500}, "StatusMin 500 is above StatusMax 399"},
		{HealthConfig{StatusMin: 300, StatusMax: 299}, "StatusMin 300 is above StatusMax 299"},
		{HealthConfig{StatusMax: 600}, "StatusMax 600 out of range 100..599"},
		{HealthConfig{StatusMin: 42}, "StatusMin 42 out of range 100..599"},
		{HealthConfig{Path: "healthz"}, `Path "healthz" must be an absolute path`},
		{HealthConfig{Path: "/health z"}, `Path "/health z" must be an absolute path`},
		{HealthConfig{Host: "a b"}, `Host "a b" is not a valid Host header`},
		{HealthConfig{TCP: true, Path: "/healthz"}, `TCP check takes no Path ("/healthz")`},
		{HealthConfig{TCP: true, Body: "ok"}, `TCP check takes no Body ("ok")`},
		{HealthConfig{TCP: true, StatusMax: 299}, "TCP check takes no StatusMin/StatusMax (0-299)"},
		{HealthConfig{TCP: true, TLS: &tls.Config{}}, "TCP check takes no TLS config"},
	} {
		h, err := StartHealth(context.Background(), pool, tc.cfg, nil)
		if err == nil {
			h.Stop()
			t.Errorf("%+v: no error, want %q", tc.cfg, tc.want)
			continue
		}
		if !strings.HasPrefix(err.Error(), "upstream: health check: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %q, want it to contain %q", tc.cfg, err, tc.want)
		}
		if tc.cfg.Validate() == nil {
			t.Errorf("%+v: Validate accepts what StartHealth refuses", tc.cfg)
		}
	}
	if _, err := StartHealth(context.Background(), nil, HealthConfig{}, nil); err == nil {
		t.Error("no error for a nil pool")
	}
	for _, ok := range []HealthConfig{
		{},
		{Interval: time.Second}, // the default timeout shrinks to 500ms
		{Path: "/healthz?full=1", StatusMin: 200, StatusMax: 200, Host: "[::1]:8443"},
		{TCP: true, Rise: 1, Fall: 1},
	} {
		if err := ok.Validate(); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
}

func TestHealthConfigString(t *testing.T) {
	for _, tc := range []struct {
		cfg  HealthConfig
		want string
	}{
		{HealthConfig{}, "http GET / status 200-399 every 5s timeout 2s rise 2 fall 3"},
		{HealthConfig{TCP: true, Interval: time.Second, Fall: 1}, "tcp connect every 1s timeout 500ms rise 2 fall 1"},
		{HealthConfig{Path: "/healthz", Host: "example.com", Body: "ok", StatusMax: 299, TLS: &tls.Config{}, Timeout: time.Second, Rise: 5},
			`https GET /healthz host example.com status 200-299 body "ok" every 5s timeout 1s rise 5 fall 3`},
	} {
		if got := tc.cfg.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}
