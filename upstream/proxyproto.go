package upstream

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
)

// The PROXY protocol (HAProxy, "The PROXY protocol", versions 1 and 2,
// https://www.haproxy.org/download/3.0/doc/proxy-protocol.txt) tells a
// server behind a TCP proxy the client's address: one header, sent by the
// proxy before any byte of the connection (and before a TLS ClientHello).
// The TCP mode sends it to backends; the listener reads it from trusted load
// balancers in front of us.

// ErrProxyHeader means the bytes at the start of a connection are not a
// valid PROXY protocol header. The connection cannot be used: what follows
// the bad header is not known to be the client's data.
var ErrProxyHeader = errors.New("upstream: malformed PROXY protocol header")

const (
	// proxyV1MaxLen is the longest v1 line, CRLF included (spec section
	// 2.1: "PROXY UNKNOWN ffff:...:ffff ffff:...:ffff 65535 65535\r\n").
	proxyV1MaxLen = 107
	// proxyV2HeadLen is the fixed part of a v2 header: signature,
	// version/command, family/protocol, length.
	proxyV2HeadLen = 16

	proxyV2Version = 0x20 // high nibble of byte 13
	proxyV2Local   = 0x00 // command: health check from the proxy itself
	proxyV2Proxy   = 0x01 // command: relayed connection

	proxyV2Unspec = 0x00 // family/protocol: unknown; no addresses
	proxyV2TCP4   = 0x11 // AF_INET, STREAM: 4+4+2+2 address bytes
	proxyV2TCP6   = 0x21 // AF_INET6, STREAM: 16+16+2+2 address bytes

	proxyV2TCP4Len = 12
	proxyV2TCP6Len = 36
)

// proxyV2Sig starts every v2 header; it cannot start an HTTP request, a TLS
// ClientHello or a v1 header.
var proxyV2Sig = [12]byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

// proxyAddrs returns src and dst as the pair a header carries: both IPv4, or
// both IPv6 (an IPv4 address next to an IPv6 one is sent IPv4-mapped, since
// one header has one family). ok is false unless both are TCP addresses
// with an IP and a valid port; the header then says "unknown".
func proxyAddrs(src, dst net.Addr) (s, d netip.AddrPort, ok bool) {
	s, ok1 := tcpAddrPort(src)
	d, ok2 := tcpAddrPort(dst)
	if !ok1 || !ok2 {
		return s, d, false
	}
	if s.Addr().Is4() != d.Addr().Is4() {
		s = netip.AddrPortFrom(netip.AddrFrom16(s.Addr().As16()), s.Port())
		d = netip.AddrPortFrom(netip.AddrFrom16(d.Addr().As16()), d.Port())
	}
	return s, d, true
}

// tcpAddrPort converts a *net.TCPAddr, unmapping IPv4-mapped IPv6 (what a
// dual-stack listener reports for IPv4 clients) and dropping the IPv6 zone,
// which neither header version can carry.
func tcpAddrPort(a net.Addr) (netip.AddrPort, bool) {
	ta, ok := a.(*net.TCPAddr)
	if !ok || ta == nil || ta.Port < 0 || ta.Port > 0xffff {
		return netip.AddrPort{}, false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(ta.Port)), true
}

// AppendProxyV1 appends the PROXY protocol v1 line for a connection from
// src to dst: "PROXY TCP4 src dst sport dport\r\n", TCP6 likewise, or
// "PROXY UNKNOWN\r\n" when either is not a TCP address with an IP.
func AppendProxyV1(b []byte, src, dst net.Addr) []byte {
	s, d, ok := proxyAddrs(src, dst)
	if !ok {
		return append(b, "PROXY UNKNOWN\r\n"...)
	}
	if s.Addr().Is4() {
		b = append(b, "PROXY TCP4 "...)
	} else {
		b = append(b, "PROXY TCP6 "...)
	}
	b = s.Addr().AppendTo(b)
	b = append(b, ' ')
	b = d.Addr().AppendTo(b)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(s.Port()), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(d.Port()), 10)
	return append(b, '\r', '\n')
}

