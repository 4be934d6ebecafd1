package tlsedge

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tlsedge/tlsedge/config"
	"github.com/tlsedge/tlsedge/internal/testpki"
)

// TestTestSSL runs testssl.sh (the Debian package `make test` installs)
// against an app with default settings and a certificate from a test CA
// it is told to trust: no SSLv2/3, TLS 1.0/1.1, NULL, EXPORT, RC4, 3DES
// or other weak suites, forward secrecy, and no finding of severity
// MEDIUM or above.
func TestTestSSL(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("testssl")
	if err != nil {
		if bin, err = exec.LookPath("testssl.sh"); err != nil {
			t.Fatal("testssl.sh is not installed: run `make test`, which installs the Debian package testssl.sh")
		}
	}
	dir := t.TempDir()
	ca := testpki.NewCA(t, "testssl CA")
	leaf := ca.Server(t, "localhost")
	certPEM, keyPEM := leaf.PEM(t)
	be := startBackend(t, "b1")
	g := startGateway(t, &config.Config{
		TLS: config.TLS{Certs: []config.CertPair{{
			Cert: testpki.WriteFile(t, dir, "localhost.crt", certPEM),
			Key:  testpki.WriteFile(t, dir, "localhost.key", keyPEM),
		}}},
		Apps: []config.App{{Hosts: []string{"localhost"}, Backends: []config.Backend{{Addr: be.addr()}}}},
	})
	caFile := testpki.WriteFile(t, dir, "ca.pem", ca.CertPEM())
	report := filepath.Join(dir, "report.json")
	port := g.srv.TLSAddr().String()
	port = port[strings.LastIndexByte(port, ':')+1:]
	cmd := exec.Command(bin, "--jsonfile", report, "--warnings", "off", "--quiet", "--color", "0",
		"--add-ca", caFile, "--ip", "127.0.0.1", "localhost:"+port)
	out, err := cmd.CombinedOutput()
	if err != nil {
		// testssl.sh's exit status counts findings; the report decides.
		t.Logf("testssl.sh exit: %v", err)
	}
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("no report: %v\n%s", err, out)
	}
	var findings []struct{ ID, Severity, Finding string }
	if err := json.Unmarshal(data, &findings); err != nil {
		t.Fatalf("report: %v", err)
	}
	byID := map[string]string{}
	for _, f := range findings {
		byID[f.ID] = f.Severity + " " + f.Finding
		switch f.Severity {
		case "MEDIUM", "HIGH", "CRITICAL":
			t.Errorf("testssl.sh: %s %s: %s", f.Severity, f.ID, f.Finding)
		}
	}
	for _, id := range []string{"SSLv2", "SSLv3", "TLS1", "TLS1_1", "cipherlist_NULL", "cipherlist_aNULL",
		"cipherlist_EXPORT", "cipherlist_LOW", "cipherlist_3DES_IDEA", "cipherlist_AVERAGE", "RC4"} {
		v, ok := byID[id]
		if !ok {
			t.Errorf("testssl.sh did not report %s", id)
		} else if !strings.Contains(v, "not offered") && !strings.Contains(v, "not vulnerable") {
			t.Errorf("%s: %s", id, v)
		}
	}
	for _, id := range []string{"TLS1_2", "TLS1_3"} {
		if v := byID[id]; !strings.Contains(v, "offered") || strings.Contains(v, "not offered") {
			t.Errorf("%s: %q, want offered", id, v)
		}
	}
	if v := byID["PFS"]; !strings.HasPrefix(v, "OK") {
		t.Errorf("forward secrecy: %q", v)
	}
	if v := byID["cert_chain_of_trust"]; !strings.HasPrefix(v, "OK") {
		t.Errorf("chain of trust with the test CA: %q", v)
	}
	t.Logf("testssl.sh: %d findings, none MEDIUM or above; TLS1_2 %q, TLS1_3 %q, PFS %q",
		len(findings), byID["TLS1_2"], byID["TLS1_3"], byID["PFS"])
}
