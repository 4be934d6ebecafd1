package upstream

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// Defaults of HealthConfig; see the field docs for the reasoning.
const (
	DefaultHealthInterval  = 5 * time.Second
	DefaultHealthTimeout   = 2 * time.Second
	DefaultHealthStatusMin = 200
	DefaultHealthStatusMax = 399
	DefaultHealthRise      = 2
	DefaultHealthFall      = 3
)

// HealthConfig describes the active health check of a pool. The zero value
// is an HTTP GET of "/" every 5s. StartHealth copies what it needs (and
// clones TLS), so the caller keeps ownership of the struct and may reuse it.
type HealthConfig struct {
	// Path is the path, with an optional query, that an HTTP check GETs,
	// e.g. "/healthz". Empty means "/". It must be empty when TCP is set.
	Path string

	// TCP makes the check a TCP connect and nothing else, for backends that
	// do not speak HTTP (TCP forwarding). Path, Body, Host, StatusMin,
	// StatusMax and TLS must then be zero: a setting that would be ignored
	// is a configuration mistake.
	TCP bool

	// Interval is the time between two checks of one backend. Default 5s:
	// with Fall 3 a dead backend is out within 15s, while a pool of 100
	// backends costs 20 requests a second.
	Interval time.Duration

	// Timeout bounds one check: connect, TLS handshake, request, response
	// head and body. It must be shorter than Interval so that checks of a
	// backend never overlap. Default 2s, or half the Interval if that is
	// shorter: a health endpoint answers in milliseconds, and one that takes
	// seconds is as good as down for live traffic.
	Timeout time.Duration

	// StatusMin and StatusMax are the range of response statuses that pass,
	// both included. Zero means 200 and 399: redirects pass (they are not
	// followed), as in HAProxy's and nginx's checks.
	StatusMin, StatusMax int

	// Body, if not empty, must appear in the first 64 KiB of the response
	// body for the check to pass.
	Body string

	// Rise is the number of consecutive passed checks that bring a down
	// backend up, Fall the number of consecutive failed checks that take an
	// up backend down. Defaults 2 and 3: one lost packet or one slow answer
	// does not flap a backend, and a restarted one is trusted only once it
	// has answered twice.
	Rise, Fall int

	// Host is the Host header of an HTTP check. Empty means the backend's
	// address. With TLS it is also the server name (SNI and certificate
	// verification) unless TLS.ServerName is set; without either the
	// backend's address host is verified, as net/http does.
	Host string

	// TLS, if not nil, makes the check HTTPS with this client configuration
	// (root CAs, client certificate, ServerName). Nil means plain HTTP.
	TLS *tls.Config
}

// healthBodyLimit is how much of a response body a check reads for Body.
const healthBodyLimit = 64 << 10

// healthUserAgent names the checks in backend access logs.
const healthUserAgent = "tlsedge-health"

func (c HealthConfig) interval() time.Duration {
	if c.Interval > 0 {
		return c.Interval
	}
	return DefaultHealthInterval
}

func (c HealthConfig) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return min(DefaultHealthTimeout, c.interval()/2)
}

func (c HealthConfig) statusMin() int {
	if c.StatusMin > 0 {
		return c.StatusMin
	}
	return DefaultHealthStatusMin
}

func (c HealthConfig) statusMax() int {
	if c.StatusMax > 0 {
		return c.StatusMax
	}
	return DefaultHealthStatusMax
}

func (c HealthConfig) rise() int {
	if c.Rise > 0 {
		return c.Rise
	}
	return DefaultHealthRise
}

func (c HealthConfig) fall() int {
	if c.Fall > 0 {
		return c.Fall
	}
	return DefaultHealthFall
}

func (c HealthConfig) path() string {
	if c.Path != "" {
		return c.Path
	}
	return "/"
}

// scheme is the URL scheme of an HTTP check.
func (c HealthConfig) scheme() string {
	if c.TLS != nil {
		return "https"
	}
	return "http"
}

