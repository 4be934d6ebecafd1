package certs

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"golang.org/x/crypto/acme/autocert"
)

// ImportAction is what ImportAutocert did with one cache entry.
type ImportAction int

const (
	// AutocertImported: the certificate was written to certmagic storage.
	AutocertImported ImportAction = iota + 1
	// AutocertKeptExisting: storage already holds a certificate for the
	// domain that expires no earlier, so it was left alone. A second import
	// of the same cache reports this for everything the first one imported.
	AutocertKeptExisting
	// AutocertSkipped: the entry is not a certificate certmagic should
	// serve (account key, challenge token, expired, unparsable, ...).
	AutocertSkipped
)

func (a ImportAction) String() string {
	switch a {
	case AutocertImported:
		return "imported"
	case AutocertKeptExisting:
		return "kept-existing"
	case AutocertSkipped:
		return "skipped"
	}
	return fmt.Sprintf("ImportAction(%d)", int(a))
}

// ImportEntry describes one file of the autocert cache directory.
type ImportEntry struct {
	Name     string    // cache key = file name, e.g. "shop.example.com+rsa"
	Serial   string    // leaf serial number in hex; "" if the entry did not parse
	NotAfter time.Time // leaf expiry; zero if the entry did not parse
	IssuerCN string    // common name of the leaf's issuer
	Action   ImportAction
	Reason   string // why it was skipped or kept; for imports, what it replaced
}

// ImportReport lists every file of the cache directory, in name order.
type ImportReport struct {
	Dir       string
	IssuerKey string
	Entries   []ImportEntry
}

// Lines returns one log line per entry, e.g.
// "imported shop.example.com serial 0a1b expires 2027-01-02 issuer "R3" from /var/cache/autocert".
func (r ImportReport) Lines() []string {
	lines := make([]string, 0, len(r.Entries))
	for _, e := range r.Entries {
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s", e.Action, e.Name)
		if e.Serial != "" {
			fmt.Fprintf(&b, " serial %s expires %s", e.Serial, e.NotAfter.UTC().Format(time.DateOnly))
		}
		if e.IssuerCN != "" {
			fmt.Fprintf(&b, " issuer %q", e.IssuerCN)
		}
		fmt.Fprintf(&b, " from %s", r.Dir)
		if e.Reason != "" {
			fmt.Fprintf(&b, ": %s", e.Reason)
		}
		lines = append(lines, b.String())
	}
	return lines
}

func (r ImportReport) String() string { return strings.Join(r.Lines(), "\n") }

// Count returns how many entries got action a.
func (r ImportReport) Count(a ImportAction) int {
	n := 0
	for _, e := range r.Entries {
		if e.Action == a {
			n++
		}
	}
	return n
}

// autocertCert is a cache entry that autocert itself would serve.
type autocertCert struct {
	entry  int    // index into ImportReport.Entries
	domain string // the entry name without "+rsa"
	isRSA  bool
	key    crypto.Signer
	chain  []*x509.Certificate // leaf first
}

