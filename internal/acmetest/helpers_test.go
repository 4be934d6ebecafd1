package acmetest_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/tlsedge/tlsedge/internal/acmetest"
)

// issueTimeout bounds one issuance. With PEBBLE_VA_NOSLEEP it takes a few
// seconds, most of them x/crypto/acme's 1 s polling interval.
const issueTimeout = 60 * time.Second

// newClient returns an ACME client for ca with a fresh key and a registered
// account, bound to eab when it is not nil.
func newClient(t *testing.T, ca *acmetest.CA, eab *acme.ExternalAccountBinding) *acme.Client {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := &acme.Client{Key: key, DirectoryURL: ca.DirectoryURL(), HTTPClient: ca.HTTPClient(), UserAgent: "acmetest-test"}
	ctx, cancel := context.WithTimeout(context.Background(), issueTimeout)
	defer cancel()
	if _, err := c.Register(ctx, &acme.Account{ExternalAccountBinding: eab}, acme.AcceptTOS); err != nil {
		t.Fatalf("register: %v", err)
	}
	return c
}

// http01Server answers HTTP-01 challenges on the CA's HTTPPort and counts
// the validation requests it gets, proving Pebble really came.
type http01Server struct {
	mu        sync.Mutex
	responses map[string]string // path to key authorization
	hits      atomic.Int64
}

func serveHTTP01(t *testing.T, ca *acmetest.CA) *http01Server {
	t.Helper()
	s := &http01Server{responses: map[string]string{}}
	ln, err := net.Listen("tcp", ca.HTTPAddr())
	if err != nil {
		t.Fatalf("listen on the HTTP-01 port: %v", err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		body, ok := s.responses[r.URL.Path]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		s.hits.Add(1)
		_, _ = w.Write([]byte(body))
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return s
}

func (s *http01Server) set(path, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.responses[path] = body
}

// obtainHTTP01 runs one order for name through HTTP-01 and returns the
// chain, leaf first.
func obtainHTTP01(t *testing.T, c *acme.Client, srv *http01Server, name string, opts ...acme.OrderOption) []*x509.Certificate {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), issueTimeout)
	defer cancel()
	o, err := c.AuthorizeOrder(ctx, acme.DomainIDs(name), opts...)
	if err != nil {
		t.Fatalf("new order: %v", err)
	}
	for _, u := range o.AuthzURLs {
		z, err := c.GetAuthorization(ctx, u)
		if err != nil {
			t.Fatalf("authorization: %v", err)
		}
		if z.Status != acme.StatusPending {
			continue // reused; see PEBBLE_AUTHZREUSE in ca.go
		}
		var chal *acme.Challenge
		for _, ch := range z.Challenges {
			if ch.Type == "http-01" {
				chal = ch
			}
		}
		if chal == nil {
			t.Fatalf("no http-01 challenge offered for %s", name)
		}
		resp, err := c.HTTP01ChallengeResponse(chal.Token)
		if err != nil {
			t.Fatal(err)
		}
		srv.set(c.HTTP01ChallengePath(chal.Token), resp)
		if _, err := c.Accept(ctx, chal); err != nil {
			t.Fatalf("accept: %v", err)
		}
		if _, err := c.WaitAuthorization(ctx, z.URI); err != nil {
			t.Fatalf("authorization %s: %v", z.URI, err)
		}
	}
	if o, err = c.WaitOrder(ctx, o.URI); err != nil {
		t.Fatalf("order: %v", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{name}}, key)
	if err != nil {
		t.Fatal(err)
	}
	ders, _, err := c.CreateCertFromOrder(ctx, o, csr, true)
	if err != nil {
		t.Fatalf("finalize: %v", err)
	}
	chain := make([]*x509.Certificate, len(ders))
	for i, der := range ders {
		if chain[i], err = x509.ParseCertificate(der); err != nil {
			t.Fatal(err)
		}
	}
	return chain
}

// verify checks that chain is valid for name under roots.
func verify(t *testing.T, chain []*x509.Certificate, roots *x509.CertPool, name string) {
	t.Helper()
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter}); err != nil {
		t.Fatalf("certificate for %s does not chain to Pebble's roots: %v", name, err)
	}
}

// missing returns the lines that log does not contain.
func missing(log string, lines ...string) []string {
	var out []string
	for _, l := range lines {
		if !strings.Contains(log, l) {
			out = append(out, l)
		}
	}
	return out
}
