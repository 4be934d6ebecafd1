// Package acmetest runs a real Pebble ACME CA on 127.0.0.1 for end-to-end
// tests of code that obtains certificates (certmagic, autocert):
//
//	ca := acmetest.Start(t, acmetest.Options{ValidityPeriod: time.Minute})
//	// gateway: --acme-ca=ca.DirectoryURL() --acme-ca-root=ca.APIRootFile(),
//	// HTTP-01 on ca.HTTPAddr(), TLS-ALPN-01 on ca.TLSAddr()
//	serials := ca.WaitIssued(t, 1, 30*time.Second)
//
// Validation is real: Pebble resolves every name to 127.0.0.1 through a
// pebble-challtestsrv DNS server and connects to HTTPPort or TLSPort there.
// Both binaries are built once per test process from the versions go.mod
// pins (tool directives), so no network and no installed Pebble is needed.
// Nothing listens beyond loopback.
//
// Behaviour of Pebble v2.10.3 that tests must allow for:
//
//   - State: Pebble keeps everything in memory. Restart loses accounts
//     (clients get accountDoesNotExist and must register again), orders,
//     nonces (badNonce, which clients retry) and issued certificates, and
//     makes a new root; Roots keeps every root seen.
//   - Profiles: an order that names no profile gets one chosen at random
//     among those configured. The harness configures only "default" unless
//     Options.Profiles adds more. The directory lists the profiles under
//     meta.profiles; a client (certmagic's ACMEIssuer.Profile) naming an
//     unknown one gets invalidProfile.
//   - Validity: NotBefore is the issuance time (no backdating), NotAfter is
//     NotBefore+ValidityPeriod-1s. A client sending notAfter in the order
//     (certmagic's ACMEIssuer.NotAfter) overrides the profile.
//   - ARI: the directory has renewalInfo. Pebble's window is centred on
//     two thirds of the lifetime ±24h and clamped to the validity, so for
//     lifetimes up to 36 h it is the whole lifetime: an ARI client
//     (certmagic by default) may pick a renewal time right after
//     issuance. Answers carry Retry-After: 21600 (6 h). Orders may name the
//     certificate they replace ("replaces"); Pebble logs
//     `ARI: order "NEW" is a replacement of "OLD"` and NewOrders shows it.
//   - ARI after Restart: the new Pebble knows neither the old certificates
//     nor their issuer, so a new-order that "replaces" one of them is
//     refused (malformed: "parsing ARI CertID failed"); no order is
//     created. certmagic v0.25.6 leaves "replaces" out only on its third
//     attempt (ACMEIssuer.doIssue: attempts != 2), which its retry
//     intervals (1 min, 2 min) put minutes away: a test that renews across
//     a restart needs ARI off (certmagic's DisableARI) or that patience.
//   - Authorization reuse: PEBBLE_AUTHZREUSE=0 still reuses a valid
//     authorization one time in a hundred (an off-by-one in Pebble), so a
//     renewal is almost always, not always, validated again.
//   - Retry-After: none by default here (Pebble's sample config uses 3 s
//     for authorizations and 5 s for orders); see Options.
//   - The ACME URLs are Pebble's own (/order-plz, /my-order/, ...), on
//     purpose different from Boulder's; clients must follow the directory.
package acmetest
