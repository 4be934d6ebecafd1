package certs

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
)

// ManagedCert is one certificate in ACME storage, as `tlsedge certs`
// lists it.
type ManagedCert struct {
	Names     []string
	Issuer    string // the issuing CA's common name
	IssuerKey string // the ACME directory it came from, as certmagic names it
	Serial    string // hex
	NotBefore time.Time
	NotAfter  time.Time
	// RenewAt is when renewal is due: the CA's ARI choice when it gave
	// one, else when a third of the lifetime is left (certmagic's default).
	RenewAt time.Time
	Key     string // storage key of the certificate
}

// ListManaged reads every certificate certmagic keeps in st.
func ListManaged(ctx context.Context, st certmagic.Storage) ([]ManagedCert, error) {
	keys, err := st.List(ctx, "certificates", true)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) { // a fresh state dir: nothing yet
			return nil, nil
		}
		return nil, fmt.Errorf("listing certificates: %w", err)
	}
	var out []ManagedCert
	for _, k := range keys {
		if !strings.HasSuffix(k, ".crt") {
			continue
		}
		mc, err := readManaged(ctx, st, k)
		if err != nil {
			return out, err
		}
		out = append(out, mc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func readManaged(ctx context.Context, st certmagic.Storage, key string) (ManagedCert, error) {
	data, err := st.Load(ctx, key)
	if err != nil {
		return ManagedCert{}, fmt.Errorf("loading %s: %w", key, err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return ManagedCert{}, fmt.Errorf("%s: no PEM certificate", key)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return ManagedCert{}, fmt.Errorf("%s: %w", key, err)
	}
	// certificates/<issuer key>/<name>/<name>.crt
	parts := strings.Split(key, "/")
	mc := ManagedCert{
		Names:     certNames(leaf),
		Issuer:    leaf.Issuer.CommonName,
		Serial:    hex.EncodeToString(leaf.SerialNumber.Bytes()), // as CAs and openssl print it
		NotBefore: leaf.NotBefore,
		NotAfter:  leaf.NotAfter,
		Key:       key,
	}
	if len(parts) >= 2 {
		mc.IssuerKey = parts[1]
	}
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	mc.RenewAt = leaf.NotAfter.Add(-life / 3)
	if at, ok := ariSelected(ctx, st, strings.TrimSuffix(key, ".crt")+".json"); ok {
		mc.RenewAt = at
	}
	return mc, nil
}

// ariSelected reads the renewal time certmagic chose inside the CA's ARI
// window, kept in the certificate's metadata.
func ariSelected(ctx context.Context, st certmagic.Storage, metaKey string) (time.Time, bool) {
	data, err := st.Load(ctx, metaKey)
	if err != nil {
		return time.Time{}, false
	}
	var meta struct {
		IssuerData struct {
			RenewalInfo *struct {
				Selected time.Time `json:"_selectedTime"`
			} `json:"renewal_info"`
		} `json:"issuer_data"`
	}
	if json.Unmarshal(data, &meta) != nil || meta.IssuerData.RenewalInfo == nil || meta.IssuerData.RenewalInfo.Selected.IsZero() {
		return time.Time{}, false
	}
	return meta.IssuerData.RenewalInfo.Selected, true
}

// Path of a certificate's folder, for display.
func (m ManagedCert) Folder() string { return path.Dir(m.Key) }
