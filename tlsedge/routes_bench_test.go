package tlsedge

import (
	"fmt"
	"net/http/httptest"
	"testing"
)

// BenchmarkRouteLookup is the per-request route lookup on a table of 64
// sites, a wildcard and path prefixes, by kind of match, and as serving
// does it: on the normalised path (routingPath) of a parsed request.
// (BenchmarkRouteMatch is the smallest table.)
//
//	go test -run '^$' -bench Route -benchmem ./tlsedge
func BenchmarkRouteLookup(b *testing.B) {
	rt := newRouteTable()
	for i := range 64 {
		rt.add(fmt.Sprintf("site%d.example.com", i), "/", named("site"))
	}
	rt.add("shop.example.com", "/", named("shop"))
	rt.add("shop.example.com", "/api", named("api"))
	rt.add("shop.example.com", "/api/v2", named("v2"))
	rt.add("shop.example.com", "/static", named("static"))
	rt.add("*.apps.example.com", "/", named("wild"))
	for _, tc := range []struct {
		name, host, path string
		want             lookupResult
	}{
		{"exact", "site42.example.com", "/index.html", routeFound},
		{"longest-prefix", "shop.example.com:443", "/api/v2/orders/17", routeFound},
		{"wildcard", "tenant7.apps.example.com", "/", routeFound},
		{"upper-case-host", "Shop.Example.com", "/cart", routeFound},
		{"unknown-host", "scanner.invalid", "/wp-login.php", routeUnknownHost},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, res := rt.match(tc.host, tc.path); res != tc.want {
					b.Fatalf("match(%q, %q) = %d, want %d", tc.host, tc.path, res, tc.want)
				}
			}
		})
	}
	for _, tc := range []struct{ name, target string }{
		{"request/clean-path", "https://shop.example.com/api/v2/orders/17?x=1"},
		{"request/dot-segments", "https://shop.example.com/static/../api/v2/%6Frders/17"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := httptest.NewRequest("GET", tc.target, nil)
			b.ReportAllocs()
			for b.Loop() {
				if h, _ := rt.match(r.Host, routingPath(r)); h != named("v2") {
					b.Fatalf("%s routed to %v", tc.target, h)
				}
			}
		})
	}
}