// ImportAutocert copies the certificates of an autocert.DirCache directory
// into certmagic storage, under issuerKey (an Issuer's IssuerKey(), e.g.
// ACMEIssuer for "https://acme.example/dir" has "acme.example-dir"), so that
// a certmagic Config with that issuer serves them instead of ordering new
// ones. now decides what has expired; the zero value means time.Now().
//
// Every file is read through autocert.DirCache.Get and checked the way
// autocert's Manager checks what it loads. The account key and challenge
// entries are skipped: certmagic registers its own ACME account. When a
// domain has a usable ECDSA entry and a "+rsa" entry, only the ECDSA one is
// imported, as certmagic keeps one certificate per name. A certificate is
// not written over one in storage that expires no earlier.
//
// A bad entry is reported in the ImportReport and never stops the others.
// The error is non-nil when dir cannot be listed, ctx ends, or storage
// fails for some domain; the report then still lists what was done.
func ImportAutocert(ctx context.Context, dir string, store certmagic.Storage, issuerKey string, now time.Time) (ImportReport, error) {
	report := ImportReport{Dir: dir, IssuerKey: issuerKey}
	if store == nil || issuerKey == "" {
		return report, fmt.Errorf("certs: import autocert cache %s: storage and issuer key are required", dir)
	}
	if now.IsZero() {
		now = time.Now()
	}
	files, err := os.ReadDir(dir)
	if err != nil {
		return report, fmt.Errorf("certs: import autocert cache: list directory %s: %w", dir, err)
	}
	cache := autocert.DirCache(dir)
	best := make(map[string]*autocertCert) // by domain: what will be imported
	var order []string                     // domains of best, in name order
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return report, fmt.Errorf("certs: import autocert cache %s: %w", dir, err)
		}
		report.Entries = append(report.Entries, ImportEntry{Name: f.Name(), Action: AutocertSkipped})
		e := &report.Entries[len(report.Entries)-1]
		c, err := readAutocertEntry(ctx, cache, f, now)
		if c != nil && len(c.chain) > 0 {
			leaf := c.chain[0]
			e.Serial = hex.EncodeToString(leaf.SerialNumber.Bytes())
			e.NotAfter = leaf.NotAfter
			e.IssuerCN = leaf.Issuer.CommonName
		}
		if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
			return report, fmt.Errorf("certs: import autocert cache %s: read %s: %w", dir, f.Name(), err)
		}
		if err != nil {
			e.Reason = err.Error()
			continue
		}
		c.entry = len(report.Entries) - 1
		// certmagic serves one certificate per name. ECDSA wins, as with
		// autocert for any client that supports it; ReadDir sorts "a"
		// before "a+rsa", but "A+rsa" before "a", hence the swap.
		prev, dup := best[c.domain]
		switch {
		case !dup:
			best[c.domain] = c
			order = append(order, c.domain)
		case prev.isRSA && !c.isRSA:
			report.Entries[prev.entry].Reason = preferredReason(f.Name())
			best[c.domain] = c
		default:
			e.Reason = preferredReason(report.Entries[prev.entry].Name)
		}
	}

	var errs []error
	for _, domain := range order {
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("certs: import autocert cache %s: %w", dir, err))
			break
		}
		c := best[domain]
		e := &report.Entries[c.entry]
		action, reason, err := storeAutocertCert(ctx, store, issuerKey, c)
		if err != nil {
			e.Reason = err.Error()
			errs = append(errs, fmt.Errorf("certs: import %s from %s: %w", e.Name, dir, err))
			continue
		}
		e.Action, e.Reason = action, reason
	}
	return report, errors.Join(errs...)
}

func preferredReason(winner string) string {
	return fmt.Sprintf("%s is preferred for this domain (ECDSA first; certmagic serves one certificate per name)", winner)
}

// readAutocertEntry reads one file through autocert's own DirCache and
// returns the certificate when autocert would serve it. The error is the
// reason to skip it; a certificate that parsed but failed a check is
// returned with the error, so the report can still show its serial.
func readAutocertEntry(ctx context.Context, cache autocert.DirCache, f fs.DirEntry, now time.Time) (*autocertCert, error) {
	name := f.Name()
	domain, isRSA, err := autocertDomain(name)
	if err != nil {
		return nil, err
	}
	if f.IsDir() {
		return nil, errors.New("a directory, not a cache entry")
	}
	if info, err := f.Info(); err == nil && info.Size() > maxPEMSize {
		return nil, fmt.Errorf("%d bytes, larger than any certificate (%d)", info.Size(), maxPEMSize)
	}
	data, err := cache.Get(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	key, chain, err := parseAutocertEntry(data)
	if err != nil {
		return nil, err
	}
	c := &autocertCert{domain: domain, isRSA: isRSA, key: key, chain: chain}
	return c, checkAutocertCert(c, now)
}

// autocertDomain maps a cache key to the domain it holds a certificate for.
// The key names come from autocert.go: certKey.String() gives "domain",
// "domain+rsa" and "domain+token" (a tls-alpn-01 challenge certificate);
// httpTokenCacheKey gives "token+http-01"; accountKey uses
// "acme_account+key" (formerly "acme_account.key"). A '+' never occurs in
// a domain, so any other suffix is something newer autocert versions store.
func autocertDomain(name string) (domain string, isRSA bool, err error) {
	if name == "acme_account+key" || name == "acme_account.key" {
		return "", false, errors.New("ACME account key; certmagic registers its own account")
	}
	base, kind, _ := strings.Cut(name, "+")
	switch kind {
	case "", "rsa":
	case "token":
		return "", false, errors.New("tls-alpn-01 challenge certificate (transient)")
	case "http-01":
		return "", false, errors.New("http-01 challenge token (transient)")
	default:
		return "", false, fmt.Errorf("not a certificate entry (kind %q)", kind)
	}
	domain, err = parseHostPattern(base)
	if err != nil || strings.HasPrefix(domain, "*") {
		// autocert obtains no wildcards: '*' is not even allowed in a key.
		return "", false, fmt.Errorf("name is not a host name: %q", base)
	}
	return domain, kind == "rsa", nil
}

// parseAutocertEntry parses a certificate entry in the format of
// Manager.cachePut (autocert.go): one PEM private key ("EC PRIVATE KEY"
// or "RSA PRIVATE KEY"; Manager.cacheGet accepts any "...PRIVATE..." type
// in PKCS#1, PKCS#8 or SEC 1), then the chain as CERTIFICATE blocks, leaf
// first. Like cacheGet, anything after the last block is an error, except
// white space, which an editor may have added.
func parseAutocertEntry(data []byte) (crypto.Signer, []*x509.Certificate, error) {
	block, rest := pem.Decode(data)
	if block == nil || !strings.Contains(block.Type, "PRIVATE") {
		return nil, nil, errors.New("does not start with a PEM private key")
	}
	key, err := parseAutocertKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("private key (%s): %w", block.Type, err)
	}
	var chain []*x509.Certificate
	for {
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, nil, fmt.Errorf("PEM block %d after the key is %q, want CERTIFICATE", len(chain)+1, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("certificate %d: %w", len(chain)+1, err)
		}
		chain = append(chain, cert)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, nil, fmt.Errorf("%d bytes after the last PEM block", len(rest))
	}
	if len(chain) == 0 {
		return nil, nil, errors.New("no certificate after the private key")
	}
	return key, chain, nil
}

