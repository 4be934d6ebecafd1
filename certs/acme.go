package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
	"github.com/sirupsen/logrus"
)

// ACMEConfig configures automatic certificates from an ACME CA.
type ACMEConfig struct {
	// CA is the ACME directory URL.
	CA string
	// Email is the account's contact ("" for none).
	Email string
	// Roots are trusted for the CA's own HTTPS; nil means the system's.
	Roots *x509.CertPool
	// EABKeyID and EABHMAC are external account binding credentials.
	EABKeyID, EABHMAC string
	// Hosts are obtained at start-up and kept renewed.
	Hosts []string
	// Storage holds certificates, accounts and locks; several instances
	// sharing one storage share certificates and order each name once.
	Storage certmagic.Storage
	// StorageName says where Storage is, for logs and `tlsedge certs`.
	StorageName string
	// DisableHTTP01 and DisableTLSALPN01 turn a challenge type off.
	DisableHTTP01, DisableTLSALPN01 bool
	// ListenHost, HTTPPort and TLSPort are where tlsedge itself listens:
	// the challenges are answered there (HandleHTTPChallenge and the
	// acme-tls/1 handshake), and certmagic, finding the ports taken,
	// starts no listener of its own.
	ListenHost        string
	HTTPPort, TLSPort int
	// HandshakeWait bounds how long a handshake for a configured host
	// waits for its first certificate.
	HandshakeWait time.Duration
	// OnDemand, when not nil, allows certificates for other names at
	// their first handshake.
	OnDemand *OnDemandConfig
	// ImportAutocert is an autocert cache directory imported into Storage
	// before anything is ordered ("" for none).
	ImportAutocert string
	// RenewalWindowRatio: renew when this fraction of the lifetime is left
	// (0: certmagic's 1/3), or earlier when the CA's ARI says so.
	RenewalWindowRatio float64
	// RenewCheckInterval is how often certificates are checked for
	// renewal (default certmagic's 10 minutes; tests shorten it).
	RenewCheckInterval time.Duration
	Log                *logrus.Entry
}

// ACME is a certificate Source backed by certmagic: configured hosts are
// obtained in the background and renewed before expiry, on-demand names at
// their first handshake. Build it with NewACME, start it with Run.
type ACME struct {
	cfg      ACMEConfig
	caURL    string
	log      *logrus.Entry
	cache    *certmagic.Cache
	magic    *certmagic.Config
	issuer   *certmagic.ACMEIssuer
	managed  map[string]bool
	ready    *readiness
	onDemand *onDemand
}

// NewACME prepares certificate management; nothing is ordered or
// listened on until Run.
func NewACME(c ACMEConfig) (*ACME, error) {
	if c.Storage == nil {
		return nil, errors.New("acme: no storage")
	}
	if c.Log == nil {
		c.Log = logrus.NewEntry(logrus.StandardLogger())
	}
	if c.HandshakeWait <= 0 {
		c.HandshakeWait = 15 * time.Second
	}
	a := &ACME{
		cfg:     c,
		caURL:   c.CA,
		log:     c.Log,
		managed: map[string]bool{},
		ready:   newReadiness(),
	}
	for _, h := range c.Hosts {
		a.managed[normalizeName(h)] = true
	}
	zl := newZapLogger(c.Log.WithField("component", "certmagic"))
	var magic *certmagic.Config
	a.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return magic, nil },
		RenewCheckInterval: c.RenewCheckInterval,
		Logger:             zl,
	})
	magic = certmagic.New(a.cache, certmagic.Config{
		Storage:            c.Storage,
		OnEvent:            a.onEvent,
		ShouldEmitFunc:     acmeEventWanted,
		RenewalWindowRatio: c.RenewalWindowRatio,
		Logger:             zl,
	})
	if c.OnDemand != nil {
		od, err := newOnDemand(*c.OnDemand, a.log)
		if err != nil {
			a.cache.Stop()
			return nil, err
		}
		a.onDemand = od
		magic.OnDemand = &certmagic.OnDemandConfig{DecisionFunc: a.decide}
	}
	tmpl := certmagic.ACMEIssuer{
		CA:                      c.CA,
		Email:                   c.Email,
		Agreed:                  true, // running tlsedge with ACME on is agreeing to the CA's terms (README)
		TrustedRoots:            c.Roots,
		DisableHTTPChallenge:    c.DisableHTTP01,
		DisableTLSALPNChallenge: c.DisableTLSALPN01,
		ListenHost:              c.ListenHost,
		AltHTTPPort:             c.HTTPPort,
		AltTLSALPNPort:          c.TLSPort,
		Logger:                  zl,
	}
	if c.EABKeyID != "" {
		tmpl.ExternalAccount = &acme.EAB{KeyID: c.EABKeyID, MACKey: c.EABHMAC}
	}
	a.issuer = certmagic.NewACMEIssuer(magic, tmpl)
	magic.Issuers = []certmagic.Issuer{a.issuer}
	a.magic = magic
	return a, nil
}

