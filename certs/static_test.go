package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// staticFixture writes four certificates: the default (first), an exact
// name, a wildcard and an IP address.
type staticFixture struct {
	issuer                     *testIssuer
	dir                        string
	pairs                      []Pair
	def, exact, wildcard, ipv4 *big.Int
}

func newStaticFixture(t *testing.T) *staticFixture {
	f := &staticFixture{issuer: newTestIssuer(t), dir: t.TempDir()}
	var p [4]Pair
	p[0], f.def = f.issuer.writePair(t, f.dir, "default", "default.test")
	p[1], f.exact = f.issuer.writePair(t, f.dir, "exact", "a.example.com", "b.example.com")
	p[2], f.wildcard = f.issuer.writePair(t, f.dir, "wild", "*.wild.example.com")
	p[3], f.ipv4 = f.issuer.writePair(t, f.dir, "ip", "127.0.0.1")
	f.pairs = p[:]
	return f
}

func TestStaticSNIHandshake(t *testing.T) {
	f := newStaticFixture(t)
	s, err := NewStatic(StaticConfig{Pairs: f.pairs})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, "127.0.0.1", NewSelector(s).GetCertificate)
	tests := []struct {
		name, sni string
		want      *big.Int
	}{
		{"exact", "a.example.com", f.exact},
		{"second SAN", "b.example.com", f.exact},
		{"case-insensitive", "A.Example.COM", f.exact},
		{"wildcard", "x.wild.example.com", f.wildcard},
		{"wildcard covers one label only", "y.x.wild.example.com", f.def},
		{"wildcard does not cover its apex", "wild.example.com", f.def},
		{"unknown name gets the default", "unknown.test", f.def},
		{"no SNI: the dialed IP", "", f.ipv4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := servedSerial(t, addr, tt.sni); got.Cmp(tt.want) != 0 {
				t.Errorf("SNI %q served serial %v, want %v", tt.sni, got, tt.want)
			}
		})
	}
}

func TestStaticLookupNormalizes(t *testing.T) {
	f := newStaticFixture(t)
	cnPair := Pair{CertFile: filepath.Join(f.dir, "cn.pem")}
	certPEM, keyPEM := f.issuer.issue(t, "cn:Legacy.Test")
	writeFile(t, f.dir, "cn.pem", append(certPEM, keyPEM...))
	v6, v6Serial := f.issuer.writePair(t, f.dir, "v6", "::1")
	s, err := NewStatic(StaticConfig{Pairs: append(f.pairs, cnPair, v6)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want *big.Int // nil: not found
	}{
		{"a.example.com.", f.exact}, // a trailing dot names the same host
		{"A.EXAMPLE.COM", f.exact},
		{"Z.Wild.Example.Com.", f.wildcard},
		{"legacy.test", serialOf(t, certPEM)}, // common name when no SAN
		{"::0001", v6Serial},
		{"0:0:0:0:0:0:0:1", v6Serial},
		{"::ffff:127.0.0.1", f.ipv4},
		{"nothere.test", nil},
		{".", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := s.Lookup(&tls.ClientHelloInfo{ServerName: tt.name})
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.want == nil && cert != nil:
				t.Errorf("Lookup(%q) = %v, want nil", tt.name, cert.Leaf.SerialNumber)
			case tt.want != nil && (cert == nil || cert.Leaf.SerialNumber.Cmp(tt.want) != 0):
				t.Errorf("Lookup(%q) = %v, want serial %v", tt.name, cert, tt.want)
			}
		})
	}
	want := []string{"*.wild.example.com", "127.0.0.1", "::1", "a.example.com", "b.example.com", "default.test", "legacy.test"}
	if got := s.Names(); !slices.Equal(got, want) {
		t.Errorf("Names() = %q, want %q", got, want)
	}
}

func TestNewStaticErrors(t *testing.T) {
	ti := newTestIssuer(t)
	dir := t.TempDir()
	good, _ := ti.writePair(t, dir, "good", "good.test")
	_, otherKey := ti.issue(t, "other.test")
	mismatchKey := writeFile(t, dir, "mismatch.key", otherKey)
	garbage := writeFile(t, dir, "garbage.crt", []byte("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"))
	noNameCert, noNameKey := ti.issue(t)
	noName := Pair{writeFile(t, dir, "noname.crt", noNameCert), writeFile(t, dir, "noname.key", noNameKey)}
	brokenDir := t.TempDir()
	writeFile(t, brokenDir, "x.crt", []byte("garbage"))
	writeFile(t, brokenDir, "x.key", []byte("garbage"))

	tests := []struct {
		name     string
		cfg      StaticConfig
		contains string
		is       error
	}{
		{"missing certificate", StaticConfig{Pairs: []Pair{{filepath.Join(dir, "nope.crt"), good.KeyFile}}}, "nope.crt", os.ErrNotExist},
		{"missing key", StaticConfig{Pairs: []Pair{{good.CertFile, filepath.Join(dir, "nope.key")}}}, "nope.key", os.ErrNotExist},
		{"invalid PEM", StaticConfig{Pairs: []Pair{{garbage, good.KeyFile}}}, "garbage.crt", nil},
		{"key does not match", StaticConfig{Pairs: []Pair{{good.CertFile, mismatchKey}}}, "mismatch.key", nil},
		{"certificate without names", StaticConfig{Pairs: []Pair{noName}}, "noname.crt", errNoNames},
		{"same file twice", StaticConfig{Pairs: []Pair{good, good}}, "listed twice", nil},
		{"nothing configured", StaticConfig{}, "no certificate", ErrNoCertificate},
		{"empty folder", StaticConfig{Dir: t.TempDir()}, "no certificate", ErrNoCertificate},
		{"missing folder", StaticConfig{Dir: filepath.Join(dir, "nodir")}, "nodir", os.ErrNotExist},
		{"broken pair in folder", StaticConfig{Dir: brokenDir}, "x.crt", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, _ := testLog()
			tt.cfg.Log = log
			s, err := NewStatic(tt.cfg)
			if err == nil {
				t.Fatalf("NewStatic = %v, want an error", s.Names())
			}
			if !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("error %q does not mention %q", err, tt.contains)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %v", err, tt.is)
			}
		})
	}
}

