package certs

import (
	"crypto/tls"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// DefaultPollInterval is how often Static.Run looks at the files when
// StaticConfig.PollInterval is zero.
const DefaultPollInterval = 2 * time.Second

// Pair names a certificate chain file and its private key file.
type Pair struct {
	CertFile string // PEM: the leaf first, then intermediates
	KeyFile  string // PEM private key; "" means CertFile holds the key too
}

func (p Pair) describe() string {
	if p.KeyFile == "" {
		return p.CertFile
	}
	return p.CertFile + " + " + p.KeyFile
}

// StaticConfig configures NewStatic. The zero value of every field means its
// default. NewStatic copies what it needs; the caller may reuse the struct.
type StaticConfig struct {
	// Pairs are loaded in order. When two certificates claim one name, the
	// first one wins, so Pairs win over Dir.
	Pairs []Pair

	// Dir is a folder of certificates: every *.crt or *.pem file with a
	// name.key beside it, or a .pem holding both the chain and the key.
	// Files are taken in name order; a certificate with no key is skipped
	// with a warning (it may be a CA bundle). New pairs are picked up by
	// Run; a pair whose certificate file is deleted stops being served.
	Dir string

	// PollInterval is how often Run checks the files; default
	// DefaultPollInterval.
	PollInterval time.Duration

	// Log receives reloads and warnings; default logrus.StandardLogger().
	Log *logrus.Entry
}

func (c *StaticConfig) pollInterval() time.Duration {
	if c.PollInterval <= 0 {
		return DefaultPollInterval
	}
	return c.PollInterval
}

func (c *StaticConfig) log() *logrus.Entry {
	if c.Log == nil {
		return logrus.NewEntry(logrus.StandardLogger())
	}
	return c.Log
}

// Static serves certificates loaded from files, selected by SNI. Lookups
// read one immutable index through an atomic pointer; Run swaps in a new
// index when a file changes, so handshakes never wait on a lock and a
// connection keeps the certificate it was established with.
type Static struct {
	log      *logrus.Entry
	interval time.Duration
	dir      string
	index    atomic.Pointer[staticIndex]

	// pollMu serializes poll (Run, or tests calling poll directly). It is
	// never taken by a handshake. Everything below belongs to poll.
	pollMu  sync.Mutex
	pairs   []*watchedPair          // Pairs, then Dir pairs in discovery order
	tracked map[string]*watchedPair // by CertFile
	pending map[string]*pendingFile // Dir files that are not served pairs
}

var (
	_ Source    = (*Static)(nil)
	_ Defaulter = (*Static)(nil)
	_ Describer = (*Static)(nil)
)

// staticIndex is immutable once stored.
type staticIndex struct {
	byName map[string]*staticEntry // exact names and "*.example.com" patterns
	first  *staticEntry            // the default certificate
	names  []string                // sorted keys of byName
}

type staticEntry struct {
	cert *tls.Certificate
	file string
}

// NewStatic loads every configured certificate. Any pair that cannot be read
// or parsed is an error naming its file, and so is having no certificate at
// all: a gateway that starts without the certificates it was given would
// fail every handshake for them.
func NewStatic(cfg StaticConfig) (*Static, error) {
	s := &Static{
		log:      cfg.log(),
		interval: cfg.pollInterval(),
		dir:      cfg.Dir,
		tracked:  make(map[string]*watchedPair),
		pending:  make(map[string]*pendingFile),
	}
	now := time.Now()
	for _, p := range cfg.Pairs {
		if p.CertFile == "" {
			return nil, fmt.Errorf("certs: pair with key %q has no certificate file", p.KeyFile)
		}
		if _, dup := s.tracked[p.CertFile]; dup {
			return nil, fmt.Errorf("certs: certificate file %s listed twice", p.CertFile)
		}
		if err := s.add(p, false, now); err != nil {
			return nil, err
		}
	}
	if s.dir != "" {
		if _, err := s.scanDir(now, true); err != nil {
			return nil, err
		}
	}
	if len(s.pairs) == 0 {
		return nil, fmt.Errorf("certs: static: no certificate in Pairs or in folder %q: %w", s.dir, ErrNoCertificate)
	}
	s.index.Store(buildIndex(s.pairs))
	return s, nil
}

// add loads a new pair and starts watching it.
func (s *Static) add(p Pair, fromDir bool, now time.Time) error {
	w := &watchedPair{pair: p, fromDir: fromDir}
	cs, ks, statErr := stampPair(p)
	cert, content, err := loadPair(p)
	if err == nil {
		err = statErr
	}
	if err != nil {
		return fmt.Errorf("certs: load %s: %w", p.CertFile, err)
	}
	w.cert, w.sum, w.certStamp, w.keyStamp, w.readAt = cert, content.sum(), cs, ks, now
	s.pairs = append(s.pairs, w)
	s.tracked[p.CertFile] = w
	s.log.WithFields(logrus.Fields{
		"file":      p.describe(),
		"names":     certNames(cert.Leaf),
		"not_after": cert.Leaf.NotAfter,
	}).Info("certificate loaded")
	return nil
}

// buildIndex indexes the current certificate of every pair; the first pair
// to claim a name keeps it.
func buildIndex(pairs []*watchedPair) *staticIndex {
	idx := &staticIndex{byName: make(map[string]*staticEntry)}
	for _, w := range pairs {
		if w.cert == nil {
			continue
		}
		e := &staticEntry{cert: w.cert, file: w.pair.CertFile}
		if idx.first == nil {
			idx.first = e
		}
		for _, name := range certNames(w.cert.Leaf) {
			if _, taken := idx.byName[name]; !taken {
				idx.byName[name] = e
				idx.names = append(idx.names, name)
			}
		}
	}
	slices.Sort(idx.names)
	return idx
}

// find looks a normalized key up: the exact name, then the one-label
// wildcard that covers it.
func (idx *staticIndex) find(key string) *staticEntry {
	if key == "" {
		return nil
	}
	if e := idx.byName[key]; e != nil {
		return e
	}
	if pattern, _ := wildcardKey(key); pattern != "" {
		return idx.byName[pattern]
	}
	return nil
}

// Lookup implements Source: the certificate for the handshake's server name
// (or dialed IP when there is no SNI), or nil when no file names it.
func (s *Static) Lookup(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if e := s.index.Load().find(helloName(hello)); e != nil {
		return e.cert, nil
	}
	return nil, nil
}

// Default implements Defaulter: the first certificate loaded.
func (s *Static) Default() (*tls.Certificate, error) {
	if e := s.index.Load().first; e != nil {
		return e.cert, nil
	}
	return nil, nil
}

// Describe implements Describer: "file PATH" for a host served from a file,
// "" otherwise. host may be a pattern such as "*.example.com".
func (s *Static) Describe(host string) string {
	if e := s.index.Load().find(normalizeName(host)); e != nil {
		return "file " + e.file
	}
	return ""
}

// Names returns, sorted, every name and wildcard pattern currently served.
func (s *Static) Names() []string {
	return slices.Clone(s.index.Load().names)
}
