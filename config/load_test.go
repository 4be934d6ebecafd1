package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const sample = `
listen: ":8443"
http_listen: "off"
tls:
  certs:
    - {cert: /etc/tlsedge/shop.crt, key: /etc/tlsedge/shop.key}
apps:
  - hosts: [shop.example.com, www.shop.example.com]
    backends: ["10.0.0.5:8080", "10.0.0.6:8080*2", {addr: "10.0.0.7:8080", weight: 3, id: web7}]
    sticky: SHOP
    sticky_idle: 30m
  - name: api
    hosts: [example.com]
    path: /api
    backends: ["10.0.0.8:9000"]
    sticky: true
  - hosts: [static.example.com]
    backends: ["10.0.0.9:80"]
    sticky: false
`

func TestParseFile(t *testing.T) {
	c, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	c.Normalize("/state")
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	shop := c.Apps[0]
	if shop.Name != "shop.example.com" || shop.Sticky.CookieName() != "SHOP" || shop.StickyIdle.D() != 30*time.Minute {
		t.Errorf("shop app: %+v", shop)
	}
	if got := shop.Backends[2]; got.ID != "web7" || got.Weight != 3 {
		t.Errorf("long-form backend: %+v", got)
	}
	if got := shop.Backends[1]; got.Weight != 2 || got.ID != BackendID("10.0.0.6:8080") {
		t.Errorf("short-form backend: %+v", got)
	}
	if c.Apps[1].Sticky.CookieName() != DefaultStickyName || c.Apps[1].Path != "/api" {
		t.Errorf("api app: %+v", c.Apps[1])
	}
	if c.Apps[2].Sticky != nil {
		t.Errorf("sticky: false left sticky on: %+v", c.Apps[2].Sticky)
	}
	if c.StickyKeyFile != "/state/sticky.keys" || c.HTTPListen != Off {
		t.Errorf("globals: %+v", c)
	}

	// The printed effective configuration reads back to the same model.
	out, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse(out)
	if err != nil {
		t.Fatalf("re-parse of printed config: %v\n%s", err, out)
	}
	again.Normalize("/state")
	out2, _ := again.Marshal()
	if string(out) != string(out2) {
		t.Errorf("printed config does not round-trip:\n%s\n---\n%s", out, out2)
	}
}

func TestValidateErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown field", "apps:\n  - hosts: [a.com]\n    backend: [\"1.2.3.4:80\"]\n", []string{"line 3", "backend"}},
		{"no apps", "listen: \":443\"\n", []string{"no apps configured"}},
		{"bad host", "apps:\n  - hosts: [\"bad host.com\"]\n    backends: [\"1.2.3.4:80\"]\n", []string{`app "bad host.com"`, `hosts[0] "bad host.com"`, "bad character"}},
		{"bad wildcard", "apps:\n  - hosts: [\"a.*.com\"]\n    backends: [\"1.2.3.4:80\"]\n", []string{`hosts[0] "a.*.com"`, "wildcard"}},
		{"no backends", "apps:\n  - hosts: [a.com]\n    backends: []\n", []string{`app "a.com"`, "backends", "at least one backend"}},
		{"bad backend", "apps:\n  - hosts: [a.com]\n    backends: [\"1.2.3.4\"]\n", []string{"line 3", "host:port"}},
		{"dup route", "apps:\n  - hosts: [a.com]\n    backends: [\"1.2.3.4:80\"]\n  - name: two\n    hosts: [a.com]\n    backends: [\"1.2.3.5:80\"]\n", []string{`app "two"`, "already served by app \"a.com\""}},
		{"dup backend", "apps:\n  - hosts: [a.com]\n    backends: [\"1.2.3.4:80\", \"1.2.3.4:80\"]\n", []string{`backends[1].id`, "same id"}},
		{"bad cookie", "apps:\n  - hosts: [a.com]\n    backends: [\"1.2.3.4:80\"]\n    sticky: \"a;b\"\n", []string{`sticky "a;b"`, "not allowed"}},
		{"idle without sticky", "apps:\n  - hosts: [a.com]\n    backends: [\"1.2.3.4:80\"]\n    sticky_idle: 5m\n", []string{"need sticky"}},
		{"bad path", "apps:\n  - hosts: [a.com]\n    path: api\n    backends: [\"1.2.3.4:80\"]\n", []string{`path "api"`, "starts with /"}},
		{"bad listen", "listen: \"443\"\napps:\n  - hosts: [a.com]\n    backends: [\"1.2.3.4:80\"]\n", []string{`listen "443"`}},
		{"bad duration", "upstream:\n  dial_timeout: fast\napps: []\n", []string{"line 2", `"fast"`}},
		{"bad level", "log:\n  level: loud\napps:\n  - hosts: [a.com]\n    backends: [\"1.2.3.4:80\"]\n", []string{`log.level "loud"`}},
		{"cert without key", "tls:\n  certs: [{cert: a.crt}]\napps:\n  - hosts: [a.com]\n    backends: [\"1.2.3.4:80\"]\n", []string{"tls.certs[0].key", "needs a --key"}},
		{"two documents", "apps: []\n---\napps: []\n", []string{"more than one YAML document"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantConfigError(t, tt.yaml, tt.want) })
	}
}

// wantConfigError parses, normalizes and validates yaml and checks the
// error mentions every part of want; it returns the error.
func wantConfigError(t *testing.T, yaml string, want []string) error {
	t.Helper()
	c, err := Parse([]byte(yaml))
	if err == nil {
		c.Normalize("/state")
		err = c.Validate()
	}
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	return err
}

func TestValidateReportsEveryError(t *testing.T) {
	c, err := Parse([]byte("listen: nope\napps:\n  - hosts: [a.com]\n    backends: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	c.Normalize("/s")
	err = c.Validate()
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("want *FieldError inside %v", err)
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 2 {
		t.Errorf("want 2 errors, got %d: %v", n, err)
	}
}

func TestDefaultStateDir(t *testing.T) {
	env := map[string]string{"XDG_STATE_HOME": "/x", "HOME": "/home/u"}
	get := func(k string) string { return env[k] }
	if got := DefaultStateDir(get, 0); got != "/var/lib/tlsedge" {
		t.Errorf("root: %s", got)
	}
	if got := DefaultStateDir(get, 1000); got != "/x/tlsedge" {
		t.Errorf("xdg: %s", got)
	}
	delete(env, "XDG_STATE_HOME")
	if got := DefaultStateDir(get, 1000); got != "/home/u/.local/state/tlsedge" {
		t.Errorf("home: %s", got)
	}
}

// FuzzParse: the config loader never panics, and whatever it accepts and
// validates prints to YAML that loads and validates again.
func FuzzParse(f *testing.F) {
	f.Add([]byte(sample))
	f.Add([]byte("apps:\n  - hosts: [a.com]\n    backends: [\"1.2.3.4:80*2\"]\n    sticky: x\n"))
	f.Add([]byte("listen: [1,2]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		c.Normalize("/state")
		if c.Validate() != nil {
			return
		}
		out, err := c.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a valid config: %v", err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("printed config does not load: %v\n%s", err, out)
		}
		again.Normalize("/state")
		if err := again.Validate(); err != nil {
			t.Fatalf("printed config does not validate: %v\n%s", err, out)
		}
	})
}
