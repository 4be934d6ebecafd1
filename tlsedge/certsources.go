package tlsedge

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/tlsedge/tlsedge/certs"
	"github.com/tlsedge/tlsedge/config"
)

// compileCerts builds the certificate selector. Each host's certificate
// comes from one source, by its app's tls setting: certificate files
// (also the default for a host a file covers), ACME, or the local CA.
// The selector asks files first, then the local CA, then ACME, so a file
// always wins and ACME is asked last (it may ask an on-demand policy).
func (snap *snapshot) compileCerts(cfg *config.Config, d compileDeps) error {
	var sources []certs.Source
	if len(cfg.TLS.Certs) > 0 || cfg.TLS.CertDir != "" {
		sc := certs.StaticConfig{Dir: cfg.TLS.CertDir, PollInterval: d.certPoll, Log: d.log.WithField("component", "certs")}
		for _, p := range cfg.TLS.Certs {
			sc.Pairs = append(sc.Pairs, certs.Pair{CertFile: p.Cert, KeyFile: p.Key})
		}
		st, err := certs.NewStatic(sc)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		snap.static = st
		sources = append(sources, st)
	}
	snap.sources = map[string]string{}
	var internal, auto []string
	for _, owner := range certOwners(cfg) {
		for _, h := range owner.hosts {
			if h == config.AnyHost {
				continue // on-demand TLS or the default certificate
			}
			src := owner.tls
			if src == "" {
				src = cfg.DefaultTLS()
				if snap.static != nil && covers(snap.static, h) {
					src = config.TLSFiles
				}
			}
			switch src {
			case config.TLSFiles:
				if snap.static == nil || !covers(snap.static, h) {
					return &config.FieldError{App: owner.name, Field: "tls", Value: src,
						Err: fmt.Errorf("no certificate file covers host %s (give --cert/--key or --cert-dir, or use tls=auto or tls=internal)", h)}
				}
			case config.TLSAuto:
				auto = append(auto, h)
			default:
				internal = append(internal, h)
			}
			snap.sources[h] = src
		}
	}
	if len(internal) > 0 {
		snap.caDir = filepath.Join(cfg.StateDir, "ca")
	}
	if len(internal) > 0 && d.localCA {
		ca, err := certs.NewLocalCA(certs.LocalCAConfig{
			Dir:          snap.caDir,
			Hosts:        internal,
			LeafLifetime: d.caLeafExpiry,
			Log:          d.log.WithField("component", "localca"),
		})
		if err != nil {
			return fmt.Errorf("local CA: %w", err)
		}
		snap.ca = ca
		sources = append(sources, ca)
	}
	if len(auto) > 0 || cfg.TLS.OnDemand.Enabled {
		a, err := newACME(cfg, auto, d)
		if err != nil {
			return err
		}
		if a != nil {
			snap.acme = a
			sources = append(sources, a)
		}
	}
	snap.certs = certs.NewSelector(sources...)
	return nil
}

// newACME builds the ACME source; in `check` (no openStorage) it only
// checks what can be checked without opening anything.
func newACME(cfg *config.Config, hosts []string, d compileDeps) (*certs.ACME, error) {
	ac := &cfg.TLS.ACME
	var roots *x509.CertPool
	if ac.CARoot != "" {
		pem, err := os.ReadFile(ac.CARoot)
		if err != nil {
			return nil, fmt.Errorf("tls.acme.ca_root: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.acme.ca_root %s: no PEM certificates in it", ac.CARoot)
		}
	}
	if d.openStorage == nil {
		return nil, nil
	}
	store, storeName, err := d.openStorage(cfg)
	var degraded *certs.DegradedError
	switch {
	case errors.As(err, &degraded):
		// Serve what we can (files, the local CA, other apps); certmagic
		// retries until the storage works.
		d.log.WithField("component", "acme").Error(degraded.Error())
	case err != nil:
		return nil, fmt.Errorf("storage %s: %w", describeStorage(cfg), err)
	}
	host, tlsPort := splitPort(cfg.Listen)
	_, httpPort := splitPort(cfg.HTTPListen)
	acfg := certs.ACMEConfig{
		CA:                 ac.ACMEDirectory(),
		Email:              ac.Email,
		Roots:              roots,
		EABKeyID:           ac.EABKeyID,
		EABHMAC:            ac.EABHMAC,
		Hosts:              hosts,
		Storage:            store,
		StorageName:        storeName,
		DisableHTTP01:      ac.DisableHTTP01 || cfg.HTTPListen == config.Off,
		DisableTLSALPN01:   ac.DisableTLSALPN01,
		ListenHost:         host,
		HTTPPort:           httpPort,
		TLSPort:            tlsPort,
		HandshakeWait:      ac.HandshakeWait.D(),
		ImportAutocert:     cfg.TLS.ImportAutocert,
		RenewCheckInterval: d.renewCheck,
		RenewalWindowRatio: ac.RenewalWindowRatio,
		Log:                d.log.WithField("component", "acme"),
	}
	if od := cfg.TLS.OnDemand; od.Enabled {
		acfg.OnDemand = &certs.OnDemandConfig{
			Allow:     append([]string(nil), od.Allow...),
			Ask:       od.Ask,
			AskCache:  od.AskCache.D(),
			Rate:      certs.RateLimit{N: od.Rate.N, Per: od.Rate.Per.D()},
			RatePerIP: certs.RateLimit{N: od.RatePerIP.N, Per: od.RatePerIP.Per.D()},
		}
	}
	a, err := certs.NewACME(acfg)
	if err != nil {
		return nil, fmt.Errorf("tls.acme: %w", err)
	}
	return a, nil
}

func splitPort(addr string) (string, int) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0
	}
	n, _ := strconv.Atoi(port)
	return host, n
}

// describeStorage says where ACME state lives, password hidden.
func describeStorage(cfg *config.Config) string {
	if cfg.Storage == "" {
		return filepath.Join(cfg.StateDir, "acme")
	}
	return cfg.RedactedStorage()
}

// certOwner is an app or TCP service whose hosts need certificates.
type certOwner struct {
	name  string
	hosts []string
	tls   string
}

// certOwners lists the apps, then the TLS-terminating TCP services.
func certOwners(cfg *config.Config) []certOwner {
	var out []certOwner
	for _, a := range cfg.Apps {
		out = append(out, certOwner{a.Name, a.Hosts, a.TLS})
	}
	for _, t := range cfg.TCP {
		if !t.Plain {
			out = append(out, certOwner{t.Name, t.Hosts, t.TLS})
		}
	}
	return out
}
