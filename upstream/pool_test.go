package upstream

import (
	"strings"
	"testing"
	"time"
)

func TestNewPoolValidates(t *testing.T) {
	ok := BackendConfig{ID: "a", Addr: "127.0.0.1:8001"}
	for _, tc := range []struct {
		name string
		cfg  PoolConfig
		want string // substring of the error
	}{
		{"no backends", PoolConfig{}, "no backends"},
		{"no port", PoolConfig{Backends: []BackendConfig{{Addr: "127.0.0.1"}}}, `"127.0.0.1"`},
		{"no host", PoolConfig{Backends: []BackendConfig{{Addr: ":80"}}}, "missing host"},
		{"port 0", PoolConfig{Backends: []BackendConfig{{Addr: "127.0.0.1:0"}}}, "port"},
		{"named port", PoolConfig{Backends: []BackendConfig{{Addr: "127.0.0.1:http"}}}, "port"},
		{"port too big", PoolConfig{Backends: []BackendConfig{{Addr: "127.0.0.1:65536"}}}, "port"},
		{"negative weight", PoolConfig{Backends: []BackendConfig{{ID: "w", Addr: "127.0.0.1:1", Weight: -1}}}, `"w": weight -1`},
		{"too heavy", PoolConfig{Backends: []BackendConfig{{ID: "w", Addr: "127.0.0.1:1", Weight: MaxWeight + 1}}}, "weight 257"},
		{"duplicate id", PoolConfig{Backends: []BackendConfig{ok, {ID: "a", Addr: "127.0.0.1:8002"}}}, `"a" used twice`},
		{"negative timeout", PoolConfig{Backends: []BackendConfig{ok}, DialTimeout: -time.Second}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewPool(tc.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestPoolDefaultsAndLookups(t *testing.T) {
	p, err := NewPool(PoolConfig{Backends: []BackendConfig{
		{Addr: "127.0.0.1:8001"},
		{ID: "b", Addr: "[::1]:8002", Weight: 3},
		{ID: "c", Addr: "backend.internal:8003"},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cfg := p.Config()
	if cfg.DialTimeout != DefaultDialTimeout || cfg.ResponseHeaderTimeout != DefaultResponseHeaderTimeout ||
		cfg.IdleConnTimeout != DefaultIdleConnTimeout || cfg.MaxIdleConnsPerHost != DefaultMaxIdleConnsPerHost {
		t.Errorf("defaults not resolved: %+v", cfg)
	}
	if cfg.Backends[0].ID != "127.0.0.1:8001" || cfg.Backends[0].Weight != 1 || cfg.Backends[1].Weight != 3 {
		t.Errorf("backend defaults not filled: %+v", cfg.Backends)
	}
	if p.Backend("b") == nil || p.Backend("b").Addr() != "[::1]:8002" {
		t.Error("Backend(b) lookup failed")
	}
	if p.Backend("nope") != nil {
		t.Error("Backend(unknown) is not nil")
	}
	bs := p.Backends()
	if len(bs) != 3 || bs[2] != p.Backend("c") {
		t.Errorf("Backends = %v", bs)
	}
	bs[0] = nil // a copy: the pool is not affected
	if p.Backends()[0] == nil {
		t.Error("Backends returned the pool's own slice")
	}
	if !p.Contains(p.Backend("c")) || p.Contains(&Backend{id: "c"}) {
		t.Error("Contains is wrong")
	}

	for i, s := range p.stacks {
		if s.addr != p.backends[i].Addr() || s.maxIdle != DefaultMaxIdleConnsPerHost ||
			s.idleTimeout != DefaultIdleConnTimeout || s.dialer.Timeout != DefaultDialTimeout {
			t.Errorf("stack %d settings: addr %s, max idle %d, idle timeout %v, dial timeout %v",
				i, s.addr, s.maxIdle, s.idleTimeout, s.dialer.Timeout)
		}
	}
	if tr := p.upgrades; tr.Proxy != nil || !tr.DisableCompression || tr.ResponseHeaderTimeout != DefaultResponseHeaderTimeout {
		t.Errorf("upgrade transport settings: %+v", tr)
	}
}
