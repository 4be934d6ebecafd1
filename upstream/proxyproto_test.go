package upstream

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
)

func tcpAddr(s string) *net.TCPAddr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }

// v2 builds a v2 header by hand: version/command, family, then body.
func v2(verCmd, fam byte, body []byte) []byte {
	b := append([]byte(nil), proxyV2Sig[:]...)
	b = append(b, verCmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

func TestAppendProxyV1(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src, dst net.Addr
		want     string
	}{
		{"tcp4", tcpAddr("192.0.2.1:56324"), tcpAddr("198.51.100.7:443"), "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n"},
		{"tcp4 from 16-byte net.IP", &net.TCPAddr{IP: net.ParseIP("10.0.0.1"), Port: 1}, tcpAddr("10.0.0.2:0"), "PROXY TCP4 10.0.0.1 10.0.0.2 1 0\r\n"},
		{"tcp4 mapped by a dual-stack listener", tcpAddr("[::ffff:10.0.0.1]:5"), tcpAddr("[::ffff:10.0.0.2]:6"), "PROXY TCP4 10.0.0.1 10.0.0.2 5 6\r\n"},
		{"tcp6", tcpAddr("[2001:db8::1]:65535"), tcpAddr("[2001:db8::2]:443"), "PROXY TCP6 2001:db8::1 2001:db8::2 65535 443\r\n"},
		{"tcp6 zone dropped", &net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 7, Zone: "eth0"}, tcpAddr("[fe80::2]:8"), "PROXY TCP6 fe80::1 fe80::2 7 8\r\n"},
		{"mixed families sent as tcp6", tcpAddr("192.0.2.1:1"), tcpAddr("[2001:db8::2]:2"), "PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 1 2\r\n"},
		{"unix", &net.UnixAddr{Name: "/run/x", Net: "unix"}, tcpAddr("10.0.0.2:6"), "PROXY UNKNOWN\r\n"},
		{"nil", nil, nil, "PROXY UNKNOWN\r\n"},
		{"nil *TCPAddr", (*net.TCPAddr)(nil), tcpAddr("10.0.0.2:6"), "PROXY UNKNOWN\r\n"},
		{"no IP", &net.TCPAddr{Port: 80}, tcpAddr("10.0.0.2:6"), "PROXY UNKNOWN\r\n"},
		{"port out of range", &net.TCPAddr{IP: net.IPv4(1, 2, 3, 4), Port: 70000}, tcpAddr("10.0.0.2:6"), "PROXY UNKNOWN\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := string(AppendProxyV1([]byte("x"), tc.src, tc.dst))
			if got != "x"+tc.want {
				t.Errorf("got %q, want %q", got, "x"+tc.want)
			}
		})
	}
}

func TestAppendProxyV2(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src, dst net.Addr
		want     []byte
	}{
		{"tcp4", tcpAddr("192.0.2.1:56324"), tcpAddr("198.51.100.7:443"),
			v2(0x21, 0x11, []byte{192, 0, 2, 1, 198, 51, 100, 7, 0xdc, 0x04, 0x01, 0xbb})},
		{"tcp6", tcpAddr("[2001:db8::1]:1"), tcpAddr("[::1]:2"),
			v2(0x21, 0x21, append(append(append([]byte{0x20, 0x01, 0x0d, 0xb8}, make([]byte, 11)...), 1),
				append(make([]byte, 15), 1, 0, 1, 0, 2)...))},
		{"unknown", nil, tcpAddr("10.0.0.2:6"), v2(0x21, 0x00, nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := AppendProxyV2(nil, tc.src, tc.dst)
			if !bytes.Equal(got, tc.want) {
				t.Errorf("got  % x\nwant % x", got, tc.want)
			}
		})
	}
}

// ffff is the longest IPv6 address text.
const ffff = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"

