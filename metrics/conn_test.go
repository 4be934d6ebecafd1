package metrics

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestConnectionsAndStreams(t *testing.T) {
	m := New()
	for range 3 {
		m.ConnOpened("h2")
	}
	m.ConnOpened("h1")
	m.ConnOpened("tcp")
	m.ConnOpened("h3?") // other
	m.ConnClosed("h2")
	m.ConnClosed("tcp")
	for range 5 {
		m.StreamOpened()
	}
	m.StreamClosed()
	s := scrape(t, m)
	for proto, want := range map[string][2]float64{"h1": {1, 1}, "h2": {3, 2}, "tcp": {1, 0}, "other": {1, 1}} {
		s.want(t, want[0], "tlsedge_connections_total", "proto", proto)
		s.want(t, want[1], "tlsedge_connections_active", "proto", proto)
	}
	s.want(t, 5, "tlsedge_http2_streams_total")
	s.want(t, 4, "tlsedge_http2_streams_active")
}

func TestHandshakeFailureReasonTable(t *testing.T) {
	opErr := func(err error) error { return &net.OpError{Op: "read", Net: "tcp", Err: err} }
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{os.ErrDeadlineExceeded, "timeout"},
		{opErr(os.ErrDeadlineExceeded), "timeout"},
		{io.EOF, "eof"},
		{io.ErrUnexpectedEOF, "eof"},
		{opErr(os.NewSyscallError("read", syscall.ECONNRESET)), "eof"},
		{errors.New("tls: first record does not look like a TLS handshake"), "not_tls"},
		{errors.New("remote error: tls: bad certificate"), "bad_certificate"},
		{errors.New("remote error: tls: unknown certificate authority"), "bad_certificate"},
		{errors.New("remote error: tls: expired certificate"), "bad_certificate"},
		{errors.New("tls: client offered only unsupported versions: [301]"), "protocol_version"},
		{errors.New("remote error: tls: protocol version not supported"), "protocol_version"},
		{errors.New("tls: unsupported SSLv2 handshake received"), "protocol_version"},
		{errors.New("tls: no cipher suite supported by both client and server; client offered: [c02f]"), "no_cipher"},
		{errors.New("tls: no certificates configured"), "unknown_sni"},
		{fmt.Errorf("certs: certificate for %q: %w", "a.example", errors.New("on-demand: not allowed")), "unknown_sni"},
		{fmt.Errorf("certs: default certificate for %q: %w", "", errors.New("certs: no certificate")), "unknown_sni"},
		{errors.New("no certificate yet for a.example: still ordering"), "unknown_sni"},
		{errors.New("tls: client didn't provide a certificate"), "client_cert"},
		{&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, "client_cert"},
		{fmt.Errorf("verify: %w", errors.New("client certificate expired: x509: ...")), "client_cert"},
		{errors.New("tls: client requested unsupported application protocols ([\"h3\"])"), "other"},
		{errors.New("something else"), "other"},
	}
	for _, tt := range tests {
		if got := HandshakeFailureReason(tt.err); got != tt.want {
			t.Errorf("%v: %q, want %q", tt.err, got, tt.want)
		}
	}
}

