package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Where an app's certificates come from (App.TLS).
const (
	TLSAuto     = "auto"
	TLSInternal = "internal"
	TLSFiles    = "files"
)

// Well-known ACME directories, by the names --acme-ca accepts.
var acmeCAs = map[string]string{
	"letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
	"staging":     "https://acme-staging-v02.api.letsencrypt.org/directory",
	"zerossl":     "https://acme.zerossl.com/v2/DV90",
}

// DefaultACMECA is the CA used when --acme-ca is not given.
const DefaultACMECA = "letsencrypt"

// Defaults of the ACME and on-demand settings.
const (
	// DefaultHandshakeWait bounds how long a handshake for a configured
	// host waits for its first certificate (Let's Encrypt usually answers
	// within a few seconds; clients give up after 10-30 s).
	DefaultHandshakeWait = 15 * time.Second
	// DefaultAskCache is how long an ask URL's answer is remembered.
	DefaultAskCache = 10 * time.Minute
)

// Default on-demand issuance rates: Let's Encrypt allows 300 new orders
// per account per 3 hours, so the global default stays well below that.
var (
	DefaultOnDemandRate      = Rate{N: 20, Per: Duration(time.Hour)}
	DefaultOnDemandRatePerIP = Rate{N: 5, Per: Duration(time.Hour)}
)

// ACME configures automatic certificates (certmagic's ACME issuer).
type ACME struct {
	// Email is the ACME account's contact; it turns tls=auto on by default.
	Email string `yaml:"email,omitempty"`
	// CA is letsencrypt (default), staging, zerossl or a directory URL.
	CA string `yaml:"ca,omitempty"`
	// CARoot is a PEM file of roots trusted for the CA's own HTTPS (a
	// private or test CA); the system roots are used otherwise.
	CARoot string `yaml:"ca_root,omitempty"`
	// EABKeyID and EABHMAC are external account binding credentials.
	EABKeyID string `yaml:"eab_kid,omitempty"`
	EABHMAC  string `yaml:"eab_hmac,omitempty"`
	// DisableHTTP01 and DisableTLSALPN01 turn a challenge type off.
	DisableHTTP01    bool `yaml:"disable_http01,omitempty"`
	DisableTLSALPN01 bool `yaml:"disable_tlsalpn01,omitempty"`
	// HandshakeWait bounds how long a handshake waits for a configured
	// host's first certificate.
	HandshakeWait Duration `yaml:"handshake_wait,omitempty"`
	// RenewalWindowRatio: renew when this fraction of the lifetime is
	// left (default 1/3, certmagic's and Caddy's), or earlier when the
	// CA's renewal information (ARI) says so.
	RenewalWindowRatio float64 `yaml:"renewal_window_ratio,omitempty"`
}

// OnDemand is on-demand TLS: certificates for names not known in advance.
type OnDemand struct {
	// Enabled turns it on (needs allow and/or ask).
	Enabled bool `yaml:"enabled,omitempty"`
	// Allow lists names or "*.example.com" patterns (any depth below).
	Allow []string `yaml:"allow,omitempty"`
	// Ask is a URL asked GET ?domain=NAME&ip=CLIENT; a 200 allows the name.
	Ask string `yaml:"ask,omitempty"`
	// AskCache is how long an ask answer (allowed or refused) is kept.
	AskCache Duration `yaml:"ask_cache,omitempty"`
	// Rate and RatePerIP bound new orders, overall and per client IP.
	Rate      Rate `yaml:"rate,omitempty"`
	RatePerIP Rate `yaml:"rate_per_ip,omitempty"`
}

// Rate is "N/DURATION": at most N events per DURATION (bursts up to N).
type Rate struct {
	N   int
	Per Duration
}

// IsZero reports an unset rate (for YAML's omitempty).
func (r Rate) IsZero() bool { return r.N == 0 && r.Per == 0 }

func (r Rate) String() string { return strconv.Itoa(r.N) + "/" + r.Per.String() }