func TestReadProxyHeader(t *testing.T) {
	tlv := []byte{0x20, 0, 5, 1, 0, 0, 0, 0, 0x04, 0, 0} // PP2_TYPE_SSL, PP2_TYPE_NOOP
	for _, tc := range []struct {
		name     string
		in       []byte
		src, dst string // "" for nil
	}{
		{"v1 tcp4", []byte("PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n"), "192.0.2.1:56324", "198.51.100.7:443"},
		{"v1 tcp6", []byte("PROXY TCP6 2001:db8::1 ::1 0 65535\r\n"), "[2001:db8::1]:0", "[::1]:65535"},
		{"v1 tcp6 mapped", []byte("PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 1 2\r\n"), "192.0.2.1:1", "[2001:db8::2]:2"}, // net.IP prints mapped IPv4 as IPv4
		{"v1 unknown", []byte("PROXY UNKNOWN\r\n"), "", ""},
		{"v1 unknown with ignored rest", []byte("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"), "", ""},
		{"v1 longest (107 bytes)", []byte("PROXY UNKNOWN " + ffff + " " + ffff + " 65535 65535\r\n"), "", ""},
		{"v1 longest tcp6", []byte("PROXY TCP6 " + ffff + " " + ffff + " 65535 65535\r\n"),
			"[" + ffff + "]:65535", "[" + ffff + "]:65535"},
		{"v2 tcp4", AppendProxyV2(nil, tcpAddr("192.0.2.1:56324"), tcpAddr("198.51.100.7:443")), "192.0.2.1:56324", "198.51.100.7:443"},
		{"v2 tcp6", AppendProxyV2(nil, tcpAddr("[2001:db8::1]:1"), tcpAddr("[2001:db8::2]:2")), "[2001:db8::1]:1", "[2001:db8::2]:2"},
		{"v2 tcp4 with TLVs", v2(0x21, 0x11, append([]byte{1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2}, tlv...)), "1.2.3.4:1", "5.6.7.8:2"},
		{"v2 unspec", v2(0x21, 0x00, nil), "", ""},
		{"v2 unspec with bytes", v2(0x21, 0x00, []byte{1, 2, 3}), "", ""},
		{"v2 local", v2(0x20, 0x00, nil), "", ""},
		{"v2 local ignores addresses", v2(0x20, 0x11, []byte{1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2}), "", ""},
		{"v2 local ignores any family", v2(0x20, 0x31, make([]byte, 216)), "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const rest = "\x16\x03\x01 client data"
			r := bufio.NewReaderSize(bytes.NewReader(append(tc.in, rest...)), 16)
			src, dst, err := ReadProxyHeader(r)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := addrString(src), tc.src; got != want {
				t.Errorf("src %s, want %s", got, want)
			}
			if got, want := addrString(dst), tc.dst; got != want {
				t.Errorf("dst %s, want %s", got, want)
			}
			if after, _ := io.ReadAll(r); string(after) != rest {
				t.Errorf("left %q in the stream, want %q", after, rest)
			}
		})
	}
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	if ta, ok := a.(*net.TCPAddr); ok && ta == nil {
		return "(*net.TCPAddr)(nil)"
	}
	return a.String()
}

