package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Balancers are the names `balance` accepts (upstream.BalancerNames, kept
// in step by a test in tlsedge).
var Balancers = []string{"roundrobin", "leastreq", "p2c", "random", "hash"}

// Health is an app's active health check; see upstream.HealthConfig for
// the defaults. In the file "health: /healthz" or a mapping.
type Health struct {
	// Path is what is requested of each backend, like /healthz.
	Path string `yaml:"path,omitempty"`
	// Interval is the time between two checks of a backend; Timeout how
	// long one check may take.
	Interval Duration `yaml:"interval,omitempty"`
	Timeout  Duration `yaml:"timeout,omitempty"`
	// Status is the expected range, "200-399" (default) or one code.
	Status string `yaml:"status,omitempty"`
	Body   string `yaml:"body,omitempty"`
	Rise   int    `yaml:"rise,omitempty"`
	Fall   int    `yaml:"fall,omitempty"`
}

// UnmarshalYAML accepts a path or a mapping.
func (h *Health) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*h = Health{Path: n.Value}
		return nil
	}
	type plain Health
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*h = Health(p)
	return nil
}

// StatusRange parses Status ("" is 200-399).
func (h *Health) StatusRange() (lo, hi int, err error) {
	if h.Status == "" {
		return 200, 399, nil
	}
	a, b, isRange := strings.Cut(h.Status, "-")
	if lo, err = strconv.Atoi(a); err != nil || lo < 100 || lo > 599 {
		return 0, 0, fmt.Errorf("want a status like 200 or a range like 200-399, got %q", h.Status)
	}
	hi = lo
	if isRange {
		if hi, err = strconv.Atoi(b); err != nil || hi < lo || hi > 599 {
			return 0, 0, fmt.Errorf("want a range like 200-399, got %q", h.Status)
		}
	}
	return lo, hi, nil
}

// BackendTLS re-encrypts: connections to the app's backends are TLS. In
// the file "backend_tls: true" or a mapping.
type BackendTLS struct {
	// CA is a PEM file of roots to verify backends with (default: the
	// system roots).
	CA string `yaml:"ca,omitempty"`
	// ServerName is sent as SNI and verified (default: the backend host).
	ServerName string `yaml:"server_name,omitempty"`
	// Cert and Key are a client certificate (mutual TLS).
	Cert string `yaml:"cert,omitempty"`
	Key  string `yaml:"key,omitempty"`
	// Insecure verifies nothing (a warning is logged at start-up).
	Insecure bool `yaml:"insecure,omitempty"`
}

// UnmarshalYAML accepts true, false or a mapping.
func (b *BackendTLS) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		switch n.Value {
		case "true", "yes", "on":
			*b = BackendTLS{}
			return nil
		}
		return fmt.Errorf("line %d: backend_tls is true or a mapping {ca, server_name, cert, key, insecure}, got %q", n.Line, n.Value)
	}
	type plain BackendTLS
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*b = BackendTLS(p)
	return nil
}

// backendTLSOf returns the app's backend TLS settings, creating them.
func backendTLSOf(a *App) *BackendTLS {
	if a.BackendTLS == nil {
		a.BackendTLS = &BackendTLS{}
	}
	return a.BackendTLS
}

// HashSource is where the consistent hash takes its key.
type HashSource struct {
	Kind string // "ip", "header", "cookie" or "param"
	Name string // the header, cookie or parameter name
}

// ParseHash reads "ip", "header:NAME", "cookie:NAME" or "param:NAME".
func ParseHash(s string) (HashSource, error) {
	kind, name, _ := strings.Cut(s, ":")
	switch kind {
	case "ip":
		if name != "" {
			return HashSource{}, errors.New("hash=ip takes no name")
		}
		return HashSource{Kind: kind}, nil
	case "header", "cookie", "param":
		if name == "" {
			return HashSource{}, fmt.Errorf("hash=%s needs a name, like hash=%s:NAME", kind, kind)
		}
		return HashSource{Kind: kind, Name: name}, nil
	}
	return HashSource{}, fmt.Errorf("want hash=ip, hash=header:NAME, hash=cookie:NAME or hash=param:NAME, got %q", s)
}

// ParsePercent reads "20%" (or "0.2") as a ratio.
func ParsePercent(s string) (float64, error) {
	v, pct := strings.CutSuffix(s, "%")
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, fmt.Errorf("want a percentage like 20%%, got %q", s)
	}
	if pct {
		f /= 100
	}
	if f < 0 || f > 10 {
		return 0, fmt.Errorf("want 0%% to 1000%%, got %q", s)
	}
	return f, nil
}

// DefaultHSTS is the default max-age of Strict-Transport-Security.
const DefaultHSTS = "8760h"

// normalizePools fills in the pool and response defaults of an app.
func (a *App) normalizePools() {
	if a.HSTS == "" {
		a.HSTS = DefaultHSTS
	}
	if a.RequestID == "" {
		a.RequestID = "on"
	}
	a.Balance = strings.ToLower(a.Balance)
	if a.Balance == "" && a.Hash != "" {
		a.Balance = "hash"
	}
	if a.Balance == "" {
		a.Balance = "roundrobin"
	}
}

