// Package admin serves the admin listener of tlsedge: an HTML status page at
// /, a JSON API under /api/ and, when the server hands one over, /metrics.
//
// The package knows nothing of the server. The server implements Source, a
// snapshot of its state plus the few changes an operator may make (reload,
// backend admin state, weight), and mounts the handler New returns on the
// admin listener (--admin, default 127.0.0.1:2019).
//
// Reads need no token. Every change needs `Authorization: Bearer TOKEN`, also
// on loopback: a local user or a browser tab on the same machine is not
// necessarily the operator.
package admin

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"
)

// State is everything the status page and GET /api/state show. The server
// builds a fresh one for every call of Source.State; the handler never keeps
// it past the request.
type State struct {
	Version      string        `json:"version"`
	Started      time.Time     `json:"started"`
	ConfigHash   string        `json:"config_hash"`
	Listeners    []Listener    `json:"listeners"`
	Apps         []App         `json:"apps"`
	Certificates []Certificate `json:"certificates"`
	// LogDropped counts access-log lines lost because the writer fell behind.
	LogDropped uint64 `json:"log_dropped"`
	// ProcessLogDropped counts process-log lines lost because their sink
	// (a file or syslog collector, --log-output) fell behind; always 0 when
	// the process log goes to stderr.
	ProcessLogDropped uint64 `json:"process_log_dropped"`
	// Cluster is set when the instance shares state with others through
	// Redis.
	Cluster *Cluster `json:"cluster,omitempty"`
}

// Cluster is this instance's place among instances sharing a Redis.
type Cluster struct {
	Instance  string `json:"instance"`
	Redis     string `json:"redis"`
	RedisDown bool   `json:"redis_down"`
	// AdminSync says whether backend admin states and weights are shared;
	// AdminVersion is the last cluster-wide change applied here (equal on
	// every instance once a change has reached them all).
	AdminSync    bool  `json:"admin_sync"`
	AdminVersion int64 `json:"admin_version"`
}

// Listener is one listening socket. Proto is "https", "http-redirect", "tcp"
// or "admin".
type Listener struct {
	Name  string `json:"name"`
	Addr  string `json:"addr"`
	Proto string `json:"proto"`
}

// App is one routed application and its pool.
type App struct {
	Name     string    `json:"name"`
	Hosts    []string  `json:"hosts"`
	Path     string    `json:"path,omitempty"`
	Balance  string    `json:"balance"`
	Sticky   bool      `json:"sticky"`
	Backends []Backend `json:"backends"`
	// Queue is the number of requests waiting for a free backend.
	Queue int64 `json:"queue"`
}

// Backend is the live state of one backend within an app.
type Backend struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
	// Up is the health verdict (active and passive checks together).
	Up bool `json:"up"`
	// AdminState is what the operator set: "ready", "drain" (no new
	// sessions; sticky users keep the backend until they leave) or "maint"
	// (no traffic at all). Empty means ready.
	AdminState string `json:"admin_state"`
	Weight     int    `json:"weight"`
	Priority   int    `json:"priority"`
	// Active reports whether the backend's priority group takes traffic.
	Active    bool          `json:"active"`
	InFlight  int64         `json:"in_flight"`
	Latency   time.Duration `json:"latency_ns"`
	LastError string        `json:"last_error,omitempty"`
	// LastErrorAt is zero when the backend has not failed.
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	Requests    uint64    `json:"requests"`
	// StickySessions is the number of distinct sticky cookies naming this
	// backend that the server saw recently; LastStickyAt is the newest one.
	// Together they tell an operator when a draining backend is free.
	StickySessions int       `json:"sticky_sessions"`
	LastStickyAt   time.Time `json:"last_sticky_at,omitzero"`
}

// Certificate is one certificate the server can present.
type Certificate struct {
	Names    []string  `json:"names"`
	Issuer   string    `json:"issuer"`
	Source   string    `json:"source"`
	NotAfter time.Time `json:"not_after"`
}

// Admin states of a backend, as Backend.AdminState and the API spell them.
const (
	StateReady = "ready"
	StateDrain = "drain"
	StateMaint = "maint"
)

// MaxWeight is the largest weight the API accepts. It mirrors
// upstream.MaxWeight (this package imports nothing of ours); the server's
// SetWeight stays the final judge.
const MaxWeight = 256

// Errors a Source wraps so that the API answers with the right status:
// ErrNotFound is 404, ErrInvalid 400, ErrConflict 409. Any other error from
// SetBackendState or SetWeight is 500; any other error from Reload is 409,
// because by contract it is the validation error of the new configuration.
var (
	ErrNotFound = errors.New("admin: not found")
	ErrInvalid  = errors.New("admin: invalid value")
	ErrConflict = errors.New("admin: conflict")
)

