package filter

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

var testTrusted = []string{"10.0.0.0/8", "2001:db8:ffff::/48", "192.0.2.1"}

// realIPResult runs one request through RealIP and returns what next saw.
func realIPResult(t testing.TB, peer string, h http.Header) *http.Request {
	t.Helper()
	var seen *http.Request
	f, err := RealIP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r }), RealIPConfig{Trusted: testTrusted})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = peer
	r.Header = h
	f.ServeHTTP(httptest.NewRecorder(), r)
	return seen
}

func TestRealIP(t *testing.T) {
	for _, tc := range []struct {
		name, peer string
		xff, fwd   []string
		want       string
	}{
		{"untrusted peer", "198.51.100.9:4000", []string{"1.2.3.4"}, []string{"for=1.2.3.4"}, "198.51.100.9:4000"},
		{"no header", "10.0.0.2:4000", nil, nil, "10.0.0.2:4000"},
		{"one proxy", "10.0.0.2:4000", []string{"1.2.3.4"}, nil, "1.2.3.4:0"},
		{"skip trusted", "10.0.0.3:4000", []string{"1.2.3.4, 10.0.0.2"}, nil, "1.2.3.4:0"},
		{"rightmost untrusted", "10.0.0.3:4000", []string{"6.6.6.6, 1.2.3.4,10.9.9.9"}, nil, "1.2.3.4:0"},
		{"spoofed left part", "10.0.0.3:4000", []string{"10.0.0.5, 1.2.3.4"}, nil, "1.2.3.4:0"},
		{"all trusted", "10.0.0.3:4000", []string{"10.0.0.7, 192.0.2.1, 10.0.0.2"}, nil, "10.0.0.7:0"},
		{"lines joined", "10.0.0.3:4000", []string{"5.5.5.5, 1.2.3.4", "10.0.0.2", ""}, nil, "1.2.3.4:0"},
		{"later line wins", "10.0.0.3:4000", []string{"10.0.0.2", "1.2.3.4"}, nil, "1.2.3.4:0"},
		{"empty entries", "10.0.0.3:4000", []string{" ,1.2.3.4,, 10.0.0.2 ,"}, nil, "1.2.3.4:0"},
		{"malformed stops", "10.0.0.3:4000", []string{"1.2.3.4, garbage, 10.0.0.2"}, nil, "10.0.0.2:0"},
		{"malformed last", "10.0.0.3:4000", []string{"1.2.3.4, unknown"}, nil, "10.0.0.3:4000"},
		{"malformed left of client", "10.0.0.3:4000", []string{"nonsense, 1.2.3.4"}, nil, "1.2.3.4:0"},
		{"zone refused", "10.0.0.3:4000", []string{"fe80::1%eth0"}, nil, "10.0.0.3:4000"},
		{"port kept", "10.0.0.3:4000", []string{"1.2.3.4:5678"}, nil, "1.2.3.4:5678"},
		{"bad port", "10.0.0.3:4000", []string{"1.2.3.4:99999"}, nil, "10.0.0.3:4000"},
		{"IPv6", "[2001:db8:ffff::1]:443", []string{"2001:db8::42, 2001:db8:ffff:1::1"}, nil, "[2001:db8::42]:0"},
		{"IPv6 brackets", "10.0.0.3:4000", []string{"[2001:db8::42]:8080"}, nil, "[2001:db8::42]:8080"},
		{"IPv4-mapped", "[::ffff:10.0.0.3]:4000", []string{"::ffff:1.2.3.4"}, nil, "1.2.3.4:0"},
		{"bracketed IPv4 refused", "10.0.0.3:4000", []string{"[1.2.3.4]"}, nil, "10.0.0.3:4000"},
		{"XFF over Forwarded", "10.0.0.3:4000", []string{"1.2.3.4"}, []string{"for=5.6.7.8"}, "1.2.3.4:0"},

		{"forwarded", "10.0.0.3:4000", nil, []string{"for=192.0.2.60;proto=http;by=203.0.113.43"}, "192.0.2.60:0"},
		{"forwarded IPv6 quoted", "10.0.0.3:4000", nil, []string{`For="[2001:db8:cafe::17]:4711"`}, "[2001:db8:cafe::17]:4711"},
		{"forwarded chain", "10.0.0.3:4000", nil, []string{`for=1.2.3.4, for="10.0.0.2:80";proto=https`}, "1.2.3.4:0"},
		{"forwarded lines", "10.0.0.3:4000", nil, []string{`for=6.6.6.6, for=1.2.3.4`, `for=10.0.0.2`}, "1.2.3.4:0"},
		{"forwarded spaces", "10.0.0.3:4000", nil, []string{` for = 1.2.3.4 ; proto=http , for=10.0.0.2 `}, "10.0.0.3:4000"},
		{"forwarded ows", "10.0.0.3:4000", nil, []string{` for=1.2.3.4 ; proto=http ,for=10.0.0.2 `}, "1.2.3.4:0"},
		{"forwarded unknown", "10.0.0.3:4000", nil, []string{`for=1.2.3.4, for=unknown, for=10.0.0.2`}, "10.0.0.2:0"},
		{"forwarded obfuscated", "10.0.0.3:4000", nil, []string{`for=_hidden`}, "10.0.0.3:4000"},
		{"forwarded obfuscated port", "10.0.0.3:4000", nil, []string{`for="1.2.3.4:_p1"`}, "1.2.3.4:0"},
		{"forwarded no for", "10.0.0.3:4000", nil, []string{`for=1.2.3.4, proto=https`}, "10.0.0.3:4000"},
		{"forwarded two fors", "10.0.0.3:4000", nil, []string{`for=1.2.3.4;for=5.6.7.8`}, "10.0.0.3:4000"},
		{"forwarded unterminated", "10.0.0.3:4000", nil, []string{`for=1.2.3.4, for="10.0.0.2`}, "10.0.0.3:4000"},
		{"forwarded quoted pair", "10.0.0.3:4000", nil, []string{`for="1.2.3.\4"`}, "10.0.0.3:4000"},
		{"forwarded comma quoted", "10.0.0.3:4000", nil, []string{`for=1.2.3.4;ext="a,b", for=10.0.0.2`}, "1.2.3.4:0"},
		{"forwarded empty elements", "10.0.0.3:4000", nil, []string{`,for=1.2.3.4,,`}, "1.2.3.4:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.xff != nil {
				h["X-Forwarded-For"] = tc.xff
			}
			if tc.fwd != nil {
				h["Forwarded"] = tc.fwd
			}
			h["X-Real-Ip"] = []string{"7.7.7.7"}
			r := realIPResult(t, tc.peer, h)
			if r.RemoteAddr != tc.want {
				t.Errorf("RemoteAddr %q, want %q", r.RemoteAddr, tc.want)
			}
			trusted := strings.HasPrefix(tc.peer, "10.") || strings.HasPrefix(tc.peer, "[2001:db8:ffff:") || strings.HasPrefix(tc.peer, "[::ffff:10.")
			for _, k := range forwardingHeaders {
				if _, kept := r.Header[k]; kept != (trusted && h[k] != nil) {
					t.Errorf("%s kept: %v, want %v", k, kept, trusted)
				}
			}
		})
	}
}