// TestStaticReload replaces a certificate while a server serves it: new
// handshakes get the new one, an established connection keeps working.
func TestStaticReload(t *testing.T) {
	ti := newTestIssuer(t)
	dir := t.TempDir()
	p, oldSerial := ti.writePair(t, dir, "site", "site.test")
	log, hook := testLog()
	s, err := NewStatic(StaticConfig{Pairs: []Pair{p}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, "127.0.0.1", NewSelector(s).GetCertificate)
	established, err := dial(t, addr, "site.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	echo(t, established, "before")

	s.poll(time.Now()) // nothing changed: nothing reloaded
	if got := servedSerial(t, addr, "site.test"); got.Cmp(oldSerial) != 0 {
		t.Fatalf("serial before replacement = %v, want %v", got, oldSerial)
	}

	_, newSerial := ti.writePair(t, dir, "site", "site.test", "www.site.test")
	s.poll(time.Now())
	if got := servedSerial(t, addr, "site.test"); got.Cmp(newSerial) != 0 {
		t.Errorf("serial after replacement = %v, want %v", got, newSerial)
	}
	if got := servedSerial(t, addr, "www.site.test"); got.Cmp(newSerial) != 0 {
		t.Errorf("new name www.site.test served serial %v, want %v", got, newSerial)
	}
	echo(t, established, "after")
	if got := established.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(oldSerial) != 0 {
		t.Errorf("established connection changed certificate to %v", got)
	}
	if w := warnings(hook); len(w) != 0 {
		t.Errorf("good replacement logged warnings: %v", w[0].Data)
	}
}

// TestStaticBrokenReplacement writes broken files over a served pair: the
// old certificate keeps serving and one warning names the file.
func TestStaticBrokenReplacement(t *testing.T) {
	ti := newTestIssuer(t)
	_, otherKey := ti.issue(t, "other.test")
	tests := []struct {
		name    string
		breakIt func(t *testing.T, p Pair)
	}{
		{"garbage certificate", func(t *testing.T, p Pair) {
			writeFile(t, filepath.Dir(p.CertFile), filepath.Base(p.CertFile), []byte("not a certificate"))
		}},
		{"key of another certificate", func(t *testing.T, p Pair) {
			writeFile(t, filepath.Dir(p.KeyFile), filepath.Base(p.KeyFile), otherKey)
		}},
		{"certificate deleted", func(t *testing.T, p Pair) {
			if err := os.Remove(p.CertFile); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p, oldSerial := ti.writePair(t, dir, "site", "site.test")
			log, hook := testLog()
			s, err := NewStatic(StaticConfig{Pairs: []Pair{p}, Log: log})
			if err != nil {
				t.Fatal(err)
			}
			addr := serveTLS(t, "127.0.0.1", NewSelector(s).GetCertificate)
			tt.breakIt(t, p)
			for range 5 {
				s.poll(time.Now())
			}
			if got := servedSerial(t, addr, "site.test"); got.Cmp(oldSerial) != 0 {
				t.Errorf("served %v after broken replacement, want the old %v", got, oldSerial)
			}
			w := warnings(hook)
			if len(w) != 1 {
				t.Fatalf("got %d warnings, want exactly 1", len(w))
			}
			if w[0].Data["file"] != p.CertFile || w[0].Data["error"] == nil {
				t.Errorf("warning fields = %v, want file %s and an error", w[0].Data, p.CertFile)
			}

			// Repaired: the new certificate is picked up.
			_, newSerial := ti.writePair(t, dir, "site", "site.test")
			s.poll(time.Now())
			if got := servedSerial(t, addr, "site.test"); got.Cmp(newSerial) != 0 {
				t.Errorf("served %v after repair, want %v", got, newSerial)
			}
		})
	}
}

// TestStaticRun drives reloads through Run, with a short poll interval.
func TestStaticRun(t *testing.T) {
	ti := newTestIssuer(t)
	dir := t.TempDir()
	p, _ := ti.writePair(t, dir, "site", "site.test")
	log, _ := testLog()
	s, err := NewStatic(StaticConfig{Pairs: []Pair{p}, PollInterval: 5 * time.Millisecond, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	_, newSerial := ti.writePair(t, dir, "site", "site.test")
	deadline := time.Now().Add(30 * time.Second) // a bound for failure, not a timing assertion
	for {
		cert, _ := s.Lookup(&tls.ClientHelloInfo{ServerName: "site.test"})
		if cert.Leaf.SerialNumber.Cmp(newSerial) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run never picked up the replaced certificate")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done // Run returns once its context is done
}
