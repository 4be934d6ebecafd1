package filter

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkHeaderRules is the per-request cost of request_header and
// response_header rules around a handler that writes a small head, next
// to the handler alone: literal values (shared, nothing allocated),
// templates (one string built per rule), and del and rename:
//
//	go test -run '^$' -bench HeaderRules -benchmem ./filter
func BenchmarkHeaderRules(b *testing.B) {
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["X-Powered-By"] = []string{"PHP/8.3"}
		h["X-Old"] = []string{"1"}
		w.WriteHeader(200)
	})
	for _, tc := range []struct {
		name string
		cfg  HeaderRulesConfig
	}{
		{"none", HeaderRulesConfig{}},
		{"request/literal", HeaderRulesConfig{Request: []HeaderRule{
			{Op: "set", Name: "X-Env", Value: "prod"},
			{Op: "add", Name: "X-Tag", Value: "edge"},
			{Op: "del", Name: "X-Debug"},
		}}},
		{"request/template", HeaderRulesConfig{Request: []HeaderRule{
			{Op: "set", Name: "X-Real-IP", Value: "{client_ip}"},
			{Op: "set", Name: "X-Forwarded-Proto", Value: "{scheme}"},
			{Op: "set", Name: "X-TLS", Value: "{tls_version} {tls_cipher} sni={sni}"},
		}}},
		{"response/literal", HeaderRulesConfig{Response: []HeaderRule{
			{Op: "del", Name: "X-Powered-By"},
			{Op: "set", Name: "Cache-Control", Value: "no-store"},
			{Op: "rename", Name: "X-Old", Value: "X-New"},
		}}},
		{"response/template", HeaderRulesConfig{Response: []HeaderRule{
			{Op: "set", Name: "X-Served-For", Value: "{method} {host}{path}"},
		}}},
	} {
		h, err := HeaderRules(backend, tc.cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			r := httptest.NewRequest("GET", "https://shop.example.com/cart/items", nil)
			r.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, ServerName: "shop.example.com"}
			r.Header["User-Agent"] = []string{"bench"}
			w := &nullWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				delete(r.Header, "X-Tag") // add appends: keep the request as it came
				h.ServeHTTP(w, r)
			}
		})
	}
}