func TestRealIPUnderscores(t *testing.T) {
	for _, peer := range []string{"10.0.0.2:1", "198.51.100.9:1"} {
		h := http.Header{"X_forwarded_for": {"1.2.3.4"}, "X-Real_ip": {"1.2.3.4"}, "Forwarded": {"for=1.2.3.4"}, "X_other": {"kept"}}
		r := realIPResult(t, peer, h)
		if _, ok := r.Header["X_forwarded_for"]; ok {
			t.Errorf("%s: X_forwarded_for kept", peer)
		}
		if _, ok := r.Header["X-Real_ip"]; ok {
			t.Errorf("%s: X-Real_ip kept", peer)
		}
		if _, ok := r.Header["X_other"]; !ok {
			t.Errorf("%s: X_other dropped", peer)
		}
	}
}

// Without trusted proxies (the default) every spelling of the forwarding
// fields goes, in any case, and the peer stays the client; other fields
// stay.
func TestRealIPNoTrustedProxies(t *testing.T) {
	var seen *http.Request
	f, err := RealIP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r }), RealIPConfig{})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.0.0.2:4000"
	r.Header = http.Header{
		"X-Forwarded-For": {"1.2.3.4"}, "x-forwarded-for": {"1.2.3.4"}, "X_Forwarded_For": {"1.2.3.4"},
		"X-Real-Ip": {"1.2.3.4"}, "FORWARDED": {"for=1.2.3.4"}, "X-Forwarded-Fo": {"kept"}, "Accept": {"kept"},
	}
	f.ServeHTTP(httptest.NewRecorder(), r)
	if seen.RemoteAddr != "10.0.0.2:4000" {
		t.Errorf("RemoteAddr = %q, want the peer", seen.RemoteAddr)
	}
	if len(seen.Header) != 2 || seen.Header["X-Forwarded-Fo"] == nil || seen.Header["Accept"] == nil {
		t.Errorf("header after the filter = %v, want only X-Forwarded-Fo and Accept", seen.Header)
	}
}

