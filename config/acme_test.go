package config

import (
	"strings"
	"testing"
	"time"
)

const acmeSample = `
storage: redis://:secret@10.0.0.9:6379/2
tls:
  acme:
    email: ops@example.com
    ca: staging
    eab_kid: kid-1
    eab_hmac: c2VjcmV0LWhtYWMta2V5
  on_demand:
    enabled: true
    allow: ["*.customers.example.net"]
    ask: http://127.0.0.1:9000/allowed
    rate: 10/1h
    rate_per_ip: 2/10m
apps:
  - hosts: [shop.example.com]
    backends: ["10.0.0.5:8080"]
  - hosts: [intranet.example.com]
    backends: ["10.0.0.6:8080"]
    tls: internal
  - hosts: ["*"]
    backends: ["10.0.0.7:8080"]
`

func TestACMEFile(t *testing.T) {
	c, err := Parse([]byte(acmeSample))
	if err != nil {
		t.Fatal(err)
	}
	c.Normalize("/state")
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if got := c.TLS.ACME.ACMEDirectory(); got != acmeCAs["staging"] {
		t.Errorf("staging resolves to %q", got)
	}
	if c.Apps[0].TLS != TLSAuto || c.Apps[1].TLS != TLSInternal {
		t.Errorf("tls defaults: %q %q", c.Apps[0].TLS, c.Apps[1].TLS)
	}
	od := c.TLS.OnDemand
	if od.Rate != (Rate{10, Duration(time.Hour)}) || od.RatePerIP != (Rate{2, Duration(10 * time.Minute)}) || od.AskCache.D() != DefaultAskCache {
		t.Errorf("on_demand: %+v", od)
	}
	if got := c.RedactedStorage(); strings.Contains(got, "secret") {
		t.Errorf("storage printed with its password: %s", got)
	}
	out, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(out)
	if err != nil {
		t.Fatalf("printed config does not read back: %v\n%s", err, out)
	}
	back.Normalize("/state")
	if back.TLS.OnDemand.Rate != od.Rate || back.TLS.ACME.CA != "staging" {
		t.Errorf("round trip lost ACME settings:\n%s", out)
	}
}

// Without an email the local CA stays the default; with one, ACME.
func TestDefaultTLSSource(t *testing.T) {
	for email, want := range map[string]string{"": TLSInternal, "ops@example.com": TLSAuto} {
		c := &Config{TLS: TLS{ACME: ACME{Email: email}}, Apps: []App{{Hosts: []string{"shop.example.com"}, Backends: []Backend{{Addr: "10.0.0.5:80"}}}}}
		c.Normalize("/s")
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		if c.Apps[0].TLS != want {
			t.Errorf("email %q: tls %q, want %q", email, c.Apps[0].TLS, want)
		}
		if want == TLSAuto && c.TLS.ACME.CA != DefaultACMECA {
			t.Errorf("CA defaults to %q", c.TLS.ACME.CA)
		}
	}
}

func TestACMEValidateErrors(t *testing.T) {
	app := "apps:\n  - hosts: [shop.example.com]\n    backends: [\"1.2.3.4:80\"]\n"
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"bad email", "tls:\n  acme:\n    email: ops-at-example\n" + app, []string{`tls.acme.email "ops-at-example"`, "plain address"}},
		{"named email", "tls:\n  acme:\n    email: \"Ops <ops@example.com>\"\n" + app, []string{"tls.acme.email", "plain address"}},
		{"email without dot", "tls:\n  acme:\n    email: ops@localhost\n" + app, []string{"tls.acme.email", "needs a dot"}},
		{"bad CA", "tls:\n  acme:\n    email: ops@example.com\n    ca: letsencrypt-prod\n" + app, []string{`tls.acme.ca "letsencrypt-prod"`, "https://"}},
		{"http CA", "tls:\n  acme:\n    email: ops@example.com\n    ca: http://127.0.0.1:14000/dir\n" + app, []string{"tls.acme.ca", "https://"}},
		{"zerossl without EAB", "tls:\n  acme:\n    email: ops@example.com\n    ca: zerossl\n" + app, []string{`tls.acme.ca "zerossl"`, "external account binding"}},
		{"half EAB", "tls:\n  acme:\n    email: ops@example.com\n    eab_kid: k\n" + app, []string{"eab_kid", "both"}},
		{"bad EAB hmac", "tls:\n  acme:\n    email: ops@example.com\n    eab_kid: k\n    eab_hmac: \"not base64!\"\n" + app, []string{"tls.acme.eab_hmac", "base64url"}},
		{"no challenge", "tls:\n  acme:\n    email: ops@example.com\n    disable_http01: true\n    disable_tlsalpn01: true\n" + app, []string{"no challenge"}},
		{"on-demand unbounded", "tls:\n  acme:\n    email: ops@example.com\n  on_demand:\n    enabled: true\n" + app, []string{"tls.on_demand.enabled", "allowlist", "ask URL"}},
		{"allow without on-demand", "tls:\n  on_demand:\n    allow: [a.example.com]\n" + app, []string{"no effect", "--on-demand"}},
		{"bad ask", "tls:\n  on_demand:\n    enabled: true\n    ask: ftp://x/y\n" + app, []string{`tls.on_demand.ask "ftp://x/y"`}},
		{"bad rate", "tls:\n  on_demand:\n    rate: fast\n" + app, []string{"line 3", "N/DURATION"}},
		{"bad storage", "storage: memcache://x:1\n" + app, []string{`storage "memcache://x:1"`, "redis://"}},
		{"storage password hidden", "storage: \"mysql://u:hunter2@x:1\"\n" + app, []string{"storage", "xxxxx"}},
		{"wildcard auto", "tls:\n  acme:\n    email: ops@example.com\napps:\n  - hosts: [\"*.example.com\"]\n    backends: [\"1.2.3.4:80\"]\n", []string{`hosts[0] "*.example.com"`, "DNS-01"}},
		{"IP auto", "tls:\n  acme:\n    email: ops@example.com\napps:\n  - hosts: [\"192.0.2.1\"]\n    backends: [\"1.2.3.4:80\"]\n", []string{"IP addresses", "tls=internal"}},
		{"internal name auto", "tls:\n  acme:\n    email: ops@example.com\napps:\n  - hosts: [\"wiki.internal\"]\n    backends: [\"1.2.3.4:80\"]\n", []string{"not a public DNS name"}},
		{"bad tls", "apps:\n  - hosts: [a.com]\n    backends: [\"1.2.3.4:80\"]\n    tls: magic\n", []string{`tls "magic"`, "auto, internal or files"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := wantConfigError(t, tt.yaml, tt.want); strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error shows a password: %v", err)
			}
		})
	}
}

// A private CA (any directory URL) may issue for names a public CA
// refuses, so only public CAs get the public-name check.
func TestPrivateCAAllowsInternalNames(t *testing.T) {
	c := &Config{TLS: TLS{ACME: ACME{Email: "ops@example.com", CA: "https://ca.internal:9000/acme/directory"}},
		Apps: []App{{Hosts: []string{"wiki.internal"}, Backends: []Backend{{Addr: "10.0.0.5:80"}}}}}
	c.Normalize("/s")
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]Rate{"20/1h": {20, Duration(time.Hour)}, "5/90s": {5, Duration(90 * time.Second)}, "1/60": {1, Duration(time.Minute)}} {
		got, err := ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "20", "0/1h", "-1/1h", "x/1h", "5/", "5/0s", "5/soon"} {
		if _, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) accepted", in)
		}
	}
}
