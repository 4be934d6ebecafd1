package tlsedge

import (
	"net/http"
	"strconv"
	"testing"
)

// BenchmarkHeaderMap is what a proxied request does to its header map
// (the fields the filters add, the proxy's lookups, two walks, the clear
// before the next request), in a map made for smallHeader and in one made
// for 16, as the maps were before: why smallHeader is 8.
//
//	go test -run '^$' -bench HeaderMap ./tlsedge
func BenchmarkHeaderMap(b *testing.B) {
	keys := []string{"User-Agent", "Accept", "X-Request-Id", "X-Client-Cert-Verified",
		"Accept-Encoding", "Cookie", "Referer", "Accept-Language"}
	v := []string{"x"}
	for _, hint := range []int{smallHeader, 16} {
		for _, n := range []int{2, 6, 8} {
			b.Run("made-for-"+strconv.Itoa(hint)+"/fields-"+strconv.Itoa(n), func(b *testing.B) {
				h := make(http.Header, hint)
				sink := 0
				for b.Loop() {
					for _, k := range keys[:n] {
						h[k] = v
					}
					sink += len(h["Connection"]) + len(h["Cookie"]) + len(h["Upgrade"])
					for k := range h {
						sink += len(k)
					}
					for k := range h {
						sink += len(k)
					}
					clear(h)
				}
				if sink < 0 {
					b.Fatal(sink)
				}
			})
		}
	}
}
