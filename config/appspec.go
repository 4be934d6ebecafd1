package config

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
)

// ErrSyntax is wrapped by every error about how an --app value is written.
var ErrSyntax = errors.New("syntax error")

// MaxWeight bounds a backend's weight: the balancer's schedule has one slot
// per unit of weight, and 256 is HAProxy's limit too.
const MaxWeight = 256

// option is one ";name[=value]" of an --app (T = App) or --tcp (T =
// TCPService) spec. Its name is also the field's name in the config file,
// so the two spellings stay one model. Adding an option is adding one
// entry to appOptions or tcpOptions.
type option[T any] struct {
	name   string
	syntax string
	help   string
	// set applies the option; has reports whether "=value" was given.
	set func(t *T, value string, has bool) error
}

// appOptions lists the --app options in the order --help shows them.
// It is a function, not a package variable, so nothing can mutate it.
func appOptions() []option[App] {
	return append([]option[App]{
		{"name", "name=NAME", "the app's name in logs and errors (default HOST[/PATH])", func(a *App, v string, has bool) error {
			if !has || v == "" {
				return errors.New("needs a value: name=NAME")
			}
			a.Name = v
			return nil
		}},
		{"sticky", "sticky[=COOKIE]", "pin each user to one backend with a signed, encrypted cookie (default name " + DefaultStickyName + ")", func(a *App, v string, has bool) error {
			if has && v == "" {
				return errors.New("empty cookie name: write sticky or sticky=NAME")
			}
			a.Sticky = &Sticky{Cookie: v}
			return nil
		}},
		{"sticky_max_age", "sticky_max_age=DURATION", "a sticky session ends this long after it began (e.g. 24h; default: never)", durationOption(func(a *App) *Duration { return &a.StickyMaxAge })},
		{"sticky_idle", "sticky_idle=DURATION", "a sticky session ends after this long without a request (e.g. 30m; default: never)", durationOption(func(a *App) *Duration { return &a.StickyIdle })},
		{"balance", "balance=NAME", "the balancer: roundrobin (default), leastreq (fewest requests in flight), p2c (power of two choices on latency), random, hash", stringOption(func(a *App) *string { return &a.Balance })},
		{"hash", "hash=ip|header:NAME|cookie:NAME|param:NAME", "affinity without a cookie: consistent hashing (bounded loads) on this key; implies balance=hash", stringOption(func(a *App) *string { return &a.Hash })},
		{"slow_start", "slow_start=DURATION", "a backend that comes back (or is added) ramps up its share over this long (default: at once)", durationOption(func(a *App) *Duration { return &a.SlowStart })},
		{"backup", "backup=BACKEND[,BACKEND...]", "backup backends: they take traffic only while fewer than min_active primaries are up", func(a *App, v string, has bool) error {
			if !has || v == "" {
				return errors.New("needs backends: backup=HOST:PORT[,HOST:PORT...]")
			}
			for _, spec := range strings.Split(v, ",") {
				b, err := ParseBackend(strings.TrimSpace(spec))
				if err != nil {
					return err
				}
				b.Priority = 1
				a.Backends = append(a.Backends, b)
			}
			return nil
		}},
		{"resolve", "resolve=DURATION", "re-resolve backend names (A/AAAA, SRV) this often, updating the pool without a reload (default: resolve when connecting)", durationOption(func(a *App) *Duration { return &a.Resolve })},
		{"srv", "srv=NAME[,NAME...]", "backends from DNS SRV records (priorities become backup groups, weights are kept), e.g. srv=_http._tcp.example.com", func(a *App, v string, has bool) error {
			if !has || v == "" {
				return errors.New("needs SRV names: srv=_http._tcp.example.com")
			}
			for _, name := range strings.Split(v, ",") {
				a.Backends = append(a.Backends, Backend{Addr: strings.TrimSpace(name), SRV: true})
			}
			return nil
		}},
		{"min_active", "min_active=N", "how many primaries must be up for the backups to stay idle (default 1)", intOption(func(a *App) *int { return &a.MinActive })},
		{"health", "health=PATH", "active health checks: GET PATH on every backend (defaults: every 5s, timeout 2s, status 200-399, rise 2, fall 3)", func(a *App, v string, has bool) error {
			if !has || v == "" {
				return errors.New("needs a path: health=/healthz")
			}
			healthOf(a).Path = v
			return nil
		}},
		{"health_interval", "health_interval=DURATION", "time between two checks of a backend", durationOption(func(a *App) *Duration { return &healthOf(a).Interval })},
		{"health_timeout", "health_timeout=DURATION", "how long a check may take", durationOption(func(a *App) *Duration { return &healthOf(a).Timeout })},
		{"health_status", "health_status=200-399", "the status (or range) a healthy backend answers", stringOption(func(a *App) *string { return &healthOf(a).Status })},
		{"health_body", "health_body=TEXT", "text the check's response body must contain", stringOption(func(a *App) *string { return &healthOf(a).Body })},
		{"health_rise", "health_rise=N", "passing checks in a row to bring a backend up", intOption(func(a *App) *int { return &healthOf(a).Rise })},
		{"health_fall", "health_fall=N", "failing checks in a row to take a backend down", intOption(func(a *App) *int { return &healthOf(a).Fall })},
		{"passive_fails", "passive_fails=N", "failed answers in a row (timeouts, dropped connections) that eject a backend from live traffic (default 5)", intOption(func(a *App) *int { return &a.PassiveFails })},
		{"passive_5xx", "passive_5xx", "count 5xx answers as failed answers too", func(a *App, v string, has bool) error {
			if has {
				return errors.New("takes no value")
			}
			a.Passive5xx = true
			return nil
		}},
		{"max_conns", "max_conns=N", "requests each backend gets at once; the rest wait in the app's queue (default: no limit)", intOption(func(a *App) *int { return &a.MaxConns })},
		{"queue", "queue=N", "requests that may wait for a backend (default 256); one more gets 503", intOption(func(a *App) *int { return &a.Queue })},
		{"queue_timeout", "queue_timeout=DURATION", "how long a request may wait (default 5s), then 503 with Retry-After", durationOption(func(a *App) *Duration { return &a.QueueTimeout })},
		{"queue_priority_paths", "queue_priority_paths=/A[,/B...]", "path prefixes served before other waiting requests (requests with a valid sticky cookie always are)", func(a *App, v string, has bool) error {
			if !has || v == "" {
				return errors.New("needs path prefixes: queue_priority_paths=/checkout,/api/pay")
			}
			a.QueuePriorityPaths = strings.Split(v, ",")
			return nil
		}},
		{"queue_priority_header", "queue_priority_header=NAME", "requests carrying this header are served before other waiting requests", stringOption(func(a *App) *string { return &a.QueuePriorityHeader })},
		{"protocol", "protocol=http1|h2|h2c", "HTTP version to the backends: http1 (default), h2 (HTTP/2 over TLS, with backend_tls) or h2c (HTTP/2 in clear text), e.g. for gRPC", stringOption(func(a *App) *string { return &a.Protocol })},
		{"backend_tls", "backend_tls", "re-encrypt: TLS to the backends, verified against the system roots (or backend_ca)", func(a *App, v string, has bool) error {
			if has {
				return errors.New("takes no value")
			}
			backendTLSOf(a)
			return nil
		}},
		{"backend_ca", "backend_ca=FILE", "PEM roots to verify the backends with; implies backend_tls", stringOption(func(a *App) *string { return &backendTLSOf(a).CA })},
		{"backend_sni", "backend_sni=NAME", "the name sent as SNI and verified (default: each backend's host); implies backend_tls", stringOption(func(a *App) *string { return &backendTLSOf(a).ServerName })},
		{"backend_cert", "backend_cert=FILE", "client certificate for mutual TLS with the backends (with backend_key)", stringOption(func(a *App) *string { return &backendTLSOf(a).Cert })},
		{"backend_key", "backend_key=FILE", "the client certificate's key", stringOption(func(a *App) *string { return &backendTLSOf(a).Key })},
		{"backend_insecure", "backend_insecure", "TLS to the backends without verifying them (logged as a warning at start-up)", func(a *App, v string, has bool) error {
			if has {
				return errors.New("takes no value")
			}
			backendTLSOf(a).Insecure = true
			return nil
		}},
		{"hide_headers", "hide_headers=NAME[,NAME...]|none", "response headers removed (default: Server, X-Powered-By, X-AspNet-Version, X-AspNetMvc-Version, X-Runtime, X-Generator, X-Drupal-Cache, Via)", func(a *App, v string, has bool) error {
			if !has || v == "" {
				return errors.New("needs header names or none")
			}
			a.HideHeaders = []string{}
			if v != "none" {
				a.HideHeaders = strings.Split(v, ",")
			}
			return nil
		}},
		{"hsts", "hsts=DURATION|off", "Strict-Transport-Security max-age on HTTPS responses (default 8760h: one year)", stringOption(func(a *App) *string { return &a.HSTS })},
		{"hsts_subdomains", "hsts_subdomains", "add includeSubDomains to HSTS", func(a *App, v string, has bool) error {
			if has {
				return errors.New("takes no value")
			}
			a.HSTSSubdomains = true
			return nil
		}},
		{"security_headers", "security_headers", "add X-Content-Type-Options: nosniff, Referrer-Policy: strict-origin-when-cross-origin, X-Frame-Options: SAMEORIGIN", func(a *App, v string, has bool) error {
			if has {
				return errors.New("takes no value")
			}
			a.SecurityHeaders = true
			return nil
		}},
		{"csp", "csp=POLICY", "Content-Security-Policy set on every response", stringOption(func(a *App) *string { return &a.CSP })},
		{"allow", "allow=CIDR[,CIDR...]", "serve only clients in these networks (or addresses); others get 403", func(a *App, v string, has bool) error {
			if !has || v == "" {
				return errors.New("needs networks, like allow=10.0.0.0/8,192.0.2.7")
			}
			a.Allow = strings.Split(v, ",")
			return nil
		}},
		{"deny", "deny=CIDR[,CIDR...]", "refuse clients in these networks (or addresses) with 403, checked before allow", func(a *App, v string, has bool) error {
			if !has || v == "" {
				return errors.New("needs networks, like deny=203.0.113.0/24")
			}
			a.Deny = strings.Split(v, ",")
			return nil
		}},
		{"max_body", "max_body=SIZE", "largest request body, like 10M: a larger Content-Length gets 413 before anything is forwarded, a longer chunked body is cut (default: no limit)", stringOption(func(a *App) *string { return &a.MaxBody })},
		{"methods", "methods=GET,POST,...", "the methods the app accepts; others get 405 (default GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS: no TRACE, no CONNECT)", func(a *App, v string, has bool) error {
			if !has || v == "" {
				return errors.New("needs methods, like methods=GET,POST")
			}
			a.Methods = strings.Split(strings.ToUpper(v), ",")
			return nil
		}},
		{"request_id", "request_id=on|off", "add X-Request-Id to requests that lack one, echo it in the response and the access log (default on)", stringOption(func(a *App) *string { return &a.RequestID })},
		{"retry_budget", "retry_budget=PERCENT", "retries may add at most this share of requests over 10 s, plus 10 (default 20%)", stringOption(func(a *App) *string { return &a.RetryBudget })},
		{"tls", "tls=auto|internal|files", "certificates from ACME, the local CA or --cert/--cert-dir files (default: files that cover the host, else auto with --acme-email, else internal)", func(a *App, v string, has bool) error {
			switch strings.ToLower(v) {
			case TLSAuto, TLSInternal, TLSFiles:
				a.TLS = strings.ToLower(v)
				return nil
			}
			return fmt.Errorf("%w: want tls=auto, tls=internal or tls=files", ErrSyntax)
		}},
	}, filterOptions()...)
}

