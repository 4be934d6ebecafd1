//go:build openssl && cgo

package certs

// RSA signatures through OpenSSL's libcrypto (build tag "openssl", cgo).
//
// A full TLS handshake with an RSA-2048 certificate costs one RSA
// signature, and Go's crypto/rsa computes one in about 1 ms on the
// benchmark machine where libcrypto needs 0.25 ms (`openssl speed
// rsa2048`): RSA handshakes are bound by it (docs/performance.md). Built
// with -tags openssl, tlsedge hands those signatures to libcrypto; every
// other part of TLS stays Go's. The default build stays pure Go and static.
//
// Keys are converted once (PKCS#8 DER into an EVP_PKEY) and kept while
// their *rsa.PrivateKey lives: the cache holds only weak pointers, and a
// cleanup frees the EVP_PKEY when the signer is collected.

/*
#cgo LDFLAGS: -lcrypto
#include <openssl/evp.h>
#include <openssl/rsa.h>

static EVP_PKEY *tlsedge_rsa_load(const unsigned char *der, long len) {
	const unsigned char *p = der;
	return d2i_AutoPrivateKey(NULL, &p, len);
}

static const EVP_MD *tlsedge_md(int bits) {
	switch (bits) {
	case 256: return EVP_sha256();
	case 384: return EVP_sha384();
	case 512: return EVP_sha512();
	}
	return NULL;
}

// tlsedge_rsa_sign signs a digest: PKCS#1 v1.5, or PSS with the salt as
// long as the digest and MGF1 over the same hash (what TLS uses).
static int tlsedge_rsa_sign(EVP_PKEY *pkey, int pss, int bits,
		const unsigned char *digest, size_t dlen, unsigned char *sig, size_t *siglen) {
	const EVP_MD *md = tlsedge_md(bits);
	if (md == NULL) return 0;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pkey, NULL);
	if (ctx == NULL) return 0;
	int ok = EVP_PKEY_sign_init(ctx) > 0
		&& EVP_PKEY_CTX_set_rsa_padding(ctx, pss ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING) > 0
		&& EVP_PKEY_CTX_set_signature_md(ctx, md) > 0
		&& (!pss || (EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) > 0
			&& EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) > 0))
		&& EVP_PKEY_sign(ctx, sig, siglen, digest, dlen) > 0;
	EVP_PKEY_CTX_free(ctx);
	return ok;
}

static void tlsedge_rsa_free(EVP_PKEY *pkey) { EVP_PKEY_free(pkey); }
*/
import "C"

import (
	"crypto"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"runtime"
	"sync"
	"unsafe"
	"weak"
)

// OpenSSLSigning says whether RSA signatures go through libcrypto.
const OpenSSLSigning = true

// opensslRSA is a crypto.Signer over an EVP_PKEY.
type opensslRSA struct {
	pub rsa.PublicKey
	// key is Go's key, for what libcrypto is not asked: weak, so that the
	// cache does not keep a replaced certificate's key alive.
	key  weak.Pointer[rsa.PrivateKey]
	size int
	pkey *C.EVP_PKEY
}

var errKeyGone = errors.New("certs: the certificate's key was replaced")

// goSign signs with crypto/rsa.
func (s *opensslRSA) goSign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	k := s.key.Value()
	if k == nil {
		return nil, errKeyGone
	}
	return k.Sign(rand, digest, opts)
}

var rsaSigners sync.Map // weak.Pointer[rsa.PrivateKey] -> *opensslRSA

func newOpenSSLRSA(key *rsa.PrivateKey) (*opensslRSA, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	pkey := C.tlsedge_rsa_load((*C.uchar)(unsafe.Pointer(&der[0])), C.long(len(der)))
	clear(der)
	if pkey == nil {
		return nil, errors.New("certs: libcrypto could not load the RSA key")
	}
	s := &opensslRSA{pub: key.PublicKey, key: weak.Make(key), size: key.Size(), pkey: pkey}
	runtime.AddCleanup(s, func(p *C.EVP_PKEY) { C.tlsedge_rsa_free(p) }, pkey)
	return s, nil
}

func (s *opensslRSA) Public() crypto.PublicKey { return &s.pub }

// Sign signs with libcrypto for the hashes and paddings TLS uses, and
// with crypto/rsa otherwise.
func (s *opensslRSA) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	pss := 0
	if po, ok := opts.(*rsa.PSSOptions); ok {
		if po.SaltLength != rsa.PSSSaltLengthEqualsHash {
			return s.goSign(rand, digest, opts)
		}
		pss = 1
	}
	var bits int
	switch opts.HashFunc() {
	case crypto.SHA256:
		bits = 256
	case crypto.SHA384:
		bits = 384
	case crypto.SHA512:
		bits = 512
	default:
		return s.goSign(rand, digest, opts)
	}
	if len(digest) != opts.HashFunc().Size() {
		return nil, errors.New("certs: digest length does not match the hash")
	}
	sig := make([]byte, s.size)
	n := C.size_t(len(sig))
	ok := C.tlsedge_rsa_sign(s.pkey, C.int(pss), C.int(bits),
		(*C.uchar)(unsafe.Pointer(&digest[0])), C.size_t(len(digest)),
		(*C.uchar)(unsafe.Pointer(&sig[0])), &n)
	runtime.KeepAlive(s) // the cleanup must not free pkey during the call
	if ok == 0 {
		return s.goSign(rand, digest, opts)
	}
	return sig[:n], nil
}

// FastSigner returns cert with its RSA key signing through libcrypto (a
// shallow copy; cert itself is not changed). Other keys, and RSA keys
// libcrypto refuses, are returned as they are.
func FastSigner(cert *tls.Certificate) *tls.Certificate {
	if cert == nil {
		return nil
	}
	key, ok := cert.PrivateKey.(*rsa.PrivateKey)
	if !ok {
		return cert
	}
	wp := weak.Make(key)
	var s *opensslRSA
	if v, ok := rsaSigners.Load(wp); ok {
		s = v.(*opensslRSA)
	} else {
		ns, err := newOpenSSLRSA(key)
		if err != nil {
			return cert
		}
		v, loaded := rsaSigners.LoadOrStore(wp, ns)
		s = v.(*opensslRSA)
		if !loaded {
			runtime.AddCleanup(key, func(wp weak.Pointer[rsa.PrivateKey]) { rsaSigners.Delete(wp) }, wp)
		}
	}
	c := *cert
	c.PrivateKey = s
	return &c
}
