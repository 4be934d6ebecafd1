// Package config is tlsedge's configuration model: one set of plain structs
// that both spellings — command-line flags (--app ...) and the YAML file —
// parse into, the validation that names the app, field and bad value of every
// error, and the printing of the effective configuration.
//
// The structs are plain data. Zero values mean "the default"; the resolved
// defaults are filled in by (*Config).Normalize so that `tlsedge check` can
// print exactly what will run. Once handed to the server a Config is never
// mutated again: a reload builds a new one.
package config

import "time"

// Defaults shared by the flag parser, the file loader and the documentation.
const (
	DefaultListen     = ":443"
	DefaultHTTPListen = ":80"
	DefaultAdmin      = "127.0.0.1:2019"
	// DefaultShutdownTimeout is how long requests in flight get to finish
	// at a stop (SIGTERM) or after a binary upgrade.
	DefaultShutdownTimeout = 10 * time.Second
	DefaultStickyName      = "tlsedge_sticky"
	DefaultAccessLog       = "stdout"
	DefaultLogLevel        = "info"
	DefaultDialTimeout     = 5 * time.Second
	// DefaultResponseHeaderTimeout bounds how long a backend may think before
	// it sends response headers; streaming bodies after that are not bounded.
	DefaultResponseHeaderTimeout = 60 * time.Second
	DefaultIdleConnTimeout       = 90 * time.Second
	// Off disables a listener or a log ("--http-listen off").
	Off = "off"
)

// Config is the whole configuration of one tlsedge process.
type Config struct {
	// Listen is the TLS listener address (default ":443").
	Listen string `yaml:"listen,omitempty"`
	// HTTPListen is the plain-HTTP listener that redirects to HTTPS
	// (default ":80"; "off" disables it).
	HTTPListen string `yaml:"http_listen,omitempty"`
	// StateDir holds generated state: the local CA, sticky keys.
	// Default: $XDG_STATE_HOME/tlsedge, or /var/lib/tlsedge for root.
	StateDir string `yaml:"state_dir,omitempty"`
	// StickyKeyFile holds the sticky-cookie keys, one per line, the first
	// signs. Default: <state_dir>/sticky.keys, generated once.
	StickyKeyFile string `yaml:"sticky_key_file,omitempty"`
	// Storage is where ACME certificates, accounts and locks live: "" for
	// files under <state_dir>/acme, or redis://[user:pass@]host:port/db
	// (rediss:// for TLS) so that several instances share them.
	Storage string `yaml:"storage,omitempty"`
	// Cluster tunes what instances sharing a redis:// storage share.
	Cluster Cluster `yaml:"cluster,omitempty"`
	// Admin is the admin listener: status page, JSON API, /metrics
	// (default 127.0.0.1:2019; "off" disables it). Never a public port.
	Admin string `yaml:"admin,omitempty"`
	// AdminTokenFile holds the token the admin API's changes require
	// (Authorization: Bearer TOKEN). Without it the API is read-only.
	AdminTokenFile string `yaml:"admin_token_file,omitempty"`
	// ShutdownTimeout is how long requests in flight get to finish when
	// tlsedge stops or hands over to a new binary (default 10s).
	ShutdownTimeout Duration `yaml:"shutdown_timeout,omitempty"`
	// ShutdownDelay is how long a stopping instance keeps serving while
	// /healthz already answers 503, so that a balancer in front takes it
	// out before a connection is refused (default 0: stop at once). Set it
	// to the balancer's health-check interval times its fall count.
	ShutdownDelay Duration `yaml:"shutdown_delay,omitempty"`

	TLS      TLS      `yaml:"tls,omitempty"`
	Frontend Frontend `yaml:"frontend,omitempty"`
	Upstream Upstream `yaml:"upstream,omitempty"`
	Log      Log      `yaml:"log,omitempty"`
	Apps     []App    `yaml:"apps"`
	// TCP are TCP-mode services (stunnel's job).
	TCP []TCPService `yaml:"tcp,omitempty"`
}