// Validate reports the first invalid field of c, naming the field and its
// value. StartHealth calls it; a configuration checker may call it alone.
func (c HealthConfig) Validate() error {
	switch {
	case c.Interval < 0:
		return healthErrorf("Interval %s must not be negative", c.Interval)
	case c.Timeout < 0:
		return healthErrorf("Timeout %s must not be negative", c.Timeout)
	case c.Timeout > 0 && c.Timeout >= c.interval():
		return healthErrorf("Timeout %s must be shorter than Interval %s", c.Timeout, c.interval())
	case c.Rise < 0:
		return healthErrorf("Rise %d must be at least 1", c.Rise)
	case c.Fall < 0:
		return healthErrorf("Fall %d must be at least 1", c.Fall)
	}
	if c.TCP {
		return c.validateTCP()
	}
	for _, s := range []struct {
		name string
		v    int
	}{{"StatusMin", c.StatusMin}, {"StatusMax", c.StatusMax}} {
		if s.v != 0 && (s.v < 100 || s.v > 599) {
			return healthErrorf("%s %d out of range 100..599", s.name, s.v)
		}
	}
	if c.statusMin() > c.statusMax() {
		return healthErrorf("StatusMin %d is above StatusMax %d", c.statusMin(), c.statusMax())
	}
	if err := validateHealthPath(c.Path); err != nil {
		return err
	}
	if strings.IndexFunc(c.Host, badHostRune) >= 0 {
		return healthErrorf("Host %q is not a valid Host header", c.Host)
	}
	return nil
}

// validateTCP rejects the HTTP-only settings on a TCP check.
func (c HealthConfig) validateTCP() error {
	switch {
	case c.Path != "":
		return healthErrorf("TCP check takes no Path (%q)", c.Path)
	case c.Body != "":
		return healthErrorf("TCP check takes no Body (%q)", c.Body)
	case c.Host != "":
		return healthErrorf("TCP check takes no Host (%q)", c.Host)
	case c.StatusMin != 0 || c.StatusMax != 0:
		return healthErrorf("TCP check takes no StatusMin/StatusMax (%d-%d)", c.StatusMin, c.StatusMax)
	case c.TLS != nil:
		return healthErrorf("TCP check takes no TLS config")
	}
	return nil
}

// validateHealthPath accepts "" or an origin-form request target
// (RFC 9112, section 3.2.1): an absolute path with an optional query.
func validateHealthPath(p string) error {
	if p == "" {
		return nil
	}
	if p[0] != '/' || strings.IndexFunc(p, badPathRune) >= 0 {
		return healthErrorf("Path %q must be an absolute path such as \"/healthz\"", p)
	}
	if _, err := url.ParseRequestURI(p); err != nil {
		return healthErrorf("Path %q: %w", p, err)
	}
	return nil
}

// badPathRune is a character that cannot appear unescaped in a request
// target: controls, space, and the fragment mark (never sent).
func badPathRune(r rune) bool { return r <= ' ' || r == 0x7f || r == '#' }

// badHostRune is a character that cannot appear in a Host header.
func badHostRune(r rune) bool {
	return r <= ' ' || r == 0x7f || strings.ContainsRune("/?#@\\", r)
}

func healthErrorf(format string, args ...any) error {
	return fmt.Errorf("upstream: health check: "+format, args...)
}

// errHealthNoPool is StartHealth called without a pool.
var errHealthNoPool = errors.New("upstream: health check: no pool")

// String summarizes c with defaults resolved, for start-up logs:
// `https GET /healthz host example.com status 200-399 body "ok" every 5s
// timeout 2s rise 2 fall 3` or `tcp connect every 5s timeout 2s rise 2
// fall 3`.
func (c HealthConfig) String() string {
	var b strings.Builder
	if c.TCP {
		b.WriteString("tcp connect")
	} else {
		fmt.Fprintf(&b, "%s GET %s", c.scheme(), c.path())
		if c.Host != "" {
			b.WriteString(" host " + c.Host)
		}
		fmt.Fprintf(&b, " status %d-%d", c.statusMin(), c.statusMax())
		if c.Body != "" {
			fmt.Fprintf(&b, " body %q", c.Body)
		}
	}
	fmt.Fprintf(&b, " every %s timeout %s rise %d fall %d", c.interval(), c.timeout(), c.rise(), c.fall())
	return b.String()
}

// serverName is the name an HTTPS check verifies, "" for net/http's
// default (the host of the backend's address).
func (c HealthConfig) serverName() string {
	if c.TLS.ServerName != "" || c.Host == "" {
		return c.TLS.ServerName
	}
	if h, _, err := net.SplitHostPort(c.Host); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(c.Host, "["), "]")
}
