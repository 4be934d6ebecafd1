package upstream

import (
	"net/netip"
	"testing"
)

// ipv4Host accepts an IPv4 address and port exactly when netip does, and
// returns the address as netip writes it.
func checkIPv4Host(t *testing.T, s string) {
	t.Helper()
	host, ok := ipv4Host(s)
	ap, err := netip.ParseAddrPort(s)
	want := err == nil && ap.Addr().Is4()
	if ok != want {
		t.Fatalf("ipv4Host(%q) ok = %v, netip.ParseAddrPort: %v, %v", s, ok, ap, err)
	}
	if ok && host != ap.Addr().String() {
		t.Fatalf("ipv4Host(%q) = %q, want %q", s, host, ap.Addr().String())
	}
}

func TestIPv4Host(t *testing.T) {
	for _, s := range []string{
		"192.0.2.1:4711", "0.0.0.0:0", "255.255.255.255:65535", "10.0.0.2:1",
		"256.0.0.1:1", "01.2.3.4:5", "1.2.3:4", "1.2.3.4.5:6", "1.2.3.4", "1.2.3.4:", "1.2.3.4:65536",
		"1.2.3.4:123456", "1.2.3.4:-1", "1.2.3.4:0x1", "[::1]:80", "[::ffff:1.2.3.4]:80", "::1",
		"1.2.3.4:80 ", " 1.2.3.4:80", "", "unknown", "1..2.3:4", "1.2.3.4:00080", "1.2.3.1000:1",
	} {
		checkIPv4Host(t, s)
	}
}

func FuzzIPv4Host(f *testing.F) {
	f.Add("192.0.2.1:4711")
	f.Add("[2001:db8::1]:443")
	f.Fuzz(checkIPv4Host)
}