// TLS says where certificates come from: files first, then ACME for apps
// with tls=auto (the default when an ACME email is given), then the local
// CA for apps with tls=internal (the default otherwise).
type TLS struct {
	Certs []CertPair `yaml:"certs,omitempty"`
	// CertDir is a folder of NAME.crt + NAME.key (or NAME.pem) files,
	// reloaded when they change.
	CertDir string `yaml:"cert_dir,omitempty"`
	ACME    ACME   `yaml:"acme,omitempty"`
	// OnDemand obtains certificates at the first handshake for names that
	// are not configured, when an allowlist or ask URL allows them.
	OnDemand OnDemand `yaml:"on_demand,omitempty"`
	// ImportAutocert is an x/crypto/acme/autocert cache directory whose
	// certificates are served and handed to ACME storage at start-up.
	ImportAutocert string `yaml:"import_autocert,omitempty"`
}

// CertPair is one PEM certificate chain and its key.
type CertPair struct {
	// Cert is the PEM certificate chain file, Key its private key file.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Upstream holds the connection settings shared by every backend pool.
type Upstream struct {
	// DialTimeout bounds a connection to a backend (default 5s).
	DialTimeout Duration `yaml:"dial_timeout,omitempty"`
	// ResponseHeaderTimeout bounds how long a backend may think before
	// its response head (default 60s).
	ResponseHeaderTimeout Duration `yaml:"response_header_timeout,omitempty"`
	// IdleConnTimeout closes idle backend connections (default 90s).
	IdleConnTimeout Duration `yaml:"idle_conn_timeout,omitempty"`
}

// Log configures the process log and the access log.
type Log struct {
	// Level: debug, info, warn, error (default info).
	Level string `yaml:"level,omitempty"`
	// Format: text, json, or "" for text on a terminal and JSON otherwise.
	Format string `yaml:"format,omitempty"`
	// AccessLog: a file path, "stdout", "off", or a syslog destination
	// (syslog://host:port, syslog+tcp://host:port, unixgram:///dev/log)
	// (default stdout).
	AccessLog string `yaml:"access_log,omitempty"`
	// AccessFormat: text (default), json, common, combined, or a template
	// with named fields like "{client_ip} {status} {duration_ms}".
	AccessFormat string `yaml:"access_format,omitempty"`
	// Output is where the process log goes: stderr (default), a file, or
	// a syslog destination as for AccessLog.
	Output string `yaml:"output,omitempty"`
}

// App is one site: the hosts and path prefix it answers, and its backends.
// Every field is also an --app option of the same name (see options.go).
type App struct {
	// Name identifies the app in logs and errors (default: HOST[/PATH]).
	Name string `yaml:"name,omitempty"`
	// Hosts are exact names or "*.example.com" wildcards (one label).
	Hosts []string `yaml:"hosts"`
	// Path is a path prefix matched on segment boundaries (default "/").
	Path     string    `yaml:"path,omitempty"`
	Backends []Backend `yaml:"backends"`
	// Sticky turns on cookie affinity; nil means off.
	Sticky *Sticky `yaml:"sticky,omitempty"`
	// StickyMaxAge ends a sticky session this long after it began.
	StickyMaxAge Duration `yaml:"sticky_max_age,omitempty"`
	// StickyIdle ends a sticky session after this long without a request.
	StickyIdle Duration `yaml:"sticky_idle,omitempty"`
	// TLS says where the app's certificates come from: auto (ACME),
	// internal (the local CA) or files. Default: files when a certificate
	// file covers the host, else auto when an ACME email is given, else
	// internal.
	TLS string `yaml:"tls,omitempty"`

	// Balance is the balancer: roundrobin (default), leastreq, p2c,
	// random or hash (with Hash).
	Balance string `yaml:"balance,omitempty"`
	// Hash is the key of balance=hash: ip, header:NAME, cookie:NAME or
	// param:NAME.
	Hash string `yaml:"hash,omitempty"`
	// SlowStart ramps a backend that comes back up over this long.
	SlowStart Duration `yaml:"slow_start,omitempty"`
	// MinActive is how many primary backends must be up for the backup
	// groups to stay idle (default 1).
	MinActive int `yaml:"min_active,omitempty"`
	// Health turns on active health checks.
	Health *Health `yaml:"health,omitempty"`
	// PassiveFails failed answers in a row eject a backend (default 5);
	// Passive5xx counts 5xx answers as failed.
	PassiveFails int  `yaml:"passive_fails,omitempty"`
	Passive5xx   bool `yaml:"passive_5xx,omitempty"`
	// MaxConns caps each backend's concurrent requests; the rest wait in
	// a queue of Queue requests (default 256) for QueueTimeout (5s).
	MaxConns            int      `yaml:"max_conns,omitempty"`
	Queue               int      `yaml:"queue,omitempty"`
	QueueTimeout        Duration `yaml:"queue_timeout,omitempty"`
	QueuePriorityPaths  []string `yaml:"queue_priority_paths,omitempty"`
	QueuePriorityHeader string   `yaml:"queue_priority_header,omitempty"`
	// Protocol to the backends: http1 (default), h2 (HTTP/2 over TLS,
	// with backend_tls) or h2c (HTTP/2 in clear text), e.g. for gRPC.
	Protocol string `yaml:"protocol,omitempty"`
	// Resolve re-resolves backend names (A/AAAA, SRV) this often; 0
	// resolves when connecting (SRV: once at start).
	Resolve Duration `yaml:"resolve,omitempty"`
	// BackendTLS re-encrypts towards the backends; nil is plain HTTP.
	BackendTLS *BackendTLS `yaml:"backend_tls,omitempty"`
	// HideHeaders are response headers removed (default: Server,
	// X-Powered-By and the like; "none" keeps everything).
	HideHeaders []string `yaml:"hide_headers,omitempty"`
	// HSTS is Strict-Transport-Security's max-age, like 8760h, or "off"
	// (default 8760h: one year); HSTSSubdomains adds includeSubDomains.
	HSTS           string `yaml:"hsts,omitempty"`
	HSTSSubdomains bool   `yaml:"hsts_subdomains,omitempty"`
	// SecurityHeaders adds X-Content-Type-Options, Referrer-Policy and
	// X-Frame-Options; CSP sets Content-Security-Policy.
	SecurityHeaders bool   `yaml:"security_headers,omitempty"`
	CSP             string `yaml:"csp,omitempty"`
	// Allow and Deny are client networks (CIDR or addresses): with Allow,
	// only those clients are served; Deny refuses (403).
	Allow []string `yaml:"allow,omitempty"`
	Deny  []string `yaml:"deny,omitempty"`
	// MaxBody limits request bodies, like 10M (default: no limit).
	MaxBody string `yaml:"max_body,omitempty"`
	// Methods is the method allowlist (default GET, HEAD, POST, PUT,
	// DELETE, PATCH, OPTIONS; others get 405).
	Methods []string `yaml:"methods,omitempty"`
	// RequestID adds X-Request-Id ("on", default) or not ("off").
	RequestID string `yaml:"request_id,omitempty"`
	// RetryBudget caps retries as a share of requests, like "20%".
	RetryBudget string `yaml:"retry_budget,omitempty"`

	Filters `yaml:",inline"`
}

// Backend is one origin server of an app. In both spellings it may be
// written "host:port" or "host:port*WEIGHT".
type Backend struct {
	// Addr is host:port (a name is resolved when connecting, or every
	// `resolve` interval).
	Addr string `yaml:"addr"`
	// Weight is the backend's share, 1-256 (default 1).
	Weight int `yaml:"weight,omitempty"`
	// ID names the backend in sticky cookies. Default: derived from the
	// address, so every instance with the same configuration agrees.
	ID string `yaml:"id,omitempty"`
	// Priority 0 is a primary; 1, 2, ... are backup groups.
	Priority int `yaml:"priority,omitempty"`
	// SRV makes Addr a DNS SRV name (no port): its targets are the
	// backends, with their priorities and weights.
	SRV bool `yaml:"srv,omitempty"`
}

// Sticky is cookie affinity. In the file, "sticky: true" or
// "sticky: COOKIENAME" (or the mapping form {cookie: NAME}).
type Sticky struct {
	// Cookie is the cookie's name (default tlsedge_sticky).
	Cookie string `yaml:"cookie,omitempty"`
}

// Route is the host and path an app answers, as written on the command line.
func (a *App) Route() string {
	host := ""
	if len(a.Hosts) > 0 {
		host = a.Hosts[0]
	}
	if a.Path == "" || a.Path == "/" {
		return host
	}
	return host + a.Path
}

// CookieName is the sticky cookie's name (the default when unset).
func (s *Sticky) CookieName() string {
	if s == nil || s.Cookie == "" {
		return DefaultStickyName
	}
	return s.Cookie
}