// AppendProxyV2 appends the PROXY protocol v2 header for a connection from
// src to dst: command PROXY, TCP over IPv4 or IPv6, no TLVs. When either is
// not a TCP address with an IP the family is UNSPEC with no addresses
// (spec section 2.2: the receiver then uses the connection's own
// endpoints).
func AppendProxyV2(b []byte, src, dst net.Addr) []byte {
	b = append(b, proxyV2Sig[:]...)
	b = append(b, proxyV2Version|proxyV2Proxy)
	s, d, ok := proxyAddrs(src, dst)
	switch {
	case !ok:
		return append(b, proxyV2Unspec, 0, 0)
	case s.Addr().Is4():
		b = append(b, proxyV2TCP4, 0, proxyV2TCP4Len)
		sa, da := s.Addr().As4(), d.Addr().As4()
		b = append(b, sa[:]...)
		b = append(b, da[:]...)
	default:
		b = append(b, proxyV2TCP6, 0, proxyV2TCP6Len)
		sa, da := s.Addr().As16(), d.Addr().As16()
		b = append(b, sa[:]...)
		b = append(b, da[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, s.Port())
	return binary.BigEndian.AppendUint16(b, d.Port())
}

// ReadProxyHeader reads one PROXY protocol header, v1 or v2, from the start
// of a connection and returns the client (src) and the address it connected
// to (dst) as *net.TCPAddr. Both are nil, with a nil error, when the header
// says the addresses are unknown (v1 UNKNOWN, v2 family UNSPEC) or that the
// connection is the proxy's own health check (v2 LOCAL): the caller then
// uses the connection's own endpoints.
//
// It is strict, since only trusted proxies may send a header at all: the
// v1 line is at most 107 bytes, ends in CRLF, has single spaces, addresses of
// the named family without zone and ports without sign or leading zeros; a
// v2 header has version 2, a known command, TCP over IPv4 or IPv6 or UNSPEC,
// a length that covers the addresses, and well-formed TLVs after them (which
// are skipped). A malformed header is an error wrapping ErrProxyHeader.
//
// It consumes exactly the header, never a byte more, so the caller goes on
// reading the client's data (or TLS handshake) from r; on error it has
// consumed at most 107 bytes (v1) or 16 plus the declared length (v2). A
// stream that ends before the header does gives io.EOF (no byte at all) or
// io.ErrUnexpectedEOF. It blocks until the header arrives: the caller sets
// a read deadline.
func ReadProxyHeader(r *bufio.Reader) (src, dst net.Addr, err error) {
	first, err := r.Peek(1)
	if err != nil {
		return nil, nil, proxyReadError(err)
	}
	switch first[0] {
	case 'P':
		return readProxyV1(r)
	case proxyV2Sig[0]:
		return readProxyV2(r)
	}
	return nil, nil, fmt.Errorf("%w: no header (first byte %#02x)", ErrProxyHeader, first[0])
}

// proxyReadError wraps an I/O error met inside a header.
func proxyReadError(err error) error {
	return fmt.Errorf("upstream: read PROXY header: %w", err)
}

// readProxyV1 reads the v1 line byte by byte, so that neither a line
// longer than the limit nor a small bufio.Reader makes it consume more.
func readProxyV1(r *bufio.Reader) (src, dst net.Addr, err error) {
	var buf [proxyV1MaxLen]byte
	n := 0
	for n == 0 || buf[n-1] != '\n' {
		if n == len(buf) {
			return nil, nil, fmt.Errorf("%w: v1 line longer than %d bytes", ErrProxyHeader, proxyV1MaxLen)
		}
		c, err := r.ReadByte()
		if err != nil {
			return nil, nil, proxyReadError(proxyEOF(err))
		}
		buf[n] = c
		n++
	}
	line, ok := bytes.CutSuffix(buf[:n], []byte("\r\n"))
	if !ok {
		return nil, nil, fmt.Errorf("%w: v1 line not ended by CRLF", ErrProxyHeader)
	}
	rest, ok := bytes.CutPrefix(line, []byte("PROXY "))
	if !ok {
		return nil, nil, fmt.Errorf("%w: v1 line does not start with \"PROXY \"", ErrProxyHeader)
	}
	// Spec section 2.1: after UNKNOWN the receiver ignores everything up
	// to the CRLF.
	if string(rest) == "UNKNOWN" || bytes.HasPrefix(rest, []byte("UNKNOWN ")) {
		return nil, nil, nil
	}
	var f [5][]byte
	for i := range f {
		var more bool
		f[i], rest, more = bytes.Cut(rest, []byte(" "))
		if more != (i < len(f)-1) {
			return nil, nil, fmt.Errorf("%w: v1 line needs 5 fields separated by single spaces", ErrProxyHeader)
		}
	}
	var want4 bool
	switch string(f[0]) {
	case "TCP4":
		want4 = true
	case "TCP6":
	default:
		return nil, nil, fmt.Errorf("%w: v1 protocol %q", ErrProxyHeader, f[0])
	}
	s, err := parseProxyV1Addr(f[1], f[3], want4)
	if err != nil {
		return nil, nil, err
	}
	d, err := parseProxyV1Addr(f[2], f[4], want4)
	if err != nil {
		return nil, nil, err
	}
	return s, d, nil
}

// parseProxyV1Addr parses one address and port of a v1 line.
func parseProxyV1Addr(addr, port []byte, want4 bool) (*net.TCPAddr, error) {
	ip, err := netip.ParseAddr(string(addr))
	if err != nil || ip.Is4() != want4 || ip.Zone() != "" {
		return nil, fmt.Errorf("%w: v1 address %q", ErrProxyHeader, addr)
	}
	p, ok := parseProxyPort(port)
	if !ok {
		return nil, fmt.Errorf("%w: v1 port %q", ErrProxyHeader, port)
	}
	return &net.TCPAddr{IP: ip.AsSlice(), Port: p}, nil
}

// parseProxyPort accepts 0..65535 in decimal, without sign or leading
// zeros (senders print ports with %u).
func parseProxyPort(s []byte) (int, bool) {
	if len(s) == 0 || len(s) > 5 || (s[0] == '0' && len(s) > 1) {
		return 0, false
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n <= 0xffff
}

// readProxyV2 reads a v2 header: the fixed 16 bytes, then exactly the
// declared length.
func readProxyV2(r *bufio.Reader) (src, dst net.Addr, err error) {
	head, err := r.Peek(proxyV2HeadLen)
	if err != nil {
		if !bytes.HasPrefix(proxyV2Sig[:], head[:min(len(head), len(proxyV2Sig))]) {
			return nil, nil, fmt.Errorf("%w: bad v2 signature", ErrProxyHeader)
		}
		return nil, nil, proxyReadError(proxyEOF(err))
	}
	if !bytes.Equal(head[:len(proxyV2Sig)], proxyV2Sig[:]) {
		return nil, nil, fmt.Errorf("%w: bad v2 signature", ErrProxyHeader)
	}
	verCmd, fam := head[12], head[13]
	n := int(binary.BigEndian.Uint16(head[14:16]))
	if verCmd&0xf0 != proxyV2Version {
		return nil, nil, fmt.Errorf("%w: v2 version %d", ErrProxyHeader, verCmd>>4)
	}
	cmd := verCmd & 0x0f
	if cmd != proxyV2Local && cmd != proxyV2Proxy {
		return nil, nil, fmt.Errorf("%w: v2 command %d", ErrProxyHeader, cmd)
	}
	var addrLen int
	switch {
	case cmd == proxyV2Local || fam == proxyV2Unspec:
		// Spec section 2.2: a LOCAL header's addresses are ignored, and
		// so is whatever an UNSPEC one carries.
	case fam == proxyV2TCP4:
		addrLen = proxyV2TCP4Len
	case fam == proxyV2TCP6:
		addrLen = proxyV2TCP6Len
	default:
		return nil, nil, fmt.Errorf("%w: v2 family/protocol %#02x not supported", ErrProxyHeader, fam)
	}
	if n < addrLen {
		return nil, nil, fmt.Errorf("%w: v2 length %d too short for the addresses", ErrProxyHeader, n)
	}
	if _, err := r.Discard(proxyV2HeadLen); err != nil {
		return nil, nil, proxyReadError(err) // cannot happen: peeked
	}
	if addrLen == 0 {
		if _, err := r.Discard(n); err != nil {
			return nil, nil, proxyReadError(proxyEOF(err))
		}
		return nil, nil, nil
	}
	var a [proxyV2TCP6Len]byte
	if _, err := io.ReadFull(r, a[:addrLen]); err != nil {
		return nil, nil, proxyReadError(proxyEOF(err))
	}
	if err := skipProxyTLVs(r, n-addrLen); err != nil {
		return nil, nil, err
	}
	ipLen := (addrLen - 4) / 2
	s := &net.TCPAddr{IP: net.IP(bytes.Clone(a[:ipLen])), Port: int(binary.BigEndian.Uint16(a[2*ipLen:]))}
	d := &net.TCPAddr{IP: net.IP(bytes.Clone(a[ipLen : 2*ipLen])), Port: int(binary.BigEndian.Uint16(a[2*ipLen+2:]))}
	return s, d, nil
}

// skipProxyTLVs consumes n bytes of type-length-value records after the v2
// addresses, checking that they tile the space exactly.
func skipProxyTLVs(r *bufio.Reader, n int) error {
	for n > 0 {
		if n < 3 {
			return fmt.Errorf("%w: v2 TLV header truncated", ErrProxyHeader)
		}
		var h [3]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return proxyReadError(proxyEOF(err))
		}
		l := int(binary.BigEndian.Uint16(h[1:]))
		n -= 3
		if l > n {
			return fmt.Errorf("%w: v2 TLV of %d bytes overruns the header", ErrProxyHeader, l)
		}
		if _, err := r.Discard(l); err != nil {
			return proxyReadError(proxyEOF(err))
		}
		n -= l
	}
	return nil
}

// proxyEOF turns the end of the stream inside a header into
// io.ErrUnexpectedEOF.
func proxyEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