// ParseRate reads "N/DURATION", like 20/1h or 5/10m.
func ParseRate(s string) (Rate, error) {
	n, per, ok := strings.Cut(s, "/")
	if !ok {
		return Rate{}, fmt.Errorf("want N/DURATION, like 20/1h, got %q", s)
	}
	count, err := strconv.Atoi(n)
	if err != nil || count < 1 {
		return Rate{}, fmt.Errorf("want a count of 1 or more before the /, got %q", n)
	}
	if per == "s" || per == "m" || per == "h" {
		per = "1" + per // 100/s reads as 100/1s
	}
	d, err := ParseDuration(per)
	if err != nil || d <= 0 {
		return Rate{}, fmt.Errorf("want a duration after the /, like 1h, got %q", per)
	}
	return Rate{N: count, Per: d}, nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (r *Rate) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a rate like 20/1h, got a %s", n.Line, kindName(n.Kind))
	}
	v, err := ParseRate(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*r = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (r Rate) MarshalYAML() (any, error) { return r.String(), nil }

// ACMEDirectory resolves the CA setting to a directory URL.
func (a *ACME) ACMEDirectory() string {
	if u, ok := acmeCAs[a.CA]; ok {
		return u
	}
	if a.CA == "" {
		return acmeCAs[DefaultACMECA]
	}
	return a.CA
}

// PublicCA reports whether the CA is a public one, which refuses names that
// are not public DNS names.
func (a *ACME) PublicCA() bool {
	_, ok := acmeCAs[a.CA]
	return ok || a.CA == ""
}

// UsesACME reports whether any app or on-demand needs the ACME issuer.
func (c *Config) UsesACME() bool {
	if c.TLS.OnDemand.Enabled {
		return true
	}
	for i := range c.Apps {
		if c.Apps[i].TLS == TLSAuto {
			return true
		}
	}
	for i := range c.TCP {
		if c.TCP[i].TLS == TLSAuto && len(c.TCP[i].Hosts) > 0 {
			return true
		}
	}
	return false
}

// normalizeACME fills in the ACME defaults. An app's tls stays "" when a
// certificate file may cover it: only loading the files can tell.
func (c *Config) normalizeACME() {
	a := &c.TLS.ACME
	if a.HandshakeWait == 0 {
		a.HandshakeWait = Duration(DefaultHandshakeWait)
	}
	od := &c.TLS.OnDemand
	if od.AskCache == 0 {
		od.AskCache = Duration(DefaultAskCache)
	}
	if od.Rate.IsZero() {
		od.Rate = DefaultOnDemandRate
	}
	if od.RatePerIP.IsZero() {
		od.RatePerIP = DefaultOnDemandRatePerIP
	}
	files := len(c.TLS.Certs) > 0 || c.TLS.CertDir != ""
	for i := range c.Apps {
		app := &c.Apps[i]
		if app.TLS != "" || files {
			continue
		}
		if a.Email != "" {
			app.TLS = TLSAuto
		} else {
			app.TLS = TLSInternal
		}
	}
	for i := range c.TCP {
		svc := &c.TCP[i]
		if svc.TLS != "" || files || svc.Plain || len(svc.Hosts) == 0 {
			continue
		}
		if a.Email != "" {
			svc.TLS = TLSAuto
		} else {
			svc.TLS = TLSInternal
		}
	}
	if a.CA == "" && c.UsesACME() {
		a.CA = DefaultACMECA
	}
}

// DefaultTLS is the source of an app's certificates when tls is unset and
// no certificate file covers its host.
func (c *Config) DefaultTLS() string {
	if c.TLS.ACME.Email != "" {
		return TLSAuto
	}
	return TLSInternal
}

// validateACME checks the ACME, on-demand and storage settings.
func (c *Config) validateACME(add func(app, field, value string, err error)) {
	a := &c.TLS.ACME
	if a.Email != "" {
		if err := checkEmail(a.Email); err != nil {
			add("", "tls.acme.email", a.Email, err)
		}
	}
	if _, named := acmeCAs[a.CA]; !named && a.CA != "" {
		u, err := url.Parse(a.CA)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			add("", "tls.acme.ca", a.CA, errors.New("want letsencrypt, staging, zerossl or an https:// directory URL"))
		}
	}
	if a.CA == "zerossl" && a.EABKeyID == "" && c.UsesACME() {
		add("", "tls.acme.ca", a.CA, errors.New("ZeroSSL's ACME endpoint needs external account binding: give --acme-eab-kid and --acme-eab-hmac from the ZeroSSL dashboard"))
	}
	if (a.EABKeyID == "") != (a.EABHMAC == "") {
		add("", "tls.acme.eab_kid", a.EABKeyID, errors.New("external account binding needs both eab_kid and eab_hmac"))
	}
	if a.EABHMAC != "" {
		if _, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(a.EABHMAC, "=")); err != nil {
			add("", "tls.acme.eab_hmac", "(hidden)", fmt.Errorf("not base64url: %w", err))
		}
	}
	if a.RenewalWindowRatio < 0 || a.RenewalWindowRatio >= 1 {
		add("", "tls.acme.renewal_window_ratio", strconv.FormatFloat(a.RenewalWindowRatio, 'g', -1, 64), errors.New("want a fraction of the lifetime between 0 and 1, like 0.33"))
	}
	if a.DisableHTTP01 && a.DisableTLSALPN01 && c.UsesACME() {
		add("", "tls.acme.disable_tlsalpn01", "true", errors.New("with HTTP-01 disabled too, no challenge is left to prove control of a name"))
	}
	if a.DisableTLSALPN01 && c.HTTPListen == Off && c.UsesACME() {
		add("", "http_listen", Off, errors.New("HTTP-01 needs the plain-HTTP listener; with it off, leave TLS-ALPN-01 enabled"))
	}
	od := &c.TLS.OnDemand
	if od.Enabled && len(od.Allow) == 0 && od.Ask == "" {
		add("", "tls.on_demand.enabled", "true", errors.New("on-demand TLS needs an allowlist (on_demand.allow) or an ask URL (on_demand.ask): otherwise any name a client sends would be ordered"))
	}
	if !od.Enabled && (len(od.Allow) > 0 || od.Ask != "") {
		add("", "tls.on_demand.enabled", "false", errors.New("on_demand.allow and on_demand.ask have no effect unless on-demand TLS is enabled (--on-demand)"))
	}
	for i, p := range od.Allow {
		if err := checkHost(strings.ToLower(p)); err != nil {
			add("", "tls.on_demand.allow["+strconv.Itoa(i)+"]", p, err)
		}
	}
	if od.Ask != "" {
		u, err := url.Parse(od.Ask)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("", "tls.on_demand.ask", od.Ask, errors.New("want an http:// or https:// URL"))
		}
	}
	if c.Storage != "" {
		u, err := url.Parse(c.Storage)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			add("", "storage", redactURL(c.Storage), errors.New("want redis://[user:pass@]host:port/db or rediss://..., or leave it empty for files in the state dir"))
		}
	}
	for i := range c.Apps {
		app := &c.Apps[i]
		switch app.TLS {
		case "", TLSFiles, TLSInternal:
		case TLSAuto:
			for j, h := range app.Hosts {
				if err := checkACMEHost(h, a.PublicCA()); err != nil {
					add(app.Name, "hosts["+strconv.Itoa(j)+"]", h, err)
				}
			}
		default:
			add(app.Name, "tls", app.TLS, errors.New("want auto, internal or files"))
		}
	}
	for i := range c.TCP {
		svc := &c.TCP[i]
		if svc.TLS != TLSAuto {
			continue
		}
		for j, h := range svc.Hosts {
			if err := checkACMEHost(h, a.PublicCA()); err != nil {
				add(svc.Name, "hosts["+strconv.Itoa(j)+"]", h, err)
			}
		}
	}
}

