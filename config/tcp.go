package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// TCPService is one TCP-mode service, the stunnel replacement: a listener
// that terminates TLS (or not, with Plain) and forwards the bytes to a
// pool of backends, plain or re-encrypted. Several services may share a
// TLS listener, routed by SNI (Hosts). Every field is also a --tcp option
// of the same name.
type TCPService struct {
	// Name identifies the service in logs (default: its listen address).
	Name string `yaml:"name,omitempty"`
	// Listen is the address; with Plain unset, TLS is terminated there
	// with tlsedge's certificates.
	Listen string `yaml:"listen"`
	// Hosts are the SNI names this service answers on a shared listener;
	// empty: every name (the listener's default service). They get
	// certificates like apps' hosts.
	Hosts    []string  `yaml:"hosts,omitempty"`
	Backends []Backend `yaml:"backends"`
	// Plain accepts plain TCP (stunnel's client mode: usually with
	// BackendTLS).
	Plain bool `yaml:"plain,omitempty"`
	// TLS is where the certificates of Hosts come from, as for apps.
	TLS        string      `yaml:"tls,omitempty"`
	BackendTLS *BackendTLS `yaml:"backend_tls,omitempty"`
	// ProxyProtocol sends a PROXY header (1 or 2) to the backend.
	ProxyProtocol int `yaml:"proxy_protocol,omitempty"`
	// IdleTimeout closes a connection silent this long (default 1h).
	IdleTimeout Duration `yaml:"idle_timeout,omitempty"`
	Balance     string   `yaml:"balance,omitempty"`
	// HealthInterval turns on TCP-connect health checks.
	HealthInterval Duration `yaml:"health_interval,omitempty"`
}

// tcpOptions are the --tcp options; the names are the file's fields.
func tcpOptions() []option[TCPService] {
	str := func(f func(*TCPService) *string) func(*TCPService, string, bool) error {
		return func(s *TCPService, v string, has bool) error {
			if !has || v == "" {
				return errors.New("needs a value")
			}
			*f(s) = v
			return nil
		}
	}
	flag := func(f func(*TCPService) *bool) func(*TCPService, string, bool) error {
		return func(s *TCPService, v string, has bool) error {
			if has {
				return errors.New("takes no value")
			}
			*f(s) = true
			return nil
		}
	}
	dur := func(f func(*TCPService) *Duration) func(*TCPService, string, bool) error {
		return func(s *TCPService, v string, has bool) error {
			d, err := ParseDuration(v)
			if !has || err != nil {
				return errors.New("needs a duration, like 30s")
			}
			*f(s) = d
			return nil
		}
	}
	btls := func(s *TCPService) *BackendTLS {
		if s.BackendTLS == nil {
			s.BackendTLS = &BackendTLS{}
		}
		return s.BackendTLS
	}
	return []option[TCPService]{
		{"name", "name=NAME", "the service's name in logs (default LISTEN)", str(func(s *TCPService) *string { return &s.Name })},
		{"hosts", "hosts=NAME[,NAME...]", "SNI names this service answers on a shared TLS listener (default: all)", func(s *TCPService, v string, has bool) error {
			if !has || v == "" {
				return errors.New("needs names")
			}
			s.Hosts = strings.Split(strings.ToLower(v), ",")
			return nil
		}},
		{"plain", "plain", "accept plain TCP, no TLS (stunnel's client mode, with backend_tls)", flag(func(s *TCPService) *bool { return &s.Plain })},
		{"tls", "tls=auto|internal|files", "where the certificates of hosts come from, as for --app", str(func(s *TCPService) *string { return &s.TLS })},
		{"backend_tls", "backend_tls", "TLS to the backends (verified against the system roots or backend_ca)", func(s *TCPService, v string, has bool) error {
			if has {
				return errors.New("takes no value")
			}
			btls(s)
			return nil
		}},
		{"backend_ca", "backend_ca=FILE", "PEM roots to verify the backends with; implies backend_tls", str(func(s *TCPService) *string { return &btls(s).CA })},
		{"backend_sni", "backend_sni=NAME", "SNI and verified name towards the backends; implies backend_tls", str(func(s *TCPService) *string { return &btls(s).ServerName })},
		{"backend_cert", "backend_cert=FILE", "client certificate towards the backends (mutual TLS)", str(func(s *TCPService) *string { return &btls(s).Cert })},
		{"backend_key", "backend_key=FILE", "its key", str(func(s *TCPService) *string { return &btls(s).Key })},
		{"backend_insecure", "backend_insecure", "TLS to the backends without verification (warned at start-up)", flag(func(s *TCPService) *bool { return &btls(s).Insecure })},
		{"proxy_protocol", "proxy_protocol=1|2", "send a PROXY protocol v1 or v2 header to the backend, so it sees the client's address", func(s *TCPService, v string, has bool) error {
			if v != "1" && v != "2" {
				return errors.New("want proxy_protocol=1 or proxy_protocol=2")
			}
			s.ProxyProtocol = int(v[0] - '0')
			return nil
		}},
		{"idle_timeout", "idle_timeout=DURATION", "close a connection silent this long (default 1h)", dur(func(s *TCPService) *Duration { return &s.IdleTimeout })},
		{"balance", "balance=NAME", "roundrobin (default), leastreq, random", str(func(s *TCPService) *string { return &s.Balance })},
		{"health_interval", "health_interval=DURATION", "TCP-connect health checks this often", dur(func(s *TCPService) *Duration { return &s.HealthInterval })},
	}
}