// TestHandshakeReal runs real handshakes over loopback and checks that
// crypto/tls's own errors land in the intended reasons.
func TestHandshakeReal(t *testing.T) {
	cert, pool := selfSigned(t, "shop.example")
	base := &tls.Config{
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if h.ServerName == "shop.example" {
				return &cert, nil
			}
			return nil, nil // crypto/tls: "no certificates configured"
		},
	}
	trusting := &tls.Config{ServerName: "shop.example", RootCAs: pool}
	clientTLS := func(c *tls.Config) func(net.Conn) {
		return func(nc net.Conn) { tls.Client(nc, c).Handshake() } //nolint:errcheck // the server's side is tested
	}
	tests := []struct {
		name   string
		server func(*tls.Config)
		client func(net.Conn)
		want   string // "" for success
	}{
		{"tls13", nil, clientTLS(trusting), ""},
		{"tls12", nil, clientTLS(&tls.Config{ServerName: "shop.example", RootCAs: pool, MaxVersion: tls.VersionTLS12}), ""},
		{"plain http", nil, func(nc net.Conn) { io.WriteString(nc, "GET / HTTP/1.1\r\nHost: shop.example\r\n\r\n") }, "not_tls"}, //nolint:errcheck
		{"client hangs up", nil, func(nc net.Conn) { nc.Close() }, "eof"},
		{"client silent", func(c *tls.Config) {}, func(net.Conn) {}, "timeout"},
		{"untrusted", nil, clientTLS(&tls.Config{ServerName: "shop.example"}), "bad_certificate"},
		{"unknown name", nil, clientTLS(&tls.Config{ServerName: "nope.example", InsecureSkipVerify: true}), "unknown_sni"},
		{"old client", func(c *tls.Config) { c.MinVersion = tls.VersionTLS13 },
			clientTLS(&tls.Config{ServerName: "shop.example", RootCAs: pool, MaxVersion: tls.VersionTLS12}), "protocol_version"},
		{"no common suite", func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 },
			clientTLS(&tls.Config{ServerName: "shop.example", RootCAs: pool, MaxVersion: tls.VersionTLS12,
				CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}}), "no_cipher"},
		{"no client cert", func(c *tls.Config) { c.ClientAuth = tls.RequireAnyClientCert }, clientTLS(trusting), "client_cert"},
		{"untrusted client cert", func(c *tls.Config) { c.ClientAuth = tls.RequireAndVerifyClientCert; c.ClientCAs = x509.NewCertPool() },
			clientTLS(&tls.Config{ServerName: "shop.example", RootCAs: pool, Certificates: []tls.Certificate{cert}}), "client_cert"},
	}
	m := New()
	want := map[string]float64{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base.Clone()
			if tt.server != nil {
				tt.server(cfg)
			}
			// The silent client is the only case that waits for the
			// deadline; the others end long before it.
			deadline := 5 * time.Second
			if tt.want == "timeout" {
				deadline = 50 * time.Millisecond
			}
			version, err := serverHandshake(t, cfg, deadline, tt.client)
			if got := HandshakeFailureReason(err); got != tt.want {
				t.Fatalf("error %v: reason %q, want %q", err, got, tt.want)
			}
			m.Handshake(version, err)
			if err == nil {
				want[key("tlsedge_tls_handshakes_total", "version", versionNames[versionIndex(version)])]++
			} else {
				want[key("tlsedge_tls_handshake_failures_total", "reason", tt.want)]++
			}
		})
	}
	s := scrape(t, m)
	for k, v := range want {
		if s.values[k] != v {
			t.Errorf("%s = %v, want %v", k, s.values[k], v)
		}
	}
	s.want(t, 1, "tlsedge_tls_handshakes_total", "version", "1.3")
	s.want(t, 1, "tlsedge_tls_handshakes_total", "version", "1.2")
	s.want(t, 0, "tlsedge_tls_handshakes_total", "version", "1.0")
	if n, _ := s.count("tlsedge_tls_handshake_failures_total"); n != numHSReasons {
		t.Errorf("failure series: %d, want %d", n, numHSReasons)
	}
}

// serverHandshake accepts one loopback connection, runs client on the
// other end, and returns the server's negotiated version and error.
func serverHandshake(t *testing.T, cfg *tls.Config, deadline time.Duration, client func(net.Conn)) (uint16, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		defer nc.Close()
		client(nc)
		// Hold the conn until the server is through: an early close would
		// turn every failure into "eof".
		nc.SetReadDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
		io.Copy(io.Discard, nc)                             //nolint:errcheck
	}()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(deadline)) //nolint:errcheck
	tc := tls.Server(raw, cfg)
	err = tc.Handshake()
	version := tc.ConnectionState().Version
	tc.Close()
	<-done
	return version, err
}

// selfSigned returns an ECDSA certificate for name, usable by either side,
// and a pool that trusts it.
func selfSigned(t *testing.T, name string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA:         true,

		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