// parseAutocertKey accepts the key encodings autocert's parsePrivateKey
// does, and no others: an Ed25519 key in PKCS#8 is refused there too.
func parseAutocertKey(der []byte) (crypto.Signer, error) {
	if key, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return key, nil
	}
	if key, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		switch key := key.(type) {
		case *rsa.PrivateKey:
			return key, nil
		case *ecdsa.PrivateKey:
			return key, nil
		}
		return nil, fmt.Errorf("unsupported %T in PKCS#8", key)
	}
	if key, err := x509.ParseECPrivateKey(der); err == nil {
		return key, nil
	}
	return nil, errors.New("neither PKCS#1, PKCS#8 nor SEC 1")
}

// checkAutocertCert applies autocert's validCert checks (validity period,
// name, key match, key type matching the "+rsa" suffix) and one of
// certmagic's own: certmagic files a certificate it maintains under the
// first of its names (Certificate.Names[0], built by fillCertFromLeaf in
// certificates.go: the lower-cased common name, else the first SAN) and
// renews that name, so a certificate whose first name is not the domain
// would be looked up, renewed and re-filed under another name.
func checkAutocertCert(c *autocertCert, now time.Time) error {
	leaf := c.chain[0]
	if now.Before(leaf.NotBefore) {
		return fmt.Errorf("not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(leaf.NotAfter) {
		return fmt.Errorf("expired %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	names := certNames(leaf)
	found := false
	for _, n := range names {
		found = found || n == c.domain
	}
	if !found {
		return fmt.Errorf("leaf names %v do not include %s", names, c.domain)
	}
	if first := certmagicFirstName(leaf); first != c.domain {
		return fmt.Errorf("certmagic would maintain this certificate as %q (its first name), not %s", first, c.domain)
	}
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(c.key.Public()) {
		return errors.New("private key does not match the leaf certificate")
	}
	if _, isRSA := c.key.(*rsa.PrivateKey); isRSA != c.isRSA {
		return fmt.Errorf("%T in an entry for the other key type; autocert would not serve it", c.key)
	}
	return nil
}

// certmagicFirstName is Certificate.Names[0] as certmagic computes it.
func certmagicFirstName(leaf *x509.Certificate) string {
	switch {
	case leaf.Subject.CommonName != "":
		return strings.ToLower(leaf.Subject.CommonName)
	case len(leaf.DNSNames) > 0:
		return strings.ToLower(leaf.DNSNames[0])
	case len(leaf.IPAddresses) > 0:
		return leaf.IPAddresses[0].String()
	}
	return ""
}

// certmagicAsset is one storage key and the bytes to write there.
type certmagicAsset struct {
	key   string
	value []byte
}

// storeAutocertCert writes c the way certmagic's saveCertResource
// (crypto.go) writes a certificate it obtained: the private key, the chain
// and the metadata under StorageKeys for the domain, because that is where
// loadCertResource reads them. It keeps a certificate already in storage
// that expires no earlier, so that importing twice, or after certmagic has
// renewed, never goes back to an older certificate.
func storeAutocertCert(ctx context.Context, store certmagic.Storage, issuerKey string, c *autocertCert) (action ImportAction, reason string, err error) {
	// certmagic's own lock for obtaining or renewing this name
	// (Config.lockKey(certIssueLockOp, name), config.go): holding it keeps
	// a running instance from storing a certificate between our check and
	// our write.
	lock := "issue_cert_" + c.domain
	if err := store.Lock(ctx, lock); err != nil {
		return 0, "", fmt.Errorf("lock %s: %w", lock, err)
	}
	defer func() {
		if uerr := store.Unlock(context.WithoutCancel(ctx), lock); uerr != nil {
			err = errors.Join(err, fmt.Errorf("unlock %s: %w", lock, uerr))
		}
	}()

	assets, err := certmagicAssets(issuerKey, c)
	if err != nil {
		return 0, "", err
	}
	var old [len(assets)][]byte // nil where storage has nothing
	for i, a := range assets {
		b, err := store.Load(ctx, a.key)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, "", fmt.Errorf("load %s: %w", a.key, err)
		}
		old[i] = b
	}
	switch existing, perr := storedLeaf(old[1]); {
	case old[0] == nil && old[1] == nil && old[2] == nil:
	case old[0] == nil || old[1] == nil || old[2] == nil:
		// certmagic loads none of it then, and would order a new one.
		reason = "replaced an incomplete certificate in storage (certmagic needs .key, .crt and .json)"
	case perr != nil:
		reason = fmt.Sprintf("replaced an unparsable certificate in storage (%v)", perr)
	case !existing.NotAfter.Before(c.chain[0].NotAfter):
		return AutocertKeptExisting, fmt.Sprintf("storage already holds serial %s expiring %s",
			hex.EncodeToString(existing.SerialNumber.Bytes()), existing.NotAfter.UTC().Format(time.DateOnly)), nil
	default:
		reason = fmt.Sprintf("replaced serial %s expiring %s",
			hex.EncodeToString(existing.SerialNumber.Bytes()), existing.NotAfter.UTC().Format(time.DateOnly))
	}

	for i, a := range assets {
		if err := store.Store(ctx, a.key, a.value); err != nil {
			// Put back what was there: a new key beside an old chain
			// would make certmagic refuse both. (certmagic's storeTx
			// deletes instead, which would lose a working certificate.)
			return 0, "", errors.Join(fmt.Errorf("store %s: %w", a.key, err), restoreCertmagicAssets(ctx, store, assets[:i], old[:i]))
		}
	}
	return AutocertImported, reason, nil
}

// certmagicAssets encodes c as certmagic stores what it obtains: the key
// with certmagic.PEMEncodePrivateKey (SEC 1 "EC PRIVATE KEY" or PKCS#1
// "RSA PRIVATE KEY", which both tls.X509KeyPair, used to load it, and
// PEMDecodePrivateKey, used to reuse it, read), the chain as CERTIFICATE
// blocks leaf first, and a CertificateResource as JSON (SANs and
// issuer_data; the PEM fields are not part of it).
func certmagicAssets(issuerKey string, c *autocertCert) ([3]certmagicAsset, error) {
	keyPEM, err := certmagic.PEMEncodePrivateKey(c.key)
	if err != nil {
		return [3]certmagicAsset{}, fmt.Errorf("encode %T: %w", c.key, err)
	}
	var chainPEM bytes.Buffer
	for _, cert := range c.chain {
		chainPEM.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
	}
	// SANs is the one name certmagic would have ordered for this domain.
	// issuer_data is an empty ACME certificate record rather than absent:
	// certmagic unmarshals it when it stores renewal info (ARI) it fetched,
	// and fails on no JSON at all. It names no "ca" on purpose: with the
	// CA of the renewing issuer there, certmagic asks the CA to mark the
	// renewal as replacing this certificate, which the CA may refuse
	// because another ACME account (autocert's) ordered it.
	meta, err := json.MarshalIndent(certmagic.CertificateResource{
		SANs:       []string{c.domain},
		IssuerData: json.RawMessage("{}"),
	}, "", "\t")
	if err != nil {
		return [3]certmagicAsset{}, fmt.Errorf("encode metadata: %w", err)
	}
	k := certmagic.StorageKeys
	return [3]certmagicAsset{ // the order of saveCertResource; [1] must stay the chain
		{k.SitePrivateKey(issuerKey, c.domain), keyPEM},
		{k.SiteCert(issuerKey, c.domain), chainPEM.Bytes()},
		{k.SiteMeta(issuerKey, c.domain), meta},
	}, nil
}

// restoreCertmagicAssets undoes the writes of a failed import.
func restoreCertmagicAssets(ctx context.Context, store certmagic.Storage, written []certmagicAsset, old [][]byte) error {
	ctx = context.WithoutCancel(ctx)
	var errs []error
	for i, a := range written {
		var err error
		if old[i] == nil {
			err = store.Delete(ctx, a.key)
		} else {
			err = store.Store(ctx, a.key, old[i])
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", a.key, err))
		}
	}
	return errors.Join(errs...)
}

// storedLeaf parses the first certificate of a PEM chain.
func storedLeaf(chainPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(chainPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}