// TCPOptions lists the --tcp options for help texts and documentation.
func TCPOptions() []AppOption { return describeOptions(tcpOptions()) }

// ParseTCP reads one --tcp value: LISTEN=BACKEND[,BACKEND...][;OPTION...].
func ParseTCP(spec string) (TCPService, error) {
	var s TCPService
	listen, rest, ok := strings.Cut(spec, "=")
	if !ok {
		return s, &FieldError{App: spec, Field: "--tcp", Value: spec, Err: fmt.Errorf("%w: want LISTEN=BACKEND[,BACKEND...][;OPTION...]", ErrSyntax)}
	}
	s.Listen = strings.TrimSpace(listen)
	parts := strings.Split(rest, ";")
	bs, err := parseBackends(s.Listen, parts[0])
	if err != nil {
		return s, err
	}
	s.Backends = bs
	return s, applyOptions(&s, s.Listen, "--tcp ", parts[1:], tcpOptions())
}

// normalize fills in the service's defaults.
func (s *TCPService) normalize() {
	if s.Name == "" {
		s.Name = s.Listen
	}
	for i, h := range s.Hosts {
		s.Hosts[i] = strings.TrimSuffix(strings.ToLower(h), ".")
	}
	if s.Balance == "" {
		s.Balance = "roundrobin"
	}
	s.TLS = strings.ToLower(s.TLS)
	normalizeBackends(s.Backends)
}

// validate checks one TCP service; listeners maps listen addresses to the
// services on them, to check that a shared listener routes by SNI.
func (s *TCPService) validate(c *Config, add func(app, field, value string, err error)) {
	if err := checkListen(s.Listen); err != nil {
		add(s.Name, "listen", s.Listen, err)
	}
	if s.Listen == c.Listen || (c.HTTPListen != Off && s.Listen == c.HTTPListen) {
		add(s.Name, "listen", s.Listen, errors.New("already the HTTPS or HTTP listener: a TCP service needs its own address"))
	}
	if len(s.Backends) == 0 {
		add(s.Name, "backends", "", errors.New("a TCP service needs at least one backend"))
	}
	for i, b := range s.Backends {
		if err := checkHostPort(b.Addr); err != nil {
			add(s.Name, "backends["+strconv.Itoa(i)+"]", b.Addr, err)
		}
	}
	for i, h := range s.Hosts {
		if err := checkHost(h); err != nil || h == AnyHost {
			if err == nil {
				err = errors.New("leave hosts out for the listener's default service")
			}
			add(s.Name, "hosts["+strconv.Itoa(i)+"]", h, err)
		}
	}
	if s.Plain && len(s.Hosts) > 0 {
		add(s.Name, "hosts", strings.Join(s.Hosts, ","), errors.New("a plain listener sees no SNI: hosts need TLS on the listener"))
	}
	switch s.Balance {
	case "roundrobin", "leastreq", "random", "p2c":
	default:
		add(s.Name, "balance", s.Balance, errors.New("want roundrobin, leastreq, p2c or random"))
	}
	switch s.TLS {
	case "", TLSAuto, TLSInternal, TLSFiles:
	default:
		add(s.Name, "tls", s.TLS, errors.New("want auto, internal or files"))
	}
	if s.ProxyProtocol != 0 && s.ProxyProtocol != 1 && s.ProxyProtocol != 2 {
		add(s.Name, "proxy_protocol", strconv.Itoa(s.ProxyProtocol), errors.New("want 1 or 2"))
	}
	if s.IdleTimeout < 0 || s.HealthInterval < 0 {
		add(s.Name, "idle_timeout", s.IdleTimeout.String(), errors.New("must not be negative"))
	}
	if bt := s.BackendTLS; bt != nil && (bt.Cert == "") != (bt.Key == "") {
		add(s.Name, "backend_cert", bt.Cert, errors.New("a client certificate needs both backend_cert and backend_key"))
	}
}

// validateTCP checks every TCP service and the sharing of listeners: a
// plain listener serves one service; a TLS listener routes by SNI, with
// distinct hosts and at most one service without hosts (its default).
func (c *Config) validateTCP(add func(app, field, value string, err error)) {
	byListen := map[string][]*TCPService{}
	var order []string
	for i := range c.TCP {
		s := &c.TCP[i]
		s.validate(c, add)
		if _, seen := byListen[s.Listen]; !seen {
			order = append(order, s.Listen)
		}
		byListen[s.Listen] = append(byListen[s.Listen], s)
	}
	for _, listen := range order {
		svcs := byListen[listen]
		hosts := map[string]string{}
		defaults := 0
		for _, s := range svcs {
			if s.Plain && len(svcs) > 1 {
				add(s.Name, "listen", listen, errors.New("a plain listener serves one service (no SNI to route by)"))
			}
			if len(s.Hosts) == 0 {
				defaults++
			}
			for _, h := range s.Hosts {
				if other, dup := hosts[h]; dup {
					add(s.Name, "hosts", h, fmt.Errorf("already served on %s by %q", listen, other))
				}
				hosts[h] = s.Name
			}
		}
		if defaults > 1 {
			add(svcs[0].Name, "listen", listen, errors.New("several services without hosts on one listener: give each hosts= to route by SNI"))
		}
	}
}

// TCPListens lists the distinct listen addresses of the TCP services, in
// configuration order.
func (c *Config) TCPListens() []string {
	var out []string
	seen := map[string]bool{}
	for _, t := range c.TCP {
		if !seen[t.Listen] {
			seen[t.Listen] = true
			out = append(out, t.Listen)
		}
	}
	return out
}
