package acmetest

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"testing"
)

// Roots returns every root Pebble has used since Start. Pebble generates a
// new root (and intermediate) on every start, so after Restart a
// certificate issued before chains to the old root and one issued after to
// the new one; the pool holds both. While Pebble runs, its current root is
// fetched from the management API (/roots/0) first.
func (c *CA) Roots(t testing.TB) *x509.CertPool {
	t.Helper()
	return c.pool(t, func() []*x509.Certificate { return c.roots })
}

// Intermediates is Roots for the issuing intermediates (/intermediates/0).
// ACME clients receive the intermediate in the chain anyway; this is for
// checking a leaf alone.
func (c *CA) Intermediates(t testing.TB) *x509.CertPool {
	t.Helper()
	return c.pool(t, func() []*x509.Certificate { return c.inters })
}

func (c *CA) pool(t testing.TB, certs func() []*x509.Certificate) *x509.CertPool {
	t.Helper()
	c.life.Lock()
	if c.pebble != nil {
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.startTimeout())
		err := c.fetchRoots(ctx)
		cancel()
		if err != nil {
			c.life.Unlock()
			t.Fatalf("acmetest: %v", err)
		}
	}
	c.life.Unlock()

	c.mu.Lock()
	defer c.mu.Unlock()
	p := x509.NewCertPool()
	for _, cert := range certs() {
		p.AddCert(cert)
	}
	return p
}

// fetchRoots adds Pebble's current root and intermediate to those seen.
// Pebble also serves alternate chains (/roots/1...) when
// PEBBLE_ALTERNATE_ROOTS is set; the harness never sets it.
func (c *CA) fetchRoots(ctx context.Context) error {
	root, err := c.getCert(ctx, c.ManagementURL()+"/roots/0")
	if err != nil {
		return err
	}
	inter, err := c.getCert(ctx, c.ManagementURL()+"/intermediates/0")
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.roots = addUnique(c.roots, root)
	c.inters = addUnique(c.inters, inter)
	return nil
}

func addUnique(certs []*x509.Certificate, cert *x509.Certificate) []*x509.Certificate {
	for _, have := range certs {
		if bytes.Equal(have.Raw, cert.Raw) {
			return certs
		}
	}
	return append(certs, cert)
}

// getCert fetches one PEM certificate.
func (c *CA) getCert(ctx context.Context, url string) (*x509.Certificate, error) {
	body, err := c.get(ctx, url)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(body)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("GET %s: no PEM certificate in the answer", url)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	return cert, nil
}

// get fetches url from Pebble and wants 200 OK.
func (c *CA) get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	// Pebble rejects ACME requests without one (RFC 8555 section 6.1).
	req.Header.Set("User-Agent", "tlsedge-acmetest")
	resp, err := c.apiTLS.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, nil
}