// Source is what the server provides to the admin handler. All methods are
// called from request goroutines, concurrently.
type Source interface {
	// State returns a snapshot that the caller may read but not keep.
	State() State
	// Reload reads and applies the configuration again. On a bad
	// configuration it returns the validation error and the running
	// configuration stays.
	Reload(ctx context.Context) error
	// SetBackendState sets a backend's admin state: StateReady, StateDrain or
	// StateMaint. Errors name what is unknown.
	SetBackendState(app, backend, state string) error
	// SetWeight changes a backend's weight in one app.
	SetWeight(app, backend string, weight int) error
	// Plan says what a reload would change, changing nothing: to the
	// configuration in config (YAML), or with an empty config to the
	// server's own configuration read again. A configuration a reload
	// would refuse is an error wrapping ErrInvalid.
	Plan(ctx context.Context, config []byte) (Plan, error)
	// Explain says what the running configuration would do with a
	// request, and why, one line per step.
	Explain(ctx context.Context, q ExplainRequest) ([]string, error)
	// Health says whether the instance should get traffic (GET /healthz:
	// 200, or 503 with the reason).
	Health() (ok bool, reason string)
}

// Plan is the answer of POST /api/plan.
type Plan struct {
	// Changes is the structured difference (the server's type, as JSON).
	Changes any `json:"changes"`
	// Lines say the same for people; none when nothing changes.
	Lines      []string `json:"lines"`
	ConfigHash string   `json:"config_hash"`
}

// Config configures the handler. New copies what it needs; the caller may
// reuse the struct afterwards. The zero value serves the read-only pages with
// the state-changing API disabled.
type Config struct {
	// Token must be presented as `Authorization: Bearer TOKEN` on every
	// request that changes state. Empty disables those requests: they get
	// 403 with a message that says how to enable them.
	Token string
	// Metrics is served at GET /metrics; nil means no /metrics.
	Metrics http.Handler
	// Refresh is how often the status page reloads itself, rounded up to
	// whole seconds (meta refresh counts seconds). Zero means 2s.
	Refresh time.Duration
	// Log, if set, receives an audit line for every change and every
	// refused attempt, with key-value pairs as in slog.
	Log func(msg string, kv ...any)
}

func (c *Config) refreshSeconds() int {
	d := c.Refresh
	if d <= 0 {
		d = 2 * time.Second
	}
	return int((d + time.Second - 1) / time.Second)
}

func (c *Config) log(msg string, kv ...any) {
	if c.Log != nil {
		c.Log(msg, kv...)
	}
}

// handler is the http.Handler that New returns. Everything in it is built
// once; requests only read it.
type handler struct {
	src       Source
	cfg       Config
	mux       *http.ServeMux
	tokenSum  [sha256.Size]byte // sha256 of cfg.Token, compared in constant time
	crossSite *http.CrossOriginProtection
	page      *template.Template
	css       template.CSS
	headers   [][2]string // security headers on every response
}

var _ http.Handler = (*handler)(nil)

// New returns the admin handler serving src. It fails only if the embedded
// assets are broken or src is nil.
func New(src Source, cfg Config) (http.Handler, error) {
	if src == nil {
		return nil, errors.New("admin: nil Source")
	}
	page, css, err := loadAssets()
	if err != nil {
		return nil, err
	}
	h := &handler{
		src:       src,
		cfg:       cfg,
		tokenSum:  sha256.Sum256([]byte(cfg.Token)),
		crossSite: http.NewCrossOriginProtection(),
		page:      page,
		css:       css,
	}
	// The only inline content is the one <style> element, so the policy
	// names its hash instead of allowing 'unsafe-inline'.
	cssSum := sha256.Sum256([]byte(css))
	csp := fmt.Sprintf("default-src 'none'; style-src 'sha256-%s'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
		base64.StdEncoding.EncodeToString(cssSum[:]))
	h.headers = [][2]string{
		{"Cache-Control", "no-store"},
		{"X-Content-Type-Options", "nosniff"},
		{"Content-Security-Policy", csp},
		{"X-Frame-Options", "DENY"},
		{"Referrer-Policy", "no-referrer"},
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", h.statusPage)
	mux.HandleFunc("GET /api/state", h.getState)
	mux.HandleFunc("GET /healthz", h.healthz)
	mux.Handle("POST /api/reload", h.guard(h.reload))
	mux.Handle("POST /api/plan", h.guard(h.plan))
	mux.HandleFunc("POST /api/explain", h.explain)
	mux.Handle("POST /api/backends/{app}/{backend}/state", h.guard(h.setState))
	mux.Handle("POST /api/backends/{app}/{backend}/weight", h.guard(h.setWeight))
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics)
	}
	h.mux = mux
	return h, nil
}

// ServeHTTP sets the security headers and dispatches. Under /api/ the
// mux's own 404 and 405 answers are turned into JSON like every other API
// error.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	for _, kv := range h.headers {
		hdr.Set(kv[0], kv[1])
	}
	// mux.Handler only looks the pattern up; mux.ServeHTTP below must still
	// do the dispatch, because it is what fills in r.PathValue.
	if strings.HasPrefix(r.URL.Path, "/api/") {
		if _, pattern := h.mux.Handler(r); pattern == "" {
			w = &jsonErrorWriter{ResponseWriter: w}
		}
	}
	h.mux.ServeHTTP(w, r)
}
