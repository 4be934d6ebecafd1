package tlsedge

import (
	"net/http"
	"testing"
)

type named string

func (named) ServeHTTP(http.ResponseWriter, *http.Request) {}

func TestRouteTable(t *testing.T) {
	rt := newRouteTable()
	rt.add("shop.example.com", "/", named("shop"))
	rt.add("example.com", "/api", named("api"))
	rt.add("example.com", "/api/v2/", named("v2"))
	rt.add("*.example.com", "/", named("wild"))
	rt.add("*.example.com", "/admin", named("wild-admin"))
	rt.add("127.0.0.1", "/", named("ip"))
	rt.add("::1", "/", named("ip6"))

	tests := []struct {
		host, path string
		want       string
		res        lookupResult
	}{
		{"shop.example.com", "/", "shop", routeFound},
		{"SHOP.Example.COM:443", "/cart?x", "shop", routeFound},
		{"shop.example.com.", "/cart", "shop", routeFound},
		{"example.com", "/api", "api", routeFound},
		{"example.com", "/api/users", "api", routeFound},
		{"example.com", "/api/v2", "v2", routeFound},
		{"example.com", "/api/v2/x", "v2", routeFound},
		{"example.com", "/apix", "", routeNoPath},
		{"example.com", "/", "", routeNoPath},
		{"www.example.com", "/", "wild", routeFound},
		{"www.example.com", "/admin/x", "wild-admin", routeFound},
		{"www.example.com", "/administrator", "wild", routeFound},
		{"a.b.example.com", "/", "", routeUnknownHost}, // a wildcard covers one label
		{"other.org", "/", "", routeUnknownHost},
		{"127.0.0.1:8443", "/", "ip", routeFound},
		{"[::1]:8443", "/", "ip6", routeFound},
		{"", "/", "", routeUnknownHost},
	}
	for _, tt := range tests {
		h, res := rt.match(tt.host, tt.path)
		got := ""
		if h != nil {
			got = string(h.(named))
		}
		if got != tt.want || res != tt.res {
			t.Errorf("match(%q, %q) = %q, %d; want %q, %d", tt.host, tt.path, got, res, tt.want, tt.res)
		}
	}
}

func BenchmarkRouteMatch(b *testing.B) {
	rt := newRouteTable()
	rt.add("shop.example.com", "/", named("shop"))
	rt.add("example.com", "/api", named("api"))
	b.ReportAllocs()
	for b.Loop() {
		rt.match("shop.example.com:8443", "/cart/items")
	}
}
