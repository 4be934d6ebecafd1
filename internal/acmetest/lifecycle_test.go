package acmetest_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/tlsedge/tlsedge/internal/acmetest"
)

// TestStopRestart: Stop makes the directory refuse connections, Restart
// brings it back on the same URL and ports without the old accounts, and
// Roots keeps the old root so certificates from both runs verify.
func TestStopRestart(t *testing.T) {
	t.Parallel()
	ca := acmetest.Start(t, acmetest.Options{})
	srv := serveHTTP01(t, ca)
	dir, httpPort, tlsPort := ca.DirectoryURL(), ca.HTTPPort(), ca.TLSPort()

	client := newClient(t, ca, nil)
	before := obtainHTTP01(t, client, srv, "before.example.test")

	ca.Stop()
	ca.Stop() // idempotent
	err := getDirectory(ca)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("directory while stopped: %v, want connection refused", err)
	}

	ca.Restart(t)
	if ca.DirectoryURL() != dir || ca.HTTPPort() != httpPort || ca.TLSPort() != tlsPort {
		t.Errorf("after Restart: %s %d %d, want %s %d %d",
			ca.DirectoryURL(), ca.HTTPPort(), ca.TLSPort(), dir, httpPort, tlsPort)
	}
	if err := getDirectory(ca); err != nil {
		t.Fatalf("directory after Restart: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), issueTimeout)
	defer cancel()
	if _, err := client.GetReg(ctx, ""); !errors.Is(err, acme.ErrNoAccount) {
		t.Errorf("old account after Restart: %v, want acme.ErrNoAccount", err)
	}
	after := obtainHTTP01(t, newClient(t, ca, nil), srv, "after.example.test")

	roots := ca.Roots(t)
	verify(t, before, roots, "before.example.test")
	verify(t, after, roots, "after.example.test")
	if bytes.Equal(before[1].Raw, after[1].Raw) {
		t.Errorf("same intermediate before and after Restart: want a new CA per run")
	}
	if got := ca.Orders(); got != 2 {
		t.Errorf("Orders() = %d across the restart, want 2", got)
	}
	if got := ca.Issued(); len(got) != 2 {
		t.Errorf("Issued() = %q across the restart, want 2 serials", got)
	}
}

// getDirectory fetches the directory once.
func getDirectory(ca *acmetest.CA) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ca.DirectoryURL(), nil)
	if err != nil {
		return err
	}
	resp, err := ca.HTTPClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

// TestEAB: with EAB keys configured, the directory says so and Pebble
// accepts an account only with a binding.
func TestEAB(t *testing.T) {
	t.Parallel()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	ca := acmetest.Start(t, acmetest.Options{EAB: map[string]string{"kid-1": base64.RawURLEncoding.EncodeToString(key)}})

	ctx, cancel := context.WithTimeout(context.Background(), issueTimeout)
	defer cancel()
	acctKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	bare := &acme.Client{Key: acctKey, DirectoryURL: ca.DirectoryURL(), HTTPClient: ca.HTTPClient()}
	dir, err := bare.Discover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !dir.ExternalAccountRequired {
		t.Errorf("directory does not say externalAccountRequired")
	}
	if _, err := bare.Register(ctx, &acme.Account{}, acme.AcceptTOS); err == nil {
		t.Errorf("registered without a binding, want an error")
	}

	newClient(t, ca, &acme.ExternalAccountBinding{KID: "kid-1", Key: key})
	if !strings.Contains(ca.Log(), `Successful newAccount Binding with CA using kid "kid-1"`) {
		t.Errorf("Pebble did not log the binding")
	}
}

// TestBlocklist: a blocked name is refused at new-order, which is not an
// order.
func TestBlocklist(t *testing.T) {
	t.Parallel()
	ca := acmetest.Start(t, acmetest.Options{Blocklist: []string{"blocked.example.test"}})
	client := newClient(t, ca, nil)
	ctx, cancel := context.WithTimeout(context.Background(), issueTimeout)
	defer cancel()
	_, err := client.AuthorizeOrder(ctx, acme.DomainIDs("www.blocked.example.test"))
	var ae *acme.Error
	if !errors.As(err, &ae) || ae.ProblemType != "urn:ietf:params:acme:error:rejectedIdentifier" {
		t.Fatalf("order for a blocked name: %v, want rejectedIdentifier", err)
	}
	if got := ca.Orders(); got != 0 {
		t.Errorf("Orders() = %d, want 0", got)
	}
}

// TestEnvironment: Pebble runs with the settings the harness promises,
// even when the developer's shell exports PEBBLE_VA_ALWAYS_VALID (not
// parallel: it sets an environment variable).
func TestEnvironment(t *testing.T) {
	t.Setenv("PEBBLE_VA_ALWAYS_VALID", "1")
	ca := acmetest.Start(t, acmetest.Options{})
	log := ca.Log()
	if m := missing(log,
		"Disabling random VA sleeps",
		"Configured to reject 0% of good nonces",
		"Configured to attempt authz reuse for each identifier 0% of the time",
		"Using custom DNS resolver for ACME challenges: 127.0.0.1:",
		`Loaded profile "default" with certificate validity period of 7776000 seconds`,
	); len(m) > 0 {
		t.Errorf("Pebble log lacks %q", m)
	}
	if strings.Contains(log, "VA always returns valid") {
		t.Errorf("PEBBLE_VA_ALWAYS_VALID reached Pebble")
	}
}
