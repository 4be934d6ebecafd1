package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ErrSyntax is wrapped by every error about how an --app value is written.
var ErrSyntax = errors.New("syntax error")

// MaxWeight bounds a backend's weight: the balancer's schedule has one slot
// per unit of weight, and 256 is HAProxy's limit too.
const MaxWeight = 256

// option is one ";name[=value]" of an --app spec. Its name is also the
// field's name in the config file, so the two spellings stay one model.
// Adding an option is adding one entry to appOptions.
type option struct {
	name   string
	syntax string
	help   string
	// set applies the option; has reports whether "=value" was given.
	set func(a *App, value string, has bool) error
}

// appOptions lists the --app options in the order --help shows them.
// It is a function, not a package variable, so nothing can mutate it.
func appOptions() []option {
	return []option{
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
		{"tls", "tls=auto|internal|files", "certificates from ACME, the local CA or --cert/--cert-dir files (default: files that cover the host, else auto with --acme-email, else internal)", func(a *App, v string, has bool) error {
			switch strings.ToLower(v) {
			case TLSAuto, TLSInternal, TLSFiles:
				a.TLS = strings.ToLower(v)
				return nil
			}
			return fmt.Errorf("%w: want tls=auto, tls=internal or tls=files", ErrSyntax)
		}},
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
func AppOptions() []AppOption {
	var out []AppOption
	for _, o := range appOptions() {
		out = append(out, AppOption{Name: o.name, Syntax: o.syntax, Help: o.help})
	}
	return out
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
	for i, b := range strings.Split(parts[0], ",") {
		be, err := ParseBackend(strings.TrimSpace(b))
		if err != nil {
			return app, &FieldError{App: route, Field: "backends[" + strconv.Itoa(i) + "]", Value: b, Err: err}
		}
		app.Backends = append(app.Backends, be)
	}
	for _, p := range parts[1:] {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		name, value, has := strings.Cut(p, "=")
		opt, found := findOption(name)
		if !found {
			return app, &FieldError{App: route, Field: "option", Value: name,
				Err: fmt.Errorf("%w: unknown option (known: %s)", ErrSyntax, optionNames())}
		}
		if err := opt.set(&app, value, has); err != nil {
			return app, &FieldError{App: route, Field: name, Value: value, Err: err}
		}
	}
	return app, nil
}

func findOption(name string) (option, bool) {
	for _, o := range appOptions() {
		if o.name == name {
			return o, true
		}
	}
	return option{}, false
}

func optionNames() string {
	var names []string
	for _, o := range appOptions() {
		names = append(names, o.name)
	}
	return strings.Join(names, ", ")
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
