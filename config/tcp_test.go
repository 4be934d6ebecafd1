package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseTCP(t *testing.T) {
	s, err := ParseTCP(":5432=10.0.0.5:5432,10.0.0.6:5432*2;hosts=db.example.com;backend_ca=/etc/ca.pem;proxy_protocol=2;idle_timeout=30m")
	if err != nil {
		t.Fatal(err)
	}
	if s.Listen != ":5432" || len(s.Backends) != 2 || s.Backends[1].Weight != 2 || s.Hosts[0] != "db.example.com" ||
		s.BackendTLS == nil || s.BackendTLS.CA != "/etc/ca.pem" || s.ProxyProtocol != 2 || s.IdleTimeout.D() != 30*time.Minute {
		t.Errorf("parsed %+v", s)
	}
	for spec, want := range map[string]string{
		":5432":                                "LISTEN=BACKEND",
		":5432=10.0.0.5":                       "host:port",
		":5432=10.0.0.5:5432;proxy_protocol=3": "proxy_protocol=1",
		":5432=10.0.0.5:5432;plain=yes":        "takes no value",
		":5432=10.0.0.5:5432;sticky":           "unknown --tcp option",
	} {
		if _, err := ParseTCP(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseTCP(%q) = %v, want an error about %q", spec, err, want)
		}
	}
}

func TestTCPValidate(t *testing.T) {
	base := func(svcs ...TCPService) *Config {
		c := &Config{TCP: svcs}
		c.Normalize("/s")
		return c
	}
	svc := func(listen string, hosts ...string) TCPService {
		return TCPService{Listen: listen, Hosts: hosts, Backends: []Backend{{Addr: "10.0.0.5:5432"}}}
	}
	if err := base(svc(":5432", "db.example.com"), svc(":5432", "cache.example.com"), svc(":5432")).Validate(); err != nil {
		t.Errorf("SNI routing on one listener: %v", err)
	}
	plain := svc(":6379")
	plain.Plain = true
	if err := base(plain).Validate(); err != nil {
		t.Errorf("a plain service: %v", err)
	}
	for name, tc := range map[string]struct {
		c    *Config
		want string
	}{
		"two defaults":   {base(svc(":5432"), svc(":5432")), "several services without hosts"},
		"duplicate host": {base(svc(":5432", "db.example.com"), svc(":5432", "db.example.com")), "already served"},
		"plain shared":   {base(plain, svc(":6379", "x.example.com")), "plain listener serves one service"},
		"HTTPS address":  {base(svc(":443")), "already the HTTPS or HTTP listener"},
		"no backends":    {base(TCPService{Listen: ":5432"}), "at least one backend"},
	} {
		if err := tc.c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

// FuzzParseTCP: any --tcp value parses or gives a *FieldError; what
// parses has a listen address and backends that are host:port.
func FuzzParseTCP(f *testing.F) {
	for _, s := range []string{":5432=10.0.0.5:5432", "127.0.0.1:5433=db:5432;plain;backend_tls", ":1=a:1,b:2*3;hosts=x.example.com;proxy_protocol=2", "=", ":1=;", ":1=a:1;idle_timeout="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := ParseTCP(spec)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is %T, want *FieldError", err, err)
			}
			return
		}
		for _, b := range s.Backends {
			if checkHostPort(b.Addr) != nil {
				t.Fatalf("parsed bad backend %+v from %q", b, spec)
			}
		}
	})
}