// IssuerKey is the storage folder of this CA's certificates.
func (a *ACME) IssuerKey() string { return a.issuer.IssuerKey() }

// Run obtains the configured hosts' certificates in the background (in
// storage already: loaded, not ordered) and keeps them renewed until ctx
// ends. Failures are logged and retried with backoff; Run never gives up.
func (a *ACME) Run(ctx context.Context) {
	defer a.cache.Stop()
	if a.cfg.ImportAutocert != "" {
		a.importAutocert(ctx)
	}
	if len(a.cfg.Hosts) > 0 {
		if err := a.magic.ManageAsync(ctx, a.cfg.Hosts); err != nil {
			a.log.WithError(err).Error("certificate management not started")
		}
	}
	<-ctx.Done()
}

// importAutocert copies an autocert cache into storage, so that the
// certificates it holds are served and renewed without a new order.
func (a *ACME) importAutocert(ctx context.Context) {
	log := a.log.WithField("from", a.cfg.ImportAutocert)
	rep, err := ImportAutocert(ctx, a.cfg.ImportAutocert, a.cfg.Storage, a.IssuerKey(), time.Now())
	if err != nil {
		log.WithError(err).Error("autocert import failed; certificates will be ordered instead")
		return
	}
	for _, line := range rep.Lines() {
		log.Info("autocert import: " + line)
	}
	for _, e := range rep.Entries {
		host := strings.TrimSuffix(e.Name, "+rsa")
		if e.Action == AutocertImported && !a.managed[normalizeName(host)] && a.onDemand == nil {
			log.WithField("host", host).Warn("autocert import: no app serves this host, so its certificate is stored but not served")
		}
	}
}

// Current returns the certificate served for a configured name now,
// without ordering or waiting for one: nil while there is none (for the
// status page).
func (a *ACME) Current(name string) *tls.Certificate {
	name = normalizeName(name)
	if !a.managed[name] || !a.cached(name) {
		return nil
	}
	c, err := a.magic.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
	if err != nil {
		return nil
	}
	return c
}

// Lookup serves configured hosts and, with on-demand TLS, allowed names.
func (a *ACME) Lookup(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := normalizeName(hello.ServerName)
	if name == "" {
		return nil, nil
	}
	if a.managed[name] {
		if !a.cached(name) {
			if err := a.waitFor(hello, name); err != nil {
				return nil, err
			}
		}
		return a.magic.GetCertificate(hello)
	}
	if a.onDemand == nil {
		return nil, nil
	}
	if !a.cached(name) {
		// Refuse before certmagic looks at storage or the CA: a random
		// name costs one map lookup (or one cached ask answer).
		ip := clientIP(hello)
		if err := a.onDemand.decide(hello.Context(), name, ip); err != nil {
			return nil, err
		}
		// An order is needed unless storage has the certificate (another
		// instance's, or one evicted from memory): spend the rate budget
		// here, so that a refused order fails this handshake at once.
		if !a.cfg.Storage.Exists(hello.Context(), certmagic.StorageKeys.SiteCert(a.IssuerKey(), name)) {
			if err := a.onDemand.allowOrder(name, ip); err != nil {
				a.log.WithField("host", name).WithField("client", ip).Warn(err.Error())
				return nil, err
			}
		}
		extendDeadline(hello, onDemandWait)
		// Bound the order too: certmagic would retry it for 3 minutes.
		ctx, cancel := context.WithTimeout(hello.Context(), onDemandWait)
		defer cancel()
		return a.magic.GetCertificateWithContext(ctx, hello)
	}
	return a.magic.GetCertificate(hello)
}

