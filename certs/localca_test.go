package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func newTestLocalCA(t *testing.T, cfg LocalCAConfig) *LocalCA {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(t.TempDir(), "ca")
	}
	if cfg.Log == nil {
		cfg.Log, _ = testLog()
	}
	ca, err := NewLocalCA(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func rootPool(ca *LocalCA) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.RootCertificate())
	return pool
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestLocalCARootCreatedOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	first := newTestLocalCA(t, LocalCAConfig{Dir: dir})
	root := first.RootCertificate()
	if !root.IsCA || !strings.HasPrefix(root.Subject.CommonName, "tlsedge Local CA - ") {
		t.Errorf("root = CA %v, CN %q", root.IsCA, root.Subject.CommonName)
	}
	if got, want := root.NotAfter.Sub(root.NotBefore), 10*365*24*time.Hour; got < want {
		t.Errorf("root valid for %s, want at least 10 years", got)
	}
	for path, want := range map[string]os.FileMode{
		dir:                            0o700,
		first.RootPath():               0o644,
		filepath.Join(dir, "root.key"): 0o600,
	} {
		if got := fileMode(t, path); got != want {
			t.Errorf("mode of %s = %v, want %v", path, got, want)
		}
	}
	if first.RootPath() != filepath.Join(dir, "root.crt") {
		t.Errorf("RootPath() = %s", first.RootPath())
	}
	second := newTestLocalCA(t, LocalCAConfig{Dir: dir})
	if !second.RootCertificate().Equal(root) {
		t.Error("a second start from the same dir generated a new root")
	}
}

func TestLocalCARootErrors(t *testing.T) {
	ti := newTestIssuer(t)
	leafCert, leafKey := ti.issue(t, "not-a-ca.test")
	tests := []struct {
		name     string
		spoil    func(t *testing.T, dir string)
		contains string
	}{
		{"corrupted root certificate", func(t *testing.T, dir string) {
			writeFile(t, dir, "root.crt", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
		}, "root.crt"},
		{"root key missing", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "root.key")); err != nil {
				t.Fatal(err)
			}
		}, "root.key"},
		{"root certificate missing", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "root.crt")); err != nil {
				t.Fatal(err)
			}
		}, "root.crt"},
		{"not a CA", func(t *testing.T, dir string) {
			writeFile(t, dir, "root.crt", leafCert)
			writeFile(t, dir, "root.key", leafKey)
		}, "not a CA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			newTestLocalCA(t, LocalCAConfig{Dir: dir})
			tt.spoil(t, dir)
			before, _ := os.ReadFile(filepath.Join(dir, "root.crt"))
			_, err := NewLocalCA(LocalCAConfig{Dir: dir})
			if err == nil || !strings.Contains(err.Error(), tt.contains) {
				t.Fatalf("NewLocalCA error = %v, want one mentioning %q", err, tt.contains)
			}
			after, _ := os.ReadFile(filepath.Join(dir, "root.crt"))
			if string(before) != string(after) {
				t.Error("a broken root was overwritten")
			}
		})
	}
}

func TestNewLocalCAConfigErrors(t *testing.T) {
	tests := []struct {
		name     string
		cfg      LocalCAConfig
		contains string
	}{
		{"no dir", LocalCAConfig{}, "Dir"},
		{"wildcard in the middle", LocalCAConfig{Dir: t.TempDir(), Hosts: []string{"a.*.test"}}, `"a.*.test"`},
		{"bare wildcard", LocalCAConfig{Dir: t.TempDir(), Hosts: []string{"*"}}, `"*"`},
		{"partial wildcard", LocalCAConfig{Dir: t.TempDir(), Hosts: []string{"a*.test"}}, `"a*.test"`},
		{"path in a host", LocalCAConfig{Dir: t.TempDir(), Hosts: []string{"../x"}}, `"../x"`},
		{"negative lifetime", LocalCAConfig{Dir: t.TempDir(), LeafLifetime: -time.Hour}, "-1h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewLocalCA(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.contains) {
				t.Fatalf("NewLocalCA error = %v, want one mentioning %s", err, tt.contains)
			}
		})
	}
}