func TestRealIPAllocs(t *testing.T) {
	f, err := RealIP(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), RealIPConfig{Trusted: testTrusted})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header = http.Header{"Accept": {"*/*"}, "User-Agent": {"test"}}
	for _, peer := range []string{"198.51.100.9:4000", "[2001:db8::1]:4000", "10.0.0.2:4000"} {
		r.RemoteAddr = peer
		if n := testing.AllocsPerRun(100, func() { f.ServeHTTP(nil, r) }); n != 0 {
			t.Errorf("%s without headers: %v allocations, want 0", peer, n)
		}
	}
}

func TestParseTrusted(t *testing.T) {
	set, err := ParseTrusted([]string{"10.0.0.0/8", " 2001:db8::/32 ", "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	for a, want := range map[string]bool{
		"10.1.2.3": true, "::ffff:10.1.2.3": true, "2001:db8::5": true, "192.0.2.1": true,
		"192.0.2.2": false, "11.0.0.1": false, "2001:db9::1": false,
	} {
		if got := set.Contains(netip.MustParseAddr(a)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", a, got, want)
		}
	}
	if set.Contains(netip.Addr{}) || (TrustedSet{}).Contains(netip.MustParseAddr("10.0.0.1")) {
		t.Error("invalid address or empty set: want false")
	}
	for _, bad := range []string{"10.0.0.0/33", "proxy.example.com", ""} {
		if _, err := ParseTrusted([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
		if _, err := RealIP(http.NotFoundHandler(), RealIPConfig{Trusted: []string{bad}}); err == nil {
			t.Errorf("RealIP with %q: no error", bad)
		}
	}
}

// FuzzRealIP checks that the client is always the peer or an address
// written in the header, and that the X-Forwarded-For walk agrees with a
// plain right-to-left reading of the joined list.
func FuzzRealIP(f *testing.F) {
	for _, s := range [][2]string{
		{"1.2.3.4, 10.0.0.2", ""},
		{"", `for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.1`},
		{"10.0.0.1, 10.0.0.2", ""},
		{"garbage, 1.2.3.4:80, [2001:db8::1]:443", ""},
		{"", `for=1.2.3.4;ext="a,b;c", for=_x, for="1.2.3.4:_y"`},
		{"::ffff:1.2.3.4,,", "for=unknown"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, xff, fwd string) {
		h := http.Header{}
		if xff != "" {
			h["X-Forwarded-For"] = strings.Split(xff, "\n") // several lines
		}
		if fwd != "" {
			h["Forwarded"] = strings.Split(fwd, "\n")
		}
		const peer = "10.0.0.3:4000"
		r := realIPResult(t, peer, h)
		if r.RemoteAddr == peer {
			return
		}
		got, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			t.Fatalf("RemoteAddr %q is not ip:port", r.RemoteAddr)
		}
		if !inText(got.Addr(), xff+"\n"+fwd) {
			t.Fatalf("client %s is not written in %q / %q", got, xff, fwd)
		}
		if xff != "" {
			if want := walkXFFFromRight(strings.ReplaceAll(xff, "\n", ",")); want != got {
				t.Fatalf("client %s, the right-to-left walk of %q says %s", got, xff, want)
			}
		}
	})
}

// inText reports whether some field of s (cut at separators) reads as a.
func inText(a netip.Addr, s string) bool {
	for _, field := range strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(",;=\"\n \t", r) }) {
		if n, ok := parseForwardedNode(field); ok && n.Addr() == a {
			return true
		}
	}
	return false
}

// walkXFFFromRight is the specification: from the right, skip trusted
// entries; the first untrusted is the client; at a malformed entry or
// the left end, the last good entry.
func walkXFFFromRight(list string) netip.AddrPort {
	set, _ := ParseTrusted(testTrusted)
	entries := strings.Split(list, ",")
	var last netip.AddrPort
	for i := len(entries) - 1; i >= 0; i-- {
		e := strings.Trim(entries[i], " \t")
		if e == "" {
			continue
		}
		n, ok := parseForwardedNode(e)
		if !ok {
			break
		}
		if last = n; !set.Contains(n.Addr()) {
			break
		}
	}
	if !last.IsValid() {
		return netip.MustParseAddrPort("10.0.0.3:4000")
	}
	return last
}