// onDemandWait bounds a handshake that waits for an on-demand order.
const onDemandWait = 60 * time.Second

// ChallengeCert answers a TLS-ALPN-01 validation handshake (RFC 8737):
// the client offers only "acme-tls/1".
func (a *ACME) ChallengeCert(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return a.magic.GetCertificate(hello)
}

// HandleHTTPChallenge answers an HTTP-01 validation request and reports
// whether it was one.
func (a *ACME) HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) bool {
	if a.cfg.DisableHTTP01 {
		return false
	}
	return a.issuer.HandleHTTPChallenge(w, r)
}

// Default is the first configured host's certificate, once it is cached.
func (a *ACME) Default() (*tls.Certificate, error) {
	for _, h := range a.cfg.Hosts {
		if certs := a.cache.AllMatchingCertificates(normalizeName(h)); len(certs) > 0 {
			c := certs[0].Certificate
			return &c, nil
		}
	}
	return nil, nil
}

// Describe says how a configured host gets its certificate.
func (a *ACME) Describe(host string) string {
	if !a.managed[normalizeName(host)] {
		return ""
	}
	return "ACME " + a.caURL + " (storage " + a.cfg.StorageName + ")"
}

func (a *ACME) cached(name string) bool {
	return len(a.cache.AllMatchingCertificates(name)) > 0
}

// waitFor holds a handshake for a configured host whose certificate is
// being ordered, as Caddy does, up to HandshakeWait; a failed order ends
// the wait at once with its reason.
func (a *ACME) waitFor(hello *tls.ClientHelloInfo, name string) error {
	if err := a.ready.failedIdle(name); err != nil {
		// Nothing is being ordered until certmagic's next retry: fail now,
		// with the reason, instead of holding the client.
		return fmt.Errorf("no certificate yet for %s: the last order failed: %s", name, reason(err))
	}
	extendDeadline(hello, a.cfg.HandshakeWait)
	ch := a.ready.wait(name)
	if a.cached(name) { // cached between the first look and wait
		return nil
	}
	a.log.WithField("host", name).WithField("client", clientIP(hello)).Debug("handshake waits for the certificate being ordered")
	t := time.NewTimer(a.cfg.HandshakeWait)
	defer t.Stop()
	select {
	case <-ch:
		if a.cached(name) {
			return nil
		}
		return fmt.Errorf("no certificate yet for %s: the order failed: %s", name, reason(a.ready.lastError(name)))
	case <-t.C:
		return fmt.Errorf("no certificate yet for %s: still ordering from %s after %v", name, a.caURL, a.cfg.HandshakeWait)
	}
}

// extendDeadline gives a handshake that waits for an order the time to
// do so; the frontend's handshake deadline is shorter.
func extendDeadline(hello *tls.ClientHelloInfo, d time.Duration) {
	if hello.Conn != nil {
		hello.Conn.SetDeadline(time.Now().Add(d + 5*time.Second)) //nolint:errcheck // a dead conn fails the handshake anyway
	}
}

func clientIP(hello *tls.ClientHelloInfo) string {
	if hello.Conn == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(hello.Conn.RemoteAddr().String())
	if err != nil {
		return hello.Conn.RemoteAddr().String()
	}
	return host
}

// IsChallengeHello reports a TLS-ALPN-01 validation handshake.
func IsChallengeHello(hello *tls.ClientHelloInfo) bool {
	return len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == ACMETLS1
}

// ACMETLS1 is the ALPN protocol of TLS-ALPN-01 validation (RFC 8737).
const ACMETLS1 = "acme-tls/1"