// TestLocalCALeafVerifies completes real handshakes that verify the served
// leaf against the root, then verifies it again with x509 directly.
func TestLocalCALeafVerifies(t *testing.T) {
	ca := newTestLocalCA(t, LocalCAConfig{Hosts: []string{"app.test", "*.wild.test"}})
	sel := NewSelector(ca)
	tests := []struct {
		name, listen, serverName string
	}{
		{"localhost", "127.0.0.1", "localhost"},
		{"IPv4 loopback, no SNI", "127.0.0.1", "127.0.0.1"},
		{"IPv6 loopback, no SNI", "::1", "::1"},
		{"configured host", "127.0.0.1", "app.test"},
		{"configured host, other case", "127.0.0.1", "APP.test"},
		{"under a wildcard", "127.0.0.1", "x.wild.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := serveTLS(t, tt.listen, sel.GetCertificate)
			conn, err := dial(t, addr, tt.serverName, rootPool(ca))
			if err != nil {
				t.Fatalf("verified handshake for %q: %v", tt.serverName, err)
			}
			chain := conn.ConnectionState().PeerCertificates
			if len(chain) != 1 {
				t.Errorf("served %d certificates, want the leaf only", len(chain))
			}
			_, err = chain[0].Verify(x509.VerifyOptions{
				DNSName:   tt.serverName,
				Roots:     rootPool(ca),
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if err != nil {
				t.Errorf("x509 verification for %q: %v", tt.serverName, err)
			}
		})
	}
	t.Run("uncovered name fails verification", func(t *testing.T) {
		addr := serveTLS(t, "127.0.0.1", sel.GetCertificate)
		_, err := dial(t, addr, "other.test", rootPool(ca))
		var hostErr x509.HostnameError
		if !errors.As(err, &hostErr) {
			t.Fatalf("handshake for other.test = %v, want a hostname error (default certificate)", err)
		}
	})
}

func TestLocalCACover(t *testing.T) {
	ca := newTestLocalCA(t, LocalCAConfig{Hosts: []string{"app.test", "*.wild.test", "10.1.2.3"}})
	tests := []struct {
		name, want string // want "" = not covered
	}{
		{"app.test", "app.test"},
		{"app.test.", "app.test"},
		{"localhost", "localhost"},
		{"::1", "::1"},
		{"10.1.2.3", "10.1.2.3"},
		{"a.wild.test", "*.wild.test"},
		{"A-1.WILD.test", "*.wild.test"},
		{"wild.test", ""},
		{"a.b.wild.test", ""},
		{"a_b.wild.test", ""},
		{"../x.wild.test", ""},
		{"other.test", ""},
		{"10.1.2.4", ""},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ca.cover(normalizeName(tt.name))
			if got != tt.want || ok != (tt.want != "") {
				t.Errorf("cover(%q) = %q, %v; want %q", tt.name, got, ok, tt.want)
			}
			cert, err := ca.Lookup(&tls.ClientHelloInfo{ServerName: tt.name})
			if err != nil || (cert != nil) != ok {
				t.Errorf("Lookup(%q) = %v, %v; want a certificate: %v", tt.name, cert != nil, err, ok)
			}
		})
	}
}

func TestLocalCALeafCachedOnDisk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	first := newTestLocalCA(t, LocalCAConfig{Dir: dir, Hosts: []string{"app.test", "*.wild.test"}})
	for _, name := range []string{"app.test", "x.wild.test", "::1"} {
		if _, err := first.Lookup(&tls.ClientHelloInfo{ServerName: name}); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"app.test", "_wildcard.wild.test", "__1"} {
		if got := fileMode(t, filepath.Join(dir, "leaves", f+".key")); got != 0o600 {
			t.Errorf("mode of %s.key = %v, want 0600", f, got)
		}
	}
	second := newTestLocalCA(t, LocalCAConfig{Dir: dir, Hosts: []string{"app.test", "*.wild.test"}})
	for _, name := range []string{"app.test", "y.wild.test", "::1"} {
		a, _ := first.Lookup(&tls.ClientHelloInfo{ServerName: name})
		b, err := second.Lookup(&tls.ClientHelloInfo{ServerName: name})
		if err != nil {
			t.Fatal(err)
		}
		if !a.Leaf.Equal(b.Leaf) {
			t.Errorf("%s: restart issued a new certificate instead of reusing the cached one", name)
		}
	}
	if n := second.issued.Load(); n != 0 {
		t.Errorf("restart issued %d certificates, want 0", n)
	}
}

