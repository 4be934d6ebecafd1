package config

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Frontend defaults: what a client may hold of the gateway before it is
// cut off. They protect against slow and numerous clients (slowloris,
// handshake floods) and sit where HAProxy's and nginx's usual settings do.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultHeaderTimeout    = 10 * time.Second
	DefaultBodyTimeout      = 30 * time.Second
	DefaultIdleTimeout      = 120 * time.Second
	// A thousand connections from one address covers a NAT with
	// hundreds of users (one HTTP/2 connection each, a few HTTP/1.1);
	// a hundred handshakes at once is more than any of them needs.
	DefaultMaxConnsPerIP      = 1000
	DefaultMaxHandshakesPerIP = 100
)

// Frontend is what applies to every client connection before an app is
// chosen: who may speak for a client, limits per client address,
// timeouts, and the lists and rate that hold for every app.
type Frontend struct {
	// TrustedProxies are the load balancers and proxies (CIDR or
	// addresses) whose word on the client address is believed: their
	// PROXY protocol header (v1 or v2, detected) on the listener, and
	// their X-Forwarded-For / Forwarded headers. From anyone else these
	// are dropped.
	TrustedProxies []string `yaml:"trusted_proxies,omitempty"`
	// MaxConnsPerIP and MaxHandshakesPerIP bound what one client address
	// holds open (defaults 1000 and 100; -1: no limit).
	MaxConnsPerIP      int `yaml:"max_conns_per_ip,omitempty"`
	MaxHandshakesPerIP int `yaml:"max_handshakes_per_ip,omitempty"`
	// Timeouts: the TLS handshake, a request head, a pause while reading
	// a request body, and an idle keep-alive connection.
	HandshakeTimeout Duration `yaml:"handshake_timeout,omitempty"`
	HeaderTimeout    Duration `yaml:"header_timeout,omitempty"`
	BodyTimeout      Duration `yaml:"body_timeout,omitempty"`
	IdleTimeout      Duration `yaml:"idle_timeout,omitempty"`
	// Allow and Deny are client networks for every app, checked before
	// each app's own lists; RateLimit and RateBurst a request rate per
	// client address over all apps (as the app options of those names).
	Allow     []string `yaml:"allow,omitempty"`
	Deny      []string `yaml:"deny,omitempty"`
	RateLimit string   `yaml:"rate_limit,omitempty"`
	RateBurst int      `yaml:"rate_burst,omitempty"`
}

func (f *Frontend) normalize() {
	for _, d := range []struct {
		v   *Duration
		def time.Duration
	}{
		{&f.HandshakeTimeout, DefaultHandshakeTimeout}, {&f.HeaderTimeout, DefaultHeaderTimeout},
		{&f.BodyTimeout, DefaultBodyTimeout}, {&f.IdleTimeout, DefaultIdleTimeout},
	} {
		if *d.v == 0 {
			*d.v = Duration(d.def)
		}
	}
	if f.MaxConnsPerIP == 0 {
		f.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if f.MaxHandshakesPerIP == 0 {
		f.MaxHandshakesPerIP = DefaultMaxHandshakesPerIP
	}
}

func (f *Frontend) validate(add func(app, field, value string, err error)) {
	for _, l := range []struct {
		field string
		list  []string
	}{{"frontend.trusted_proxies", f.TrustedProxies}, {"frontend.allow", f.Allow}, {"frontend.deny", f.Deny}} {
		for i, s := range l.list {
			if !validPrefix(s) {
				add("", l.field+"["+strconv.Itoa(i)+"]", s, errors.New("want an address or a CIDR prefix like 10.0.0.0/8"))
			}
		}
	}
	if f.MaxConnsPerIP < -1 {
		add("", "frontend.max_conns_per_ip", strconv.Itoa(f.MaxConnsPerIP), errors.New("want a count, or -1 for no limit"))
	}
	if f.MaxHandshakesPerIP < -1 {
		add("", "frontend.max_handshakes_per_ip", strconv.Itoa(f.MaxHandshakesPerIP), errors.New("want a count, or -1 for no limit"))
	}
	if f.RateLimit != "" {
		if _, err := ParseRate(f.RateLimit); err != nil {
			add("", "frontend.rate_limit", f.RateLimit, err)
		}
	} else if f.RateBurst != 0 {
		add("", "frontend.rate_burst", strconv.Itoa(f.RateBurst), errors.New("rate_burst needs rate_limit"))
	}
}

// validPrefix accepts what filter.ParsePrefix does: an address or a
// prefix, IPv4 or IPv6.
func validPrefix(s string) bool {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		_, err := netip.ParsePrefix(s)
		return err == nil
	}
	_, err := netip.ParseAddr(s)
	return err == nil
}
