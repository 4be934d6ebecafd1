package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
)

// Normalize fills in every default, so that the Config says exactly what
// will run. stateDir is the default state directory (see DefaultStateDir).
func (c *Config) Normalize(stateDir string) {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.HTTPListen == "" {
		c.HTTPListen = DefaultHTTPListen
	}
	if c.StateDir == "" {
		c.StateDir = stateDir
	}
	if c.Admin == "" {
		c.Admin = DefaultAdmin
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = Duration(DefaultShutdownTimeout)
	}
	if c.StickyKeyFile == "" {
		c.StickyKeyFile = filepath.Join(c.StateDir, "sticky.keys")
	}
	if c.Upstream.DialTimeout == 0 {
		c.Upstream.DialTimeout = Duration(DefaultDialTimeout)
	}
	if c.Upstream.ResponseHeaderTimeout == 0 {
		c.Upstream.ResponseHeaderTimeout = Duration(DefaultResponseHeaderTimeout)
	}
	if c.Upstream.IdleConnTimeout == 0 {
		c.Upstream.IdleConnTimeout = Duration(DefaultIdleConnTimeout)
	}
	c.Frontend.normalize()
	if c.Log.Level == "" {
		c.Log.Level = DefaultLogLevel
	}
	if c.Log.AccessLog == "" {
		c.Log.AccessLog = DefaultAccessLog
	}
	for i := range c.Apps {
		a := &c.Apps[i]
		a.TLS = strings.ToLower(a.TLS)
		for j, h := range a.Hosts {
			a.Hosts[j] = strings.TrimSuffix(strings.ToLower(h), ".")
		}
		if a.Path == "" {
			a.Path = "/"
		}
		if a.Name == "" {
			a.Name = a.Route()
		}
		a.normalizePools()
		a.normalizeFilters()
		if a.Sticky != nil && a.Sticky.Cookie == stickyOff {
			a.Sticky = nil
		}
		if a.Sticky != nil && a.Sticky.Cookie == "" {
			a.Sticky.Cookie = DefaultStickyName
		}
		normalizeBackends(a.Backends)
	}
	for i := range c.TCP {
		c.TCP[i].normalize()
	}
	c.normalizeACME()
}

// normalizeBackends fills in weights and ids.
func normalizeBackends(bs []Backend) {
	for j := range bs {
		b := &bs[j]
		if b.Weight == 0 && !b.SRV { // an SRV target's weight is its record's
			b.Weight = 1
		}
		if b.ID == "" {
			b.ID = BackendID(b.Addr)
		}
	}
}

// BackendID derives a backend's sticky id from its address: stable across
// restarts and instances that share a configuration, and not the address
// itself (cookies are encrypted by default as well).
func BackendID(addr string) string {
	sum := sha256.Sum256([]byte("tlsedge backend\x00" + addr))
	return hex.EncodeToString(sum[:5])
}

