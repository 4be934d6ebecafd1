package certs

import (
	"crypto/tls"
	"fmt"
)

// Source is anything that can hold certificates: static files, the local
// CA, later ACME. Lookup returns the certificate for the handshake, or nil
// and a nil error when the name is not the source's ("not mine"); an error
// means the name is the source's but it failed to produce a certificate.
// Lookup is called on every handshake, concurrently, and must not block on
// work shared by all handshakes.
type Source interface {
	Lookup(hello *tls.ClientHelloInfo) (*tls.Certificate, error)
}

// Defaulter is implemented by a Source that can offer a certificate for
// handshakes no source claims (no SNI, an unknown name), so the server can
// still complete the handshake and answer 421 Misdirected Request.
type Defaulter interface {
	Default() (*tls.Certificate, error)
}

// Describer is implemented by a Source that can say, for start-up logs and
// `tlsedge check`, whether and how it serves a host ("" when it does not).
type Describer interface {
	Describe(host string) string
}

// Selector tries sources in order; see NewSelector.
type Selector struct {
	sources []Source
}

// NewSelector composes sources into one certificate selector. Order is
// priority: pass static files first, then the local CA (then ACME), so a
// file always beats an issued certificate. The default certificate, served
// when no source claims a handshake, comes from the first source that
// implements Defaulter and has one: with static files first that is the
// first static certificate, otherwise the local CA's certificate for its
// first configured host. Nil sources are ignored.
func NewSelector(sources ...Source) *Selector {
	s := &Selector{}
	for _, src := range sources {
		if src != nil {
			s.sources = append(s.sources, src)
		}
	}
	return s
}

// GetCertificate has the signature of tls.Config.GetCertificate.
func (s *Selector) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	for _, src := range s.sources {
		cert, err := src.Lookup(hello)
		if err != nil {
			// The source owns the name: serving the default instead would
			// only move the failure to a name mismatch on the client.
			return nil, fmt.Errorf("certs: certificate for %q: %w", helloName(hello), err)
		}
		if cert != nil {
			return cert, nil
		}
	}
	cert, err := s.Default()
	if err != nil {
		return nil, fmt.Errorf("certs: default certificate for %q: %w", helloName(hello), err)
	}
	return cert, nil
}

// Default returns the certificate served when no source claims a handshake,
// or an error wrapping ErrNoCertificate when no source offers one.
func (s *Selector) Default() (*tls.Certificate, error) {
	for _, src := range s.sources {
		d, ok := src.(Defaulter)
		if !ok {
			continue
		}
		cert, err := d.Default()
		if err != nil {
			return nil, err
		}
		if cert != nil {
			return cert, nil
		}
	}
	return nil, ErrNoCertificate
}

// Describe says which source serves host, e.g. "file /etc/x.crt" or
// "local CA"; for a host no source claims, it says the default certificate
// will be served (and clients will see a name mismatch).
func (s *Selector) Describe(host string) string {
	for _, src := range s.sources {
		if d, ok := src.(Describer); ok {
			if what := d.Describe(host); what != "" {
				return what
			}
		}
	}
	for _, src := range s.sources {
		if d, ok := src.(Defaulter); ok {
			if cert, err := d.Default(); err == nil && cert != nil {
				what := "default certificate"
				if ds, ok := src.(Describer); ok && cert.Leaf != nil {
					if names := certNames(cert.Leaf); len(names) > 0 {
						what += " (" + ds.Describe(names[0]) + ")"
					}
				}
				return "none: " + what + ", clients will see a name mismatch"
			}
		}
	}
	return "none: no certificate at all, handshakes will fail"
}