// healthOf returns the app's health check settings, creating them.
func healthOf(a *App) *Health {
	if a.Health == nil {
		a.Health = &Health{}
	}
	return a.Health
}

func stringOption(field func(*App) *string) func(*App, string, bool) error {
	return func(a *App, v string, has bool) error {
		if !has || v == "" {
			return errors.New("needs a value")
		}
		*field(a) = v
		return nil
	}
}

func intOption(field func(*App) *int) func(*App, string, bool) error {
	return func(a *App, v string, has bool) error {
		n, err := strconv.Atoi(v)
		if !has || err != nil || n < 0 {
			return errors.New("needs a whole number of 0 or more")
		}
		*field(a) = n
		return nil
	}
}

func durationOption(field func(*App) *Duration) func(*App, string, bool) error {
	return func(a *App, v string, has bool) error {
		if !has {
			return errors.New("needs a value, like 30m")
		}
		d, err := ParseDuration(v)
		if err != nil {
			return err
		}
		*field(a) = d
		return nil
	}
}

// AppOption describes one --app option for help texts and documentation.
type AppOption struct {
	Name, Syntax, Help string
}

// AppOptions lists the --app options, in the order --help shows them.
func AppOptions() []AppOption { return describeOptions(appOptions()) }

func describeOptions[T any](opts []option[T]) []AppOption {
	var out []AppOption
	for _, o := range opts {
		out = append(out, AppOption{Name: o.name, Syntax: o.syntax, Help: o.help})
	}
	return out
}

