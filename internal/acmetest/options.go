package acmetest

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"
)

// Options configures Start. The zero value is a CA with Pebble's default
// 90-day certificates, no EAB, no Retry-After headers and validation ports
// chosen by Start. Start copies what it needs; the caller keeps ownership.
type Options struct {
	// HTTPPort and TLSPort are the 127.0.0.1 ports Pebble's validation
	// authority connects to for HTTP-01 and TLS-ALPN-01: the code under test
	// must listen there. Zero means Start picks a free port (see
	// CA.HTTPPort and CA.TLSPort); it is released again, so the code under
	// test can bind it, which leaves a millisecond window in which another
	// process could take it.
	HTTPPort, TLSPort int

	// ValidityPeriod is the lifetime of issued certificates, rounded up to
	// whole seconds (Pebble's "validityPeriod" of the "default" profile).
	// Zero means Pebble's default of 90 days. Pebble sets NotAfter to
	// NotBefore+ValidityPeriod-1s and does not backdate NotBefore; a client
	// that sends notAfter in its order overrides it.
	ValidityPeriod time.Duration

	// Profiles adds named profiles (name to validity period) next to
	// "default", for clients that ask for a profile by name. Beware: Pebble
	// picks a profile AT RANDOM for an order that names none, so with extra
	// profiles a client that names none gets any of the validity periods.
	// "default" may not be a key.
	Profiles map[string]time.Duration

	// EAB, when not empty, makes external account binding mandatory and
	// lists the accepted key IDs with their HMAC keys, base64url without
	// padding (as ACME clients are given them).
	EAB map[string]string

	// OrderRetryAfter and AuthzRetryAfter are the Retry-After Pebble sends
	// on processing orders and authorizations, rounded up to whole
	// seconds; zero sends none, so clients poll at their own pace. Pebble
	// randomly writes the header as seconds or as an HTTP date.
	OrderRetryAfter, AuthzRetryAfter time.Duration

	// Blocklist lists domains Pebble refuses to order for, with their
	// subdomains (new-order fails with rejectedIdentifier), to test that
	// path. Pebble v2.10.3 compares labels without a length check: ordering
	// a name with fewer labels than an entry it shares a suffix with
	// ("example.test" against "blocked.example.test") panics the request
	// and the client gets a 502 from the harness's proxy.
	Blocklist []string

	// StartTimeout bounds how long Start and Restart wait for Pebble to
	// answer; zero means 15 s. Building the binaries, once per process, is
	// bounded separately (buildTimeout).
	StartTimeout time.Duration
}

// defaultValidity is Pebble's own default (ca.defaultValidityPeriod), spelled
// out so the config file says what the CA does.
const defaultValidity = 90 * 24 * time.Hour

func (o *Options) startTimeout() time.Duration {
	if o.StartTimeout <= 0 {
		return 15 * time.Second
	}
	return o.StartTimeout
}

func (o *Options) validity() time.Duration {
	if o.ValidityPeriod == 0 {
		return defaultValidity
	}
	return o.ValidityPeriod
}

// check rejects what Pebble would either refuse with an exit or silently
// replace with a default.
func (o *Options) check() error {
	for name, d := range map[string]time.Duration{
		"ValidityPeriod": o.ValidityPeriod, "OrderRetryAfter": o.OrderRetryAfter,
		"AuthzRetryAfter": o.AuthzRetryAfter,
	} {
		if d < 0 {
			return fmt.Errorf("%s %s is negative", name, d)
		}
	}
	for name, d := range o.Profiles {
		if name == "default" {
			return errors.New(`profile "default" is reserved: use ValidityPeriod`)
		}
		if d <= 0 {
			// Pebble would replace it with 90 days without a word.
			return fmt.Errorf("profile %q: validity %s is not positive", name, d)
		}
	}
	for kid, key := range o.EAB {
		// Pebble decodes the same way (db.AddExternalAccountKeyByID) but
		// reports a bad key by exiting, which is harder to read.
		if _, err := base64.RawURLEncoding.DecodeString(key); err != nil || key == "" || kid == "" {
			return fmt.Errorf("EAB key %q: want a non-empty kid and base64url key without padding", kid)
		}
	}
	for _, p := range []int{o.HTTPPort, o.TLSPort} {
		if p < 0 || p > 65535 {
			return fmt.Errorf("port %d out of range", p)
		}
	}
	return nil
}

// seconds rounds d up to whole seconds, the unit of Pebble's config.
func seconds(d time.Duration) uint64 {
	return uint64((d + time.Second - 1) / time.Second)
}

// pebbleConfig is the JSON Pebble reads (cmd/pebble/main.go, type config).
// It is our own copy so the harness does not import Pebble's packages.
type pebbleConfig struct {
	Pebble pebbleSection `json:"pebble"`
}

type pebbleSection struct {
	ListenAddress           string `json:"listenAddress"`
	ManagementListenAddress string `json:"managementListenAddress"`
	Certificate             string `json:"certificate"`
	PrivateKey              string `json:"privateKey"`
	HTTPPort                int    `json:"httpPort"`
	TLSPort                 int    `json:"tlsPort"`
	// KeyAlgorithm is Pebble's root and intermediate key type: ECDSA keys
	// are generated in microseconds, RSA ones (Pebble's default) in tens
	// of milliseconds on every start.
	KeyAlgorithm                   string                   `json:"keyAlgorithm"`
	ExternalAccountBindingRequired bool                     `json:"externalAccountBindingRequired"`
	ExternalAccountMACKeys         map[string]string        `json:"externalAccountMACKeys,omitempty"`
	DomainBlocklist                []string                 `json:"domainBlocklist,omitempty"`
	RetryAfter                     retryAfter               `json:"retryAfter"`
	Profiles                       map[string]pebbleProfile `json:"profiles"`
}

type retryAfter struct {
	Authz uint64 `json:"authz"`
	Order uint64 `json:"order"`
}

type pebbleProfile struct {
	Description    string `json:"description"`
	ValidityPeriod uint64 `json:"validityPeriod"` // seconds
}

// writeConfig renders opts as a Pebble config file at path.
func writeConfig(path string, opts *Options, a addrs, api *apiCreds) error {
	profiles := map[string]pebbleProfile{
		"default": {Description: "acmetest default", ValidityPeriod: seconds(opts.validity())},
	}
	for name, d := range opts.Profiles {
		profiles[name] = pebbleProfile{Description: "acmetest " + name, ValidityPeriod: seconds(d)}
	}
	cfg := pebbleConfig{Pebble: pebbleSection{
		ListenAddress:                  a.pebble,
		ManagementListenAddress:        a.management,
		Certificate:                    api.certFile,
		PrivateKey:                     api.keyFile,
		HTTPPort:                       a.httpPort,
		TLSPort:                        a.tlsPort,
		KeyAlgorithm:                   "ecdsa",
		ExternalAccountBindingRequired: len(opts.EAB) > 0,
		ExternalAccountMACKeys:         opts.EAB,
		DomainBlocklist:                opts.Blocklist,
		RetryAfter:                     retryAfter{Authz: seconds(opts.AuthzRetryAfter), Order: seconds(opts.OrderRetryAfter)},
		Profiles:                       profiles,
	}}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fmt.Errorf("encode pebble config: %w", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write pebble config: %w", err)
	}
	return nil
}
