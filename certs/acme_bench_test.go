package certs

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// BenchmarkLookup compares the handshake-time certificate lookup of an
// ACME-managed host (certmagic's cache behind tlsedge's readiness check)
// with the local CA's, in one run: the ratio is what matters.
//
//	go test -run '^$' -bench Lookup -benchmem ./certs
func BenchmarkLookup(b *testing.B) {
	const host = "good.example.test"
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	fx := newAutocertFixture(b, time.Now())
	store := fileStore(b)
	a, err := NewACME(ACMEConfig{CA: unreachableCA, Hosts: []string{host}, Storage: store, StorageName: "bench", Log: logrus.NewEntry(log)})
	if err != nil {
		b.Fatal(err)
	}
	// An imported certificate: loaded from storage, nothing ordered.
	if _, err := ImportAutocert(context.Background(), fx.dir, store, a.IssuerKey(), time.Now()); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Run(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for !a.cached(host) {
		if time.Now().After(deadline) {
			b.Fatal("imported certificate not loaded")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ca, err := NewLocalCA(LocalCAConfig{Dir: b.TempDir(), Hosts: []string{host}, Log: logrus.NewEntry(log)})
	if err != nil {
		b.Fatal(err)
	}
	hello := &tls.ClientHelloInfo{ServerName: host}
	for _, src := range []struct {
		name string
		s    Source
	}{{"acme", a}, {"localca", ca}} {
		if c, err := src.s.Lookup(hello); err != nil || c == nil {
			b.Fatalf("%s: %v", src.name, err)
		}
		b.Run(src.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := src.s.Lookup(hello); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