// Validate checks a normalized Config and returns every problem found,
// joined; each is a *FieldError naming the app, the field and the value.
func (c *Config) Validate() error {
	var errs []error
	add := func(app, field, value string, err error) {
		errs = append(errs, &FieldError{App: app, Field: field, Value: value, Err: err})
	}
	if err := checkListen(c.Listen); err != nil {
		add("", "listen", c.Listen, err)
	}
	if c.HTTPListen != Off {
		if err := checkListen(c.HTTPListen); err != nil {
			add("", "http_listen", c.HTTPListen, err)
		}
	}
	if c.Admin != Off {
		if err := checkListen(c.Admin); err != nil {
			add("", "admin", c.Admin, err)
		} else if !strings.HasSuffix(c.Admin, ":0") && (c.Admin == c.Listen || c.Admin == c.HTTPListen) {
			add("", "admin", c.Admin, errors.New("the admin listener must not share a public listener's address"))
		}
	}
	c.Cluster.validate(func(field, value string, err error) { add("", field, value, err) })
	for i, p := range c.TLS.Certs {
		field := "tls.certs[" + strconv.Itoa(i) + "]"
		if p.Cert == "" {
			add("", field+".cert", p.Cert, errors.New("missing certificate file (every --key needs a --cert)"))
		}
		if p.Key == "" {
			add("", field+".key", p.Key, errors.New("missing key file (every --cert needs a --key)"))
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "warning", "error":
	default:
		add("", "log.level", c.Log.Level, errors.New("want debug, info, warn or error"))
	}
	switch c.Log.Format {
	case "", "text", "json":
	default:
		add("", "log.format", c.Log.Format, errors.New("want text or json"))
	}
	c.validateACME(add)
	c.Frontend.validate(add)
	c.validateTCP(add)
	if len(c.Apps) == 0 && len(c.TCP) == 0 {
		errs = append(errs, errors.New("no apps configured: give at least one --app HOST=BACKEND (or --tcp LISTEN=BACKEND), or an apps: list in the config file"))
	}
	routes := map[string]string{}
	for i := range c.Apps {
		errs = append(errs, c.Apps[i].validate(routes)...)
	}
	return errors.Join(errs...)
}

func (a *App) validate(routes map[string]string) []error {
	var errs []error
	add := func(field, value string, err error) {
		errs = append(errs, &FieldError{App: a.Name, Field: field, Value: value, Err: err})
	}
	if len(a.Hosts) == 0 {
		add("hosts", "", errors.New("an app needs at least one host"))
	}
	for i, h := range a.Hosts {
		if err := checkHost(h); err != nil {
			add("hosts["+strconv.Itoa(i)+"]", h, err)
			continue
		}
		key := h + a.Path
		if other, dup := routes[key]; dup {
			add("hosts["+strconv.Itoa(i)+"]", h, fmt.Errorf("host and path %s are already served by app %q", key, other))
		}
		routes[key] = a.Name
	}
	if !strings.HasPrefix(a.Path, "/") {
		add("path", a.Path, errors.New("a path prefix starts with /"))
	} else if strings.ContainsAny(a.Path, "?#% \t") || strings.Contains(a.Path, "//") || strings.Contains(a.Path, "/../") || strings.HasSuffix(a.Path, "/..") {
		add("path", a.Path, errors.New("a path prefix is a plain path: no query, fragment, escapes, spaces, // or .. segments"))
	}
	if len(a.Backends) == 0 {
		add("backends", "", errors.New("an app needs at least one backend"))
	}
	ids := map[string]int{}
	for i, b := range a.Backends {
		field := "backends[" + strconv.Itoa(i) + "]"
		if b.SRV {
			if err := checkHost(b.Addr); err != nil || strings.Contains(b.Addr, ":") {
				add(field, b.Addr, errors.New("an SRV backend is a DNS name without a port, like _http._tcp.example.com"))
			}
		} else if err := checkHostPort(b.Addr); err != nil {
			add(field, b.Addr, err)
		}
		if b.SRV && (b.Weight != 0 || b.Priority != 0) {
			add(field+".weight", strconv.Itoa(b.Weight), errors.New("an SRV backend's weights and priorities come from its records"))
		} else if !b.SRV && (b.Weight < 1 || b.Weight > MaxWeight) {
			add(field+".weight", strconv.Itoa(b.Weight), fmt.Errorf("weight must be 1 to %d", MaxWeight))
		}
		if !validID(b.ID) {
			add(field+".id", b.ID, errors.New("an id is 1-64 letters, digits, '-', '_' or '.'"))
		}
		if j, dup := ids[b.ID]; dup {
			add(field+".id", b.ID, fmt.Errorf("same id as backends[%d] (the same address twice? use a weight instead)", j))
		}
		ids[b.ID] = i
	}
	a.validatePools(add)
	a.validateFilters(add)
	if a.Sticky != nil {
		if err := validCookieName(a.Sticky.Cookie); err != nil {
			add("sticky", a.Sticky.Cookie, err)
		}
	} else if a.StickyMaxAge != 0 || a.StickyIdle != 0 {
		add("sticky", "off", errors.New("sticky_max_age and sticky_idle need sticky"))
	}
	return errs
}

func checkListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want [host]:port: %w", err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port must be 0-65535, got %q", port)
	}
	return nil
}

// AnyHost is the host pattern of an app that catches every host no other
// app matches, such as on-demand TLS's custom domains.
const AnyHost = "*"

// checkHost accepts DNS names, "*." wildcards of one label, IP addresses
// and AnyHost.
func checkHost(h string) error {
	if h == "" {
		return errors.New("empty host")
	}
	if net.ParseIP(h) != nil || h == AnyHost {
		return nil
	}
	name := strings.TrimPrefix(h, "*.")
	if strings.Contains(name, "*") {
		return errors.New("a wildcard is only allowed as the whole first label, like *.example.com")
	}
	if len(name) > 253 {
		return errors.New("longer than 253 characters")
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("bad label %q: labels are 1-63 characters", label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if !ok {
				return fmt.Errorf("bad character %q: host names use a-z, 0-9, '-' and '.'", c)
			}
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("bad label %q: a label neither starts nor ends with '-'", label)
		}
	}
	return nil
}

func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// validCookieName checks an RFC 6265 cookie-name (an RFC 7230 token).
func validCookieName(name string) error {
	if name == "" {
		return errors.New("empty cookie name")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return fmt.Errorf("character %q is not allowed in a cookie name", c)
		}
	}
	return nil
}

// FieldError is a configuration error that names where it is: the app
// (its name or route; empty for global settings), the field, and the bad
// value as written.
type FieldError struct {
	App   string
	Field string
	Value string
	Err   error
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.App != "" {
		b.WriteString("app ")
		b.WriteString(strconv.Quote(e.App))
		b.WriteString(": ")
	}
	b.WriteString(e.Field)
	b.WriteString(" ")
	b.WriteString(strconv.Quote(e.Value))
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *FieldError) Unwrap() error { return e.Err }