func TestLocalCARenewal(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := newFakeClock(start)
	dir := filepath.Join(t.TempDir(), "ca")
	cfg := LocalCAConfig{Dir: dir, Hosts: []string{"app.test"}, Now: clock.Now}
	ca := newTestLocalCA(t, cfg)
	hello := &tls.ClientHelloInfo{ServerName: "app.test"}
	serial := func() string {
		t.Helper()
		cert, err := ca.Lookup(hello)
		if err != nil {
			t.Fatal(err)
		}
		return cert.Leaf.SerialNumber.String()
	}
	first := serial()
	cert, _ := ca.Lookup(hello)
	if got := cert.Leaf.NotAfter.Sub(start); got != DefaultLeafLifetime {
		t.Errorf("leaf lifetime = %s, want %s", got, DefaultLeafLifetime)
	}
	steps := []struct {
		at      time.Duration
		renewed bool
	}{
		{time.Hour, false},
		{4 * 24 * time.Hour, false},           // 4/7 of the lifetime
		{4*24*time.Hour + 16*time.Hour, true}, // past 2/3: NotBefore is backdated 1h, renewal at +4d15h40m
	}
	prev := first
	for _, st := range steps {
		clock.set(start.Add(st.at))
		got := serial()
		if renewed := got != prev; renewed != st.renewed {
			t.Errorf("at +%s: renewed = %v, want %v", st.at, renewed, st.renewed)
		}
		prev = got
	}
	if n := ca.issued.Load(); n != 2 {
		t.Errorf("issued %d certificates, want 2", n)
	}
	// The renewed leaf replaced the cached file.
	restarted := newTestLocalCA(t, cfg)
	cert, _ = restarted.Lookup(hello)
	if cert.Leaf.SerialNumber.String() != prev || restarted.issued.Load() != 0 {
		t.Error("restart did not reuse the renewed certificate")
	}
}

// TestLocalCAConcurrentIssueOnce starts many first handshakes for one name
// at once: one certificate is signed and every client gets it.
func TestLocalCAConcurrentIssueOnce(t *testing.T) {
	ca := newTestLocalCA(t, LocalCAConfig{Hosts: []string{"app.test"}})
	addr := serveTLS(t, "127.0.0.1", NewSelector(ca).GetCertificate)
	const clients = 32
	serials := make([]string, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "app.test", RootCAs: rootPool(ca)})
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			serials[i] = conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
		})
	}
	wg.Wait()
	if n := ca.issued.Load(); n != 1 {
		t.Errorf("%d concurrent handshakes issued %d certificates, want 1", clients, n)
	}
	for i, s := range serials {
		if s != serials[0] {
			t.Errorf("client %d got serial %s, client 0 got %s", i, s, serials[0])
		}
	}
}

func TestLocalCATrustInstructions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "my ca") // a space forces quoting
	ca := newTestLocalCA(t, LocalCAConfig{Dir: dir})
	got := ca.TrustInstructions()
	quoted := "'" + ca.RootPath() + "'"
	for _, want := range []string{
		ca.RootPath(),
		"curl --cacert " + quoted,
		"certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n '" + ca.RootCertificate().Subject.CommonName + "' -i " + quoted,
		"sudo cp " + quoted + " /usr/local/share/ca-certificates/tlsedge.crt && sudo update-ca-certificates",
		"security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain " + quoted,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("TrustInstructions() lacks %q:\n%s", want, got)
		}
	}
}
