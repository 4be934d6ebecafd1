package acmetest

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"slices"
	"testing"
	"time"
)

// Everything below counts across restarts: a test that restarts the CA sees
// the orders and issuances of every run, in the order they happened.

// Log is everything Pebble wrote to stdout and stderr so far, across
// restarts. Each line carries Pebble's prefix and timestamp.
func (c *CA) Log() string {
	return snapshot(c.journal, func(j *journal) string { return j.log.String() })
}

// Orders is the number of orders Pebble created, counted from its
// `Added order "ID" to the db` lines. Rejected new-order requests (bad
// nonce, blocked name, missing EAB) are not orders.
func (c *CA) Orders() int {
	return snapshot(c.journal, func(j *journal) int { return len(j.orders) })
}

// NewOrders are the orders Pebble created, with their identifiers, as the
// proxy saw Pebble's 201 answers (Pebble logs no identifiers). An order
// appears here and in Orders at nearly the same moment; wait on the one
// you then read.
func (c *CA) NewOrders() []Order {
	return snapshot(c.journal, func(j *journal) []Order {
		out := make([]Order, len(j.created))
		for i, o := range j.created {
			o.Names = slices.Clone(o.Names)
			out[i] = o
		}
		return out
	})
}

// OrderedNames is the identifiers of NewOrders, flattened in order: a name
// ordered twice appears twice.
func (c *CA) OrderedNames() []string {
	return snapshot(c.journal, func(j *journal) []string {
		var names []string
		for _, o := range j.created {
			names = append(names, o.Names...)
		}
		return names
	})
}

// Issued is the serials of the certificates Pebble issued, in issuance
// order, from its "Issued certificate serial SERIAL for order ID" lines,
// spelled as Serial spells them.
func (c *CA) Issued() []string {
	return snapshot(c.journal, func(j *journal) []string { return slices.Clone(j.issued) })
}

// WaitIssued waits until at least n certificates have been issued and
// returns Issued. After timeout it fails the test (Pebble's output is
// logged by Start's cleanup).
func (c *CA) WaitIssued(t testing.TB, n int, timeout time.Duration) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if !c.journal.wait(ctx, func(j *journal) bool { return len(j.issued) >= n }) {
		t.Fatalf("acmetest: %d certificates issued after %s, want %d", len(c.Issued()), timeout, n)
	}
	return c.Issued()
}

// Serial spells cert's serial number as Pebble does in its log and in
// /cert-status-by-serial: lowercase hex of the serial's big-endian bytes,
// so with an even number of digits ("0a1b", where big.Int.Text(16) gives
// "a1b").
func Serial(cert *x509.Certificate) string {
	return hex.EncodeToString(cert.SerialNumber.Bytes())
}