// validatePools checks the pool settings of an app.
func (a *App) validatePools(add func(field, value string, err error)) {
	known := false
	for _, b := range Balancers {
		known = known || a.Balance == b
	}
	if !known {
		add("balance", a.Balance, fmt.Errorf("want one of %s", strings.Join(Balancers, ", ")))
	}
	if a.Hash != "" {
		if _, err := ParseHash(a.Hash); err != nil {
			add("hash", a.Hash, err)
		} else if a.Balance != "hash" {
			add("hash", a.Hash, errors.New("hash sets the key of balance=hash; it has no effect with balance="+a.Balance))
		}
	} else if a.Balance == "hash" {
		add("balance", a.Balance, errors.New("balance=hash needs hash=ip, hash=header:NAME, hash=cookie:NAME or hash=param:NAME"))
	}
	if a.SlowStart < 0 {
		add("slow_start", a.SlowStart.String(), errors.New("must not be negative"))
	}
	primaries := 0
	for i, b := range a.Backends {
		if b.Priority < 0 {
			add("backends["+strconv.Itoa(i)+"].priority", strconv.Itoa(b.Priority), errors.New("a priority is 0 (primary) or more (backup groups)"))
		}
		if b.Priority == 0 {
			primaries++
		}
	}
	if a.MinActive < 0 || a.MinActive > len(a.Backends) {
		add("min_active", strconv.Itoa(a.MinActive), fmt.Errorf("want 1 to the number of backends (%d)", len(a.Backends)))
	}
	if h := a.Health; h != nil {
		if h.Path == "" {
			add("health", "", errors.New("health_* options need the check's path: health=/healthz"))
		} else if !strings.HasPrefix(h.Path, "/") {
			add("health", h.Path, errors.New("a health check path starts with /"))
		}
		if _, _, err := h.StatusRange(); err != nil {
			add("health_status", h.Status, err)
		}
		if h.Interval < 0 || h.Timeout < 0 || (h.Timeout > 0 && h.Interval > 0 && h.Timeout >= h.Interval) {
			add("health_timeout", h.Timeout.String(), errors.New("the timeout must be shorter than the interval"))
		}
		if h.Rise < 0 || h.Fall < 0 {
			add("health_rise", strconv.Itoa(h.Rise), errors.New("rise and fall are counts of 1 or more"))
		}
	}
	if a.PassiveFails < 0 {
		add("passive_fails", strconv.Itoa(a.PassiveFails), errors.New("must not be negative"))
	}
	if a.MaxConns < 0 {
		add("max_conns", strconv.Itoa(a.MaxConns), errors.New("must not be negative"))
	}
	if a.MaxConns == 0 && (a.Queue != 0 || a.QueueTimeout != 0 || len(a.QueuePriorityPaths) > 0 || a.QueuePriorityHeader != "") {
		add("queue", strconv.Itoa(a.Queue), errors.New("the queue options need max_conns"))
	}
	if a.Queue < 0 || a.QueueTimeout < 0 {
		add("queue", strconv.Itoa(a.Queue), errors.New("must not be negative"))
	}
	for i, p := range a.QueuePriorityPaths {
		if !strings.HasPrefix(p, "/") {
			add("queue_priority_paths["+strconv.Itoa(i)+"]", p, errors.New("a path prefix starts with /"))
		}
	}
	switch a.Protocol {
	case "", "http1", "h2c":
		if a.Protocol == "h2c" && a.BackendTLS != nil {
			add("protocol", a.Protocol, errors.New("h2c is HTTP/2 without TLS; with backend_tls use protocol=h2"))
		}
	case "h2":
		if a.BackendTLS == nil {
			add("protocol", a.Protocol, errors.New("h2 is HTTP/2 over TLS: add backend_tls (or use h2c for clear text)"))
		}
	default:
		add("protocol", a.Protocol, errors.New("want http1, h2 or h2c"))
	}
	if bt := a.BackendTLS; bt != nil {
		if (bt.Cert == "") != (bt.Key == "") {
			add("backend_cert", bt.Cert, errors.New("a client certificate needs both backend_cert and backend_key"))
		}
		if bt.Insecure && (bt.CA != "" || bt.ServerName != "") {
			add("backend_insecure", "true", errors.New("backend_insecure verifies nothing: backend_ca and backend_sni would be ignored"))
		}
	}
	if a.HSTS != Off {
		if d, err := ParseDuration(a.HSTS); err != nil || d <= 0 {
			add("hsts", a.HSTS, errors.New("want a max-age like 8760h, or off"))
		}
	}
	if a.MaxBody != "" {
		if _, err := ParseSize(a.MaxBody); err != nil {
			add("max_body", a.MaxBody, err)
		}
	}
	for i, m := range a.Methods {
		if validCookieName(m) != nil { // a cookie name is a token too
			add("methods["+strconv.Itoa(i)+"]", m, errors.New("a method is a token, like GET"))
		}
	}
	if a.RequestID != "on" && a.RequestID != Off {
		add("request_id", a.RequestID, errors.New("want on or off"))
	}
	if a.RetryBudget != "" {
		if _, err := ParsePercent(a.RetryBudget); err != nil {
			add("retry_budget", a.RetryBudget, err)
		}
	}
}

// ParseSize reads a byte count: digits with an optional K, M or G
// (binary: 1K = 1024).
func ParseSize(s string) (int64, error) {
	mult := int64(1)
	num := s
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'k', 'K':
			mult, num = 1<<10, s[:n-1]
		case 'm', 'M':
			mult, num = 1<<20, s[:n-1]
		case 'g', 'G':
			mult, num = 1<<30, s[:n-1]
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < 1 || v > (1<<62)/mult {
		return 0, fmt.Errorf("want a size like 512K, 10M or 1G, got %q", s)
	}
	return v * mult, nil
}
