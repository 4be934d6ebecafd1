package acmetest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
)

// addrs are the loopback addresses of one CA. They are fixed at Start and
// reused by Restart, so nothing a client was configured with goes stale.
type addrs struct {
	public     string // the recording proxy: what DirectoryURL names
	pebble     string // Pebble's ACME listener, reached only by the proxy
	management string // Pebble's management API (roots, cert status)
	dns        string // pebble-challtestsrv's DNS server (TCP and UDP)
	challMgmt  string // pebble-challtestsrv's management API; unused, but it must bind somewhere
	httpPort   int    // where Pebble's VA sends HTTP-01 requests
	tlsPort    int    // where Pebble's VA sends TLS-ALPN-01 handshakes
}

// portSet hands out free loopback ports. Every port stays bound until
// release, so two calls never return the same port; after release another
// process could take one before our child binds it. That window is a few
// milliseconds and a loss shows up as a bind error in the child's log.
type portSet struct {
	held  []io.Closer
	avoid map[int]bool // ports the caller chose, which are free now but taken later
}

// tcp returns a port that is free for TCP.
func (s *portSet) tcp() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("pick a free port: %w", err)
		}
		s.held = append(s.held, l)
		if p := l.Addr().(*net.TCPAddr).Port; !s.avoid[p] {
			return p, nil
		}
	}
	return 0, errors.New("pick a free port: only ports to avoid offered")
}

// tcpAndUDP returns a port free for both, as a DNS server needs:
// pebble-challtestsrv binds both and only logs when one bind fails.
func (s *portSet) tcpAndUDP() (int, error) {
	var lastErr error
	for range 20 {
		port, err := s.tcp()
		if err != nil {
			return 0, err
		}
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			lastErr = err // keep the TCP port held so it is not offered again
			continue
		}
		s.held = append(s.held, pc)
		return port, nil
	}
	return 0, fmt.Errorf("no port free for both TCP and UDP: %w", lastErr)
}

// release unbinds every port handed out. Close errors are of no interest:
// the port is free either way.
func (s *portSet) release() {
	for _, c := range s.held {
		_ = c.Close()
	}
	s.held = nil
}

// pickAddrs fills in every address of a, keeping the validation ports the
// caller chose. public is taken from the already bound proxy listener.
func pickAddrs(public net.Listener, httpPort, tlsPort int) (addrs, error) {
	s := portSet{avoid: map[int]bool{httpPort: true, tlsPort: true}}
	defer s.release()

	hostPort := func(p int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)) }
	a := addrs{public: public.Addr().String(), httpPort: httpPort, tlsPort: tlsPort}
	for _, f := range []struct {
		dst *string
		udp bool
	}{{&a.pebble, false}, {&a.management, false}, {&a.dns, true}, {&a.challMgmt, false}} {
		pick := s.tcp
		if f.udp {
			pick = s.tcpAndUDP
		}
		p, err := pick()
		if err != nil {
			return addrs{}, err
		}
		*f.dst = hostPort(p)
	}
	for _, p := range []*int{&a.httpPort, &a.tlsPort} {
		if *p != 0 {
			continue
		}
		var err error
		if *p, err = s.tcp(); err != nil {
			return addrs{}, err
		}
	}
	return a, nil
}
