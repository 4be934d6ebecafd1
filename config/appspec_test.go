package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseApp(t *testing.T) {
	tests := []struct {
		spec string
		want App
	}{
		{"shop.example.com=10.0.0.5:8080", App{Hosts: []string{"shop.example.com"}, Backends: []Backend{{Addr: "10.0.0.5:8080", Weight: 1}}}},
		{"Shop.Example.com=10.0.0.5:8080,10.0.0.6:8080*2;sticky", App{
			Hosts:    []string{"shop.example.com"},
			Backends: []Backend{{Addr: "10.0.0.5:8080", Weight: 1}, {Addr: "10.0.0.6:8080", Weight: 2}},
			Sticky:   &Sticky{},
		}},
		{"example.com/api=10.0.0.7:9000;sticky=SID;sticky_max_age=24h;sticky_idle=30m;name=api", App{
			Name: "api", Hosts: []string{"example.com"}, Path: "/api",
			Backends:     []Backend{{Addr: "10.0.0.7:9000", Weight: 1}},
			Sticky:       &Sticky{Cookie: "SID"},
			StickyMaxAge: Duration(24 * time.Hour), StickyIdle: Duration(30 * time.Minute),
		}},
		{"*.example.com=[::1]:8080*3", App{Hosts: []string{"*.example.com"}, Backends: []Backend{{Addr: "[::1]:8080", Weight: 3}}}},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := ParseApp(tt.spec)
			if err != nil {
				t.Fatalf("ParseApp: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseApp(%q)\n got %+v\nwant %+v", tt.spec, got, tt.want)
			}
		})
	}
}

func TestParseAppErrors(t *testing.T) {
	tests := []struct {
		spec string
		want []string // substrings of the message: app, field, value
	}{
		{"shop.example.com", []string{`--app "shop.example.com"`, "HOST[/PATH]=BACKEND"}},
		{"shop.example.com=10.0.0.5", []string{`app "shop.example.com"`, `backends[0] "10.0.0.5"`, "host:port"}},
		{"shop.example.com=10.0.0.5:8080,10.0.0.6:99999", []string{`backends[1] "10.0.0.6:99999"`, "port must be 1-65535"}},
		{"shop.example.com=10.0.0.5:8080*0", []string{`backends[0] "10.0.0.5:8080*0"`, "weight"}},
		{"shop.example.com=10.0.0.5:8080*x", []string{"weight", `"x"`}},
		{"shop.example.com=10.0.0.5:8080;stiky", []string{`option "stiky"`, "unknown option", "sticky"}},
		{"shop.example.com=10.0.0.5:8080;sticky=", []string{`sticky ""`, "empty cookie name"}},
		{"shop.example.com=10.0.0.5:8080;sticky_idle=soon", []string{`sticky_idle "soon"`, "not a duration"}},
		{"shop.example.com=10.0.0.5:8080;sticky_idle", []string{"sticky_idle", "needs a value"}},
		{"shop.example.com=:8080", []string{"missing host"}},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			_, err := ParseApp(tt.spec)
			if err == nil {
				t.Fatalf("ParseApp(%q): no error", tt.spec)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("error is %T, want *FieldError", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// FuzzParseApp: any string either parses into an app whose backends are
// well-formed, or fails with a *FieldError; it never panics.
func FuzzParseApp(f *testing.F) {
	for _, s := range []string{
		"shop.example.com=10.0.0.5:8080,10.0.0.6:8080*2;sticky",
		"example.com/api=10.0.0.7:9000;sticky=SID;sticky_idle=30m",
		"a=[::1]:1*1000;name=x", "=", ";;;", "a=b:1;sticky_max_age=-1s",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		app, err := ParseApp(spec)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is %T, want *FieldError", err, err)
			}
			return
		}
		if len(app.Backends) == 0 || len(app.Hosts) != 1 {
			t.Fatalf("parsed %q into %+v", spec, app)
		}
		for _, b := range app.Backends {
			if b.SRV {
				continue // a name, checked by Validate
			}
			if b.Weight < 1 || b.Weight > MaxWeight || checkHostPort(b.Addr) != nil {
				t.Fatalf("parsed bad backend %+v from %q", b, spec)
			}
		}
	})
}