// checkACMEHost refuses names an ACME CA cannot validate by HTTP-01 or
// TLS-ALPN-01: wildcards (DNS-01 only), and for a public CA, IP addresses
// and names that are not public DNS names.
func checkACMEHost(h string, public bool) error {
	if h == AnyHost {
		return nil // its names are on-demand's, checked at the handshake
	}
	if strings.HasPrefix(h, "*.") {
		return errors.New("a wildcard needs the DNS-01 challenge, which tlsedge does not solve: use tls=files or tls=internal for it")
	}
	if !public {
		return nil
	}
	if isIP(h) {
		return errors.New("a public CA does not issue for IP addresses: use tls=internal or tls=files")
	}
	if !strings.Contains(h, ".") || internalSuffix(h) {
		return errors.New("not a public DNS name, so a public CA cannot validate it: use tls=internal or tls=files")
	}
	return nil
}

func isIP(h string) bool { return net.ParseIP(h) != nil }

func internalSuffix(h string) bool {
	for _, s := range []string{".localhost", ".local", ".internal", ".home.arpa", ".lan"} {
		if strings.HasSuffix(h, s) {
			return true
		}
	}
	return h == "localhost"
}

// checkEmail accepts a bare address, the form ACME CAs accept.
func checkEmail(s string) error {
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Address != s || addr.Name != "" {
		return errors.New("want a plain address like ops@example.com")
	}
	_, domain, _ := strings.Cut(s, "@")
	if !strings.Contains(domain, ".") {
		return errors.New("the address's domain needs a dot, like ops@example.com")
	}
	return nil
}

// redactURL hides a URL's password, so errors and `check` can print it.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if i := strings.LastIndexByte(s, '@'); i >= 0 {
			return "(hidden)@" + s[i+1:]
		}
		return s
	}
	return u.Redacted()
}

// RedactedStorage is the storage setting with its password hidden.
func (c *Config) RedactedStorage() string { return redactURL(c.Storage) }