// applyOptions applies the ";name[=value]" parts of a spec to t; where
// names the spec in errors, kind the flag in "unknown --tcp option".
func applyOptions[T any](t *T, where, kind string, parts []string, opts []option[T]) error {
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		name, value, has := strings.Cut(p, "=")
		i := slices.IndexFunc(opts, func(o option[T]) bool { return o.name == name })
		if i < 0 {
			var names []string
			for _, o := range opts {
				names = append(names, o.name)
			}
			return &FieldError{App: where, Field: "option", Value: name,
				Err: fmt.Errorf("%w: unknown %soption (known: %s)", ErrSyntax, kind, strings.Join(names, ", "))}
		}
		if err := opts[i].set(t, value, has); err != nil {
			return &FieldError{App: where, Field: name, Value: value, Err: err}
		}
	}
	return nil
}

// parseBackends reads the comma-separated BACKEND[*WEIGHT] list of a spec.
func parseBackends(where, list string) ([]Backend, error) {
	var out []Backend
	for i, b := range strings.Split(list, ",") {
		be, err := ParseBackend(strings.TrimSpace(b))
		if err != nil {
			return out, &FieldError{App: where, Field: "backends[" + strconv.Itoa(i) + "]", Value: b, Err: err}
		}
		out = append(out, be)
	}
	return out, nil
}

