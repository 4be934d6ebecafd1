package certs

import (
	"strings"
	"testing"
)

// FuzzLoadPair feeds arbitrary bytes to the PEM pair parser that reads
// every certificate file: it must never panic, and whatever it accepts must
// be servable (a parsed leaf, a key, at least one name).
func FuzzLoadPair(f *testing.F) {
	ti := newTestIssuer(f)
	certPEM, keyPEM := ti.issue(f, "a.test", "*.b.test", "127.0.0.1")
	cnPEM, cnKey := ti.issue(f, "cn:Legacy.Test")
	combined := append(append([]byte{}, certPEM...), keyPEM...)
	f.Add(certPEM, keyPEM)
	f.Add(combined, combined)
	f.Add(cnPEM, cnKey)
	f.Add(certPEM, cnKey) // mismatch
	f.Add(keyPEM, certPEM)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), keyPEM)
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		pemKinds(certPEM)
		cert, err := parsePair(certPEM, keyPEM)
		if err != nil {
			if cert != nil {
				t.Fatal("certificate returned with an error")
			}
			return
		}
		if cert.Leaf == nil || cert.PrivateKey == nil || len(cert.Certificate) == 0 {
			t.Fatalf("accepted pair is incomplete: %+v", cert)
		}
		for _, n := range certNames(cert.Leaf) {
			if normalizeName(n) != n {
				t.Fatalf("index key %q is not normalized", n)
			}
		}
		if len(certNames(cert.Leaf)) == 0 {
			t.Fatal("accepted a certificate with no name")
		}
	})
}

// FuzzHostName feeds client-chosen server names and configured host
// patterns through normalization and local CA coverage: keys are stable,
// and what the CA would issue for (and name a file after) is always a
// configured pattern, never something the client spelled.
func FuzzHostName(f *testing.F) {
	for _, s := range []string{"a.test", "A.Test.", "x.wild.test", "a.b.wild.test", "::1", "::ffff:127.0.0.1",
		"127.0.0.1", "fe80::1%eth0", "../../etc/passwd.wild.test", "*.wild.test", ".", "", "a..wild.test"} {
		f.Add(s)
	}
	ca := &LocalCA{
		exact:     map[string]bool{"app.test": true, "localhost": true, "127.0.0.1": true, "::1": true},
		wildcards: map[string]bool{"*.wild.test": true},
	}
	f.Fuzz(func(t *testing.T, name string) {
		key := normalizeName(name)
		if again := normalizeName(key); again != key && !strings.HasSuffix(key, ".") {
			t.Fatalf("normalizeName not stable: %q -> %q -> %q", name, key, again)
		}
		if got, ok := ca.cover(key); ok && !ca.exact[got] && !ca.wildcards[got] {
			t.Fatalf("cover(%q) = %q, not a configured name", key, got)
		}
		if pattern, err := parseHostPattern(name); err == nil {
			stem := fileStem(pattern)
			if strings.ContainsAny(stem, "/\\*:") || stem == "." || stem == ".." {
				t.Fatalf("host %q gives unsafe file name %q", name, stem)
			}
		}
	})
}
