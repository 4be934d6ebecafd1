package config

import (
	"reflect"
	"strings"
	"testing"
)

func mustConfig(t *testing.T, yaml string) *Config {
	t.Helper()
	c, err := Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	c.Normalize("/state")
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	return c
}

func TestCompare(t *testing.T) {
	old := mustConfig(t, `
listen: ":8443"
frontend: {rate_limit: 100/1s}
apps:
  - name: shop
    hosts: [shop.example.com]
    backends: ["10.0.0.5:8080", "10.0.0.6:8080", {addr: "10.0.0.7:8080", id: web7}]
    sticky: true
  - name: blog
    hosts: [blog.example.com]
    backends: ["10.0.0.9:80"]
  - name: old
    hosts: [old.example.com]
    backends: ["10.0.0.10:80"]
tcp:
  - name: db
    listen: "127.0.0.1:5433"
    backends: ["10.0.1.1:5432"]
`)
	cur := mustConfig(t, `
listen: ":9443"
frontend: {rate_limit: 200/1s}
apps:
  - name: shop
    hosts: [shop.example.com]
    backends: ["10.0.0.5:8080*3", {addr: "10.0.0.17:8080", id: web7}, "10.0.0.8:8080"]
    sticky: true
    max_body: 10M
    compress: [gzip]
  - name: blog
    hosts: [blog.example.com]
    backends: ["10.0.0.9:80"]
  - name: new
    hosts: [new.example.com]
    backends: ["10.0.0.11:80"]
tcp:
  - name: db
    listen: "127.0.0.1:5433"
    backends: ["10.0.1.1:5432"]
    idle_timeout: 10m
`)
	d := Compare(old, cur)
	if !reflect.DeepEqual(d.AppsAdded, []string{"new"}) || !reflect.DeepEqual(d.AppsRemoved, []string{"old"}) {
		t.Errorf("apps added %v removed %v, want [new] [old]", d.AppsAdded, d.AppsRemoved)
	}
	if len(d.AppsChanged) != 1 || d.AppsChanged[0].Name != "shop" || !reflect.DeepEqual(d.AppsChanged[0].Fields, []string{"max_body", "compress"}) {
		t.Errorf("apps changed %+v, want shop (max_body, compress)", d.AppsChanged)
	}
	if len(d.TCPChanged) != 1 || !reflect.DeepEqual(d.TCPChanged[0].Fields, []string{"idle_timeout"}) {
		t.Errorf("tcp changed %+v, want db (idle_timeout)", d.TCPChanged)
	}
	if !reflect.DeepEqual(d.Settings, []string{"frontend"}) {
		t.Errorf("settings %v, want [frontend]", d.Settings)
	}
	if len(d.Restart) != 1 || !strings.Contains(d.Restart[0], "listen :8443 -> :9443") {
		t.Errorf("restart %v, want the listen change", d.Restart)
	}
	if len(d.Backends) != 1 {
		t.Fatalf("backend sets %+v, want one (shop)", d.Backends)
	}
	s := d.Backends[0]
	id6, id8, id5 := BackendID("10.0.0.6:8080"), BackendID("10.0.0.8:8080"), BackendID("10.0.0.5:8080")
	if s.Owner != "app shop" || len(s.Added) != 1 || s.Added[0].ID != id8 || len(s.Removed) != 1 || s.Removed[0].ID != id6 {
		t.Errorf("shop backends %+v, want %s added and %s removed", s, id8, id6)
	}
	if len(s.Moved) != 2 || s.Moved[0].ID != id5 || s.Moved[1].ID != "web7" || s.Moved[1].Was != "10.0.0.7:8080 weight 1" {
		t.Errorf("moved %+v, want %s (weight) and web7 (address)", s.Moved, id5)
	}
	text := strings.Join(d.Lines(), "\n")
	for _, want := range []string{
		"app removed: old", "app changed: shop (max_body, compress)",
		"app shop: backend removed: " + id6 + " (10.0.0.6:8080)",
		"backend changed: web7 (10.0.0.17:8080 weight 1, was 10.0.0.7:8080 weight 1); its sticky sessions stay",
		"needs a restart",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("Lines lack %q:\n%s", want, text)
		}
	}
}

func TestCompareSame(t *testing.T) {
	a := mustConfig(t, sample)
	b := mustConfig(t, sample)
	if d := Compare(a, b); !d.Empty() || len(d.Lines()) != 0 {
		t.Errorf("one configuration compared with itself: %+v", d)
	}
	// The YAML form the CLI sends to a running instance compares equal.
	out, err := a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if d := Compare(a, mustConfig(t, string(out))); !d.Empty() {
		t.Errorf("after a YAML round trip: %v", d.Lines())
	}
}