// ParseApp reads one --app value:
//
//	HOST[/PATH]=BACKEND[*WEIGHT][,BACKEND...][;OPTION[=VALUE]...]
//
// It checks the syntax only; Validate checks the meaning.
func ParseApp(spec string) (App, error) {
	var app App
	route, rest, ok := strings.Cut(spec, "=")
	if !ok {
		return app, &FieldError{App: spec, Field: "--app", Value: spec,
			Err: fmt.Errorf("%w: want HOST[/PATH]=BACKEND[,BACKEND...][;OPTION...]", ErrSyntax)}
	}
	route = strings.TrimSpace(route)
	host, path := route, ""
	if i := strings.IndexByte(route, '/'); i >= 0 {
		host, path = route[:i], route[i:]
	}
	app.Hosts = []string{strings.ToLower(host)}
	app.Path = path

	parts := strings.Split(rest, ";")
	if strings.TrimSpace(parts[0]) != "" { // else the backends come from options (srv=, backup=)
		bs, err := parseBackends(route, parts[0])
		if err != nil {
			return app, err
		}
		app.Backends = bs
	}
	if err := applyOptions(&app, route, "", parts[1:], appOptions()); err != nil {
		return app, err
	}
	if len(app.Backends) == 0 {
		return app, &FieldError{App: route, Field: "backends", Value: "",
			Err: fmt.Errorf("%w: an app needs at least one backend: HOST=BACKEND[,BACKEND...] or srv=NAME", ErrSyntax)}
	}
	return app, nil
}

// ParseBackend reads "host:port" or "host:port*WEIGHT".
func ParseBackend(s string) (Backend, error) {
	b := Backend{Addr: s, Weight: 1}
	if addr, w, ok := strings.Cut(s, "*"); ok {
		n, err := strconv.Atoi(w)
		if err != nil || n < 1 || n > MaxWeight {
			return b, fmt.Errorf("%w: weight must be a whole number from 1 to %d, got %q", ErrSyntax, MaxWeight, w)
		}
		b.Addr, b.Weight = addr, n
	}
	if err := checkHostPort(b.Addr); err != nil {
		return b, err
	}
	return b, nil
}

// checkHostPort accepts "host:port" and "[v6]:port" with a port 1-65535.
func checkHostPort(addr string) error {
	if addr == "" {
		return fmt.Errorf("%w: empty address, want host:port", ErrSyntax)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: want host:port: %w", ErrSyntax, err)
	}
	if host == "" {
		return fmt.Errorf("%w: missing host in %q", ErrSyntax, addr)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%w: port must be 1-65535, got %q", ErrSyntax, port)
	}
	return nil
}
