//go:build !openssl || !cgo

package certs

import "crypto/tls"

// OpenSSLSigning says whether RSA signatures go through libcrypto: only in
// builds with -tags openssl (and cgo), see rsasign_openssl.go.
const OpenSSLSigning = false

// FastSigner returns cert as it is: this build signs with crypto/rsa.
func FastSigner(cert *tls.Certificate) *tls.Certificate { return cert }
