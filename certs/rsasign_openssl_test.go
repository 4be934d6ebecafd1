//go:build openssl && cgo

package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"
)

func rsaTestCert(t testing.TB) (*tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rsa.example.com"},
		DNSNames: []string{"rsa.example.com"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// Every signature TLS asks for verifies with Go's crypto/rsa.
func TestOpenSSLRSASignatures(t *testing.T) {
	cert, _ := rsaTestCert(t)
	key := cert.PrivateKey.(*rsa.PrivateKey)
	fast := FastSigner(cert)
	s, ok := fast.PrivateKey.(*opensslRSA)
	if !ok {
		t.Fatalf("FastSigner kept %T", fast.PrivateKey)
	}
	if cert.PrivateKey != key {
		t.Fatal("FastSigner changed the certificate it was given")
	}
	if FastSigner(cert).PrivateKey != s {
		t.Error("a second call converted the key again")
	}
	msg := []byte("tlsedge handshake transcript")
	d256, d384, d512 := sha256.Sum256(msg), sha512.Sum384(msg), sha512.Sum512(msg)
	for _, tc := range []struct {
		name   string
		digest []byte
		opts   crypto.SignerOpts
	}{
		{"PSS SHA-256", d256[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}},
		{"PSS SHA-384", d384[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA384}},
		{"PSS SHA-512", d512[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA512}},
		{"PKCS1 SHA-256", d256[:], crypto.SHA256},
		{"PKCS1 SHA-384", d384[:], crypto.SHA384},
		{"PSS auto salt (Go fallback)", d256[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto, Hash: crypto.SHA256}},
	} {
		sig, err := s.Sign(rand.Reader, tc.digest, tc.opts)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if po, ok := tc.opts.(*rsa.PSSOptions); ok {
			err = rsa.VerifyPSS(&key.PublicKey, po.Hash, tc.digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
		} else {
			err = rsa.VerifyPKCS1v15(&key.PublicKey, tc.opts.HashFunc(), tc.digest, sig)
		}
		if err != nil {
			t.Errorf("%s: signature does not verify: %v", tc.name, err)
		}
	}
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec := &tls.Certificate{PrivateKey: ek}
	if FastSigner(ec) != ec {
		t.Error("an ECDSA certificate was changed")
	}
}

// Real handshakes, TLS 1.3 and 1.2, with the libcrypto signer.
func TestOpenSSLRSAHandshake(t *testing.T) {
	cert, pool := rsaTestCert(t)
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
			MinVersion: v, MaxVersion: v,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return FastSigner(cert), nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.(*tls.Conn).Handshake() //nolint:errcheck
				c.Close()
			}
		}()
		for i := 0; i < 20; i++ {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(),
				&tls.Config{ServerName: "rsa.example.com", RootCAs: pool, MinVersion: v, MaxVersion: v})
			if err != nil {
				t.Fatalf("TLS %x handshake %d: %v", v, i, err)
			}
			c.Close()
		}
		ln.Close()
	}
}

// BenchmarkRSASign compares one RSA-2048 PSS signature through libcrypto
// with crypto/rsa's.
func BenchmarkRSASign(b *testing.B) {
	cert, _ := rsaTestCert(b)
	key := cert.PrivateKey.(*rsa.PrivateKey)
	d := sha256.Sum256([]byte("x"))
	opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
	for name, signer := range map[string]crypto.Signer{"openssl": FastSigner(cert).PrivateKey.(crypto.Signer), "go": key} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := signer.Sign(rand.Reader, d[:], opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
