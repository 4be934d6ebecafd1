package upstream

import "net"

// clientHost is X-Forwarded-For's value for remote: its host part, when
// it is one that may be sent as a field value.
func clientHost(remote string) (string, bool) {
	if host, ok := ipv4Host(remote); ok {
		return host, true
	}
	host, _, err := net.SplitHostPort(remote)
	return host, err == nil && validFieldValue(host)
}

// ipv4Host returns the address part of remote when remote is an IPv4
// address and a port ("192.0.2.1:4711"), which a client's RemoteAddr
// almost always is, accepting exactly what netip.ParseAddrPort accepts as
// such (no leading zeros, each part at most 255, a port at most 65535).
// X-Forwarded-For and Forwarded then take it as it is: the parse and the
// re-formatting that netip and net.SplitHostPort do, twice per request,
// cost more than the rest of the two fields.
func ipv4Host(remote string) (string, bool) {
	i, parts := 0, 0
	for ; parts < 4; parts++ {
		start, v := i, 0
		for i < len(remote) && remote[i] >= '0' && remote[i] <= '9' && i-start < 3 {
			v = v*10 + int(remote[i]-'0')
			i++
		}
		n := i - start
		if n == 0 || v > 255 || n > 1 && remote[start] == '0' {
			return "", false
		}
		if parts < 3 {
			if i == len(remote) || remote[i] != '.' {
				return "", false
			}
			i++
		}
	}
	host := remote[:i]
	if i == len(remote) || remote[i] != ':' {
		return "", false
	}
	port := remote[i+1:]
	if port == "" || len(port) > 5 {
		return "", false
	}
	p := 0
	for j := 0; j < len(port); j++ {
		c := port[j]
		if c < '0' || c > '9' {
			return "", false
		}
		p = p*10 + int(c-'0')
	}
	if p > 65535 {
		return "", false
	}
	return host, true
}
