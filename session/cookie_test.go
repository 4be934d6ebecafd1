package session

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestValidCookieName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"tlsedge_sticky", true},
		{"__Host-sticky", true},
		{"SERVERID", true},
		{"a!#$%&'*+-.^_`|~9", true},
		{"", false},
		{"with space", false},
		{"semi;colon", false},
		{"eq=", false},
		{"comma,", false},
		{`quote"`, false},
		{"slash/", false},
		{"brace{", false},
		{"tab\t", false},
		{"nul\x00", false},
		{"del\x7f", false},
		{"ünï", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidCookieName(tt.name)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidCookieName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrCookieName) {
				t.Fatalf("error %v does not wrap ErrCookieName", err)
			}
		})
	}
}

// parseSetCookie parses a Set-Cookie value the way net/http's client does.
func parseSetCookie(t *testing.T, line string) *http.Cookie {
	t.Helper()
	resp := http.Response{Header: http.Header{"Set-Cookie": {line}}}
	cs := resp.Cookies()
	if len(cs) != 1 {
		t.Fatalf("net/http parses %q into %d cookies", line, len(cs))
	}
	return cs[0]
}

func TestFormatSetCookie(t *testing.T) {
	tests := []struct {
		maxAge time.Duration
		want   string
	}{
		{0, "s=v; Path=/; Secure; HttpOnly; SameSite=Lax"},
		{-time.Hour, "s=v; Path=/; Secure; HttpOnly; SameSite=Lax"},
		{time.Hour, "s=v; Max-Age=3600; Path=/; Secure; HttpOnly; SameSite=Lax"},
		{time.Millisecond, "s=v; Max-Age=1; Path=/; Secure; HttpOnly; SameSite=Lax"},
		{1500 * time.Millisecond, "s=v; Max-Age=2; Path=/; Secure; HttpOnly; SameSite=Lax"},
	}
	for _, tt := range tests {
		t.Run(tt.maxAge.String(), func(t *testing.T) {
			got := FormatSetCookie("s", "v", tt.maxAge)
			if got != tt.want {
				t.Fatalf("got  %q\nwant %q", got, tt.want)
			}
			c := parseSetCookie(t, got)
			if c.Name != "s" || c.Value != "v" || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" {
				t.Fatalf("net/http reads back %+v", c)
			}
		})
	}
}

func TestCodecSetCookie(t *testing.T) {
	clk := &clock{t0}
	tests := []struct {
		name       string
		cfg        Config
		issued     time.Time
		wantMaxAge int // as net/http reports it: 0 = attribute absent
	}{
		{"no lifetimes", Config{}, time.Time{}, 0},
		{"max age, new", Config{MaxAge: 2 * time.Hour}, time.Time{}, 7200},
		{"max age, refreshed", Config{MaxAge: 2 * time.Hour}, t0.Add(-30 * time.Minute), 5400},
		{"idle only", Config{Idle: 20 * time.Minute}, t0.Add(-5 * time.Hour), 1200},
		{"idle shorter than rest", Config{MaxAge: 2 * time.Hour, Idle: 20 * time.Minute}, time.Time{}, 1200},
		{"rest shorter than idle", Config{MaxAge: 2 * time.Hour, Idle: 20 * time.Minute}, t0.Add(-110 * time.Minute), 600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Name, cfg.Keys, cfg.Now = "__Host-s", []Key{testKey(1)}, clk.now
			c := newCodec(t, cfg)
			line, err := c.SetCookie("web-1", tt.issued)
			if err != nil {
				t.Fatal(err)
			}
			hc := parseSetCookie(t, line)
			if hc.Name != "__Host-s" || hc.MaxAge != tt.wantMaxAge || !hc.Secure || !hc.HttpOnly {
				t.Fatalf("%q reads back as %+v, want Max-Age %d", line, hc, tt.wantMaxAge)
			}
			tk, err := c.Decode(hc.Value)
			if err != nil || tk.BackendID != "web-1" {
				t.Fatalf("Decode(value of %q) = %+v, %v", line, tk, err)
			}
		})
	}
	c := newCodec(t, Config{Keys: []Key{testKey(1)}})
	if _, err := c.SetCookie("", time.Time{}); !errors.Is(err, ErrBackendID) {
		t.Fatalf("SetCookie with empty id: %v", err)
	}
	if !strings.HasPrefix(mustSetCookie(t, c), DefaultCookieName+"=") {
		t.Fatal("default name not used")
	}
}

func mustSetCookie(t *testing.T, c *Codec) string {
	t.Helper()
	s, err := c.SetCookie("web-1", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