func TestReadProxyHeaderRejects(t *testing.T) {
	addr4 := []byte{1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2}
	for _, tc := range []struct {
		name string
		in   []byte
		want error // ErrProxyHeader, io.EOF or io.ErrUnexpectedEOF
	}{
		{"empty", nil, io.EOF},
		{"http", []byte("GET / HTTP/1.1\r\n\r\n"), ErrProxyHeader},
		{"tls", []byte{0x16, 0x03, 0x01, 0x00}, ErrProxyHeader},
		{"v1 lower case", []byte("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), ErrProxyHeader},
		{"v1 no CR", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), ErrProxyHeader},
		{"v1 too long (108 bytes)", []byte("PROXY UNKNOWN " + ffff + " " + ffff + " 65535 655350\r\n"), ErrProxyHeader},
		{"v1 no newline in 107 bytes", []byte(strings.Repeat("PROXY ", 30)), ErrProxyHeader},
		{"v1 truncated", []byte("PROXY TCP4 1.2.3.4"), io.ErrUnexpectedEOF},
		{"v1 PROXYTCP4", []byte("PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n"), ErrProxyHeader},
		{"v1 UNKNOWNX", []byte("PROXY UNKNOWNX\r\n"), ErrProxyHeader},
		{"v1 double space", []byte("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"), ErrProxyHeader},
		{"v1 trailing space", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"), ErrProxyHeader},
		{"v1 four fields", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), ErrProxyHeader},
		{"v1 six fields", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), ErrProxyHeader},
		{"v1 UDP4", []byte("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"), ErrProxyHeader},
		{"v1 tcp4 with ipv6", []byte("PROXY TCP4 ::1 5.6.7.8 1 2\r\n"), ErrProxyHeader},
		{"v1 tcp6 with ipv4", []byte("PROXY TCP6 ::1 5.6.7.8 1 2\r\n"), ErrProxyHeader},
		{"v1 short ipv4", []byte("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"), ErrProxyHeader},
		{"v1 leading zero octet", []byte("PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n"), ErrProxyHeader},
		{"v1 zone", []byte("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"), ErrProxyHeader},
		{"v1 hostname", []byte("PROXY TCP4 localhost 5.6.7.8 1 2\r\n"), ErrProxyHeader},
		{"v1 port 65536", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), ErrProxyHeader},
		{"v1 port leading zero", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"), ErrProxyHeader},
		{"v1 port sign", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n"), ErrProxyHeader},
		{"v1 port negative", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n"), ErrProxyHeader},
		{"v1 port hex", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 0x1 2\r\n"), ErrProxyHeader},
		{"v1 port six digits", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 000001 2\r\n"), ErrProxyHeader},
		{"v2 bad signature", append([]byte("\r\n\r\n\x00\r\nQUIX\n"), 0x21, 0x11, 0, 12), ErrProxyHeader},
		{"v2 short bad signature", []byte("\r\nX"), ErrProxyHeader},
		{"v2 truncated head", proxyV2Sig[:10], io.ErrUnexpectedEOF},
		{"v2 version 1", v2(0x11, 0x11, addr4), ErrProxyHeader},
		{"v2 version 3", v2(0x31, 0x11, addr4), ErrProxyHeader},
		{"v2 command 2", v2(0x22, 0x11, addr4), ErrProxyHeader},
		{"v2 udp4", v2(0x21, 0x12, addr4), ErrProxyHeader},
		{"v2 unix", v2(0x21, 0x31, make([]byte, 216)), ErrProxyHeader},
		{"v2 unspec stream", v2(0x21, 0x01, nil), ErrProxyHeader},
		{"v2 length short for tcp4", v2(0x21, 0x11, addr4[:11]), ErrProxyHeader},
		{"v2 length short for tcp6", v2(0x21, 0x21, make([]byte, 35)), ErrProxyHeader},
		{"v2 truncated body", v2(0x21, 0x11, addr4)[:20], io.ErrUnexpectedEOF},
		{"v2 truncated local body", v2(0x20, 0x00, addr4)[:20], io.ErrUnexpectedEOF},
		{"v2 TLV header cut", v2(0x21, 0x11, append(addr4, 1, 0)), ErrProxyHeader},
		{"v2 TLV overruns", v2(0x21, 0x11, append(addr4, 1, 0, 2, 9)), ErrProxyHeader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst, err := ReadProxyHeader(bufio.NewReader(bytes.NewReader(tc.in)))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if src != nil || dst != nil {
				t.Errorf("addresses %v %v returned with an error", src, dst)
			}
		})
	}
}

// FuzzReadProxyHeader checks two properties. Any input: ReadProxyHeader
// does not panic, consumes at most 107 bytes (v1) or 16 plus the declared
// length (v2), and on success exactly the header, whose addresses encode
// back to a header that reads the same. Addresses made from the input:
// whatever AppendProxyV1 and AppendProxyV2 produce reads back as the same
// addresses, and nothing more is consumed.
func FuzzReadProxyHeader(f *testing.F) {
	for _, s := range []string{
		"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n",
		"PROXY TCP6 2001:db8::1 ::1 0 65535\r\nhello",
		"PROXY UNKNOWN\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
		"GET / HTTP/1.1\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Add(AppendProxyV2(nil, tcpAddr("192.0.2.1:56324"), tcpAddr("198.51.100.7:443")))
	f.Add(AppendProxyV2(nil, tcpAddr("[2001:db8::1]:1"), tcpAddr("[2001:db8::2]:2")))
	f.Add(AppendProxyV2(nil, nil, nil))
	f.Add(v2(0x21, 0x11, []byte{1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2, 0x20, 0, 5, 1, 0, 0, 0, 0}))
	f.Add(v2(0x20, 0x00, []byte{1, 2, 3}))
	f.Add(v2(0x21, 0x11, []byte{1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2, 1, 0, 9}))

	f.Fuzz(func(t *testing.T, data []byte) {
		// Parsing arbitrary bytes.
		in := bytes.NewReader(data)
		r := bufio.NewReaderSize(in, 16)
		src, dst, err := ReadProxyHeader(r)
		consumed := len(data) - in.Len() - r.Buffered()
		limit := proxyV1MaxLen
		if len(data) > 0 && data[0] != 'P' {
			limit = proxyV2HeadLen
			if len(data) >= proxyV2HeadLen {
				limit += int(binary.BigEndian.Uint16(data[14:16]))
			}
		}
		if consumed > limit {
			t.Fatalf("consumed %d bytes, limit %d (err %v)", consumed, limit, err)
		}
		if err != nil {
			if src != nil || dst != nil {
				t.Fatalf("addresses returned with error %v", err)
			}
		} else {
			if (src == nil) != (dst == nil) {
				t.Fatalf("one address nil: %v %v", src, dst)
			}
			if data[0] == 'P' && data[consumed-1] != '\n' {
				t.Fatalf("v1 header of %d bytes does not end its line", consumed)
			}
			if src != nil {
				roundTrip(t, src, dst)
			}
		}

		// Encoding addresses made from the input.
		if len(data) < 36 {
			return
		}
		ip := func(b []byte) net.IP {
			if data[35]&1 == 0 {
				return net.IP(b[:4])
			}
			return net.IP(b[:16])
		}
		s := &net.TCPAddr{IP: ip(data[0:16]), Port: int(binary.BigEndian.Uint16(data[32:34]))}
		d := &net.TCPAddr{IP: ip(data[16:32]), Port: int(binary.BigEndian.Uint16(data[34:36]))}
		if data[35]&2 != 0 { // one side IPv4, the other IPv6: sent as TCP6
			d.IP = net.IP(data[16:32])
			s.IP = net.IP(data[0:4])
		}
		roundTrip(t, s, d)
	})
}

// roundTrip encodes src and dst with both versions and checks that
// ReadProxyHeader returns the same endpoints and leaves what follows.
func roundTrip(t *testing.T, src, dst net.Addr) {
	t.Helper()
	for v, enc := range []func([]byte, net.Addr, net.Addr) []byte{AppendProxyV1, AppendProxyV2} {
		h := enc(nil, src, dst)
		r := bufio.NewReaderSize(bytes.NewReader(append(h, "after"...)), 16)
		s, d, err := ReadProxyHeader(r)
		if err != nil {
			t.Fatalf("v%d: reading %q: %v", v+1, h, err)
		}
		if !sameEndpoint(s, src) || !sameEndpoint(d, dst) {
			t.Fatalf("v%d: %v -> %v encoded as %q, read back as %v -> %v", v+1, src, dst, h, s, d)
		}
		if rest, _ := io.ReadAll(r); string(rest) != "after" {
			t.Fatalf("v%d: left %q after the header, want \"after\"", v+1, rest)
		}
	}
}

// sameEndpoint compares TCP endpoints as the header carries them: IPv4 and
// IPv4-mapped IPv6 are the same, zones do not travel.
func sameEndpoint(a, b net.Addr) bool {
	x, ok1 := tcpAddrPort(a)
	y, ok2 := tcpAddrPort(b)
	return ok1 && ok2 && x == y
}
