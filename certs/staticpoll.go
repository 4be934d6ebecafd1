package certs

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// racyWindow is the coarsest modification-time granularity we expect (FAT
// keeps 2 s). A file read less than racyWindow after its mtime can be
// rewritten with the same size inside the same mtime tick, leaving its stamp
// unchanged, so such a file is re-read until its stamp has aged (git's
// "racy clean" rule). Stable files cost one stat per poll.
const racyWindow = 2 * time.Second

// fileStamp is what a stat tells us about a file.
type fileStamp struct {
	modTime time.Time
	size    int64
}

func (a fileStamp) same(b fileStamp) bool {
	return a.size == b.size && a.modTime.Equal(b.modTime)
}

// racy reports whether a file with this stamp may have changed since readAt
// without its stamp changing.
func (a fileStamp) racy(readAt time.Time) bool {
	return !a.modTime.Before(readAt.Add(-racyWindow))
}

func (a fileStamp) String() string {
	return fmt.Sprintf("%d@%d", a.size, a.modTime.UnixNano())
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

func stampPair(p Pair) (cert, key fileStamp, err error) {
	if cert, err = stampOf(p.CertFile); err != nil || p.KeyFile == "" {
		return cert, cert, err
	}
	key, err = stampOf(p.KeyFile)
	return cert, key, err
}

// problem tracks a broken state so that it is logged once, and only once it
// has been seen on two polls in a row: tools write the certificate and the
// key one after the other, and the moment in between (new certificate, old
// key) is not worth a warning.
type problem struct {
	key    string // what was seen: reason plus content fingerprint
	seen   int
	warned bool
}

// observe records a broken state and reports whether to log it now.
func (p *problem) observe(key string) bool {
	if key != p.key {
		*p = problem{key: key}
	}
	p.seen++
	if p.seen >= 2 && !p.warned {
		p.warned = true
		return true
	}
	return false
}

// watchedPair is a loaded pair and what we last saw on disk.
type watchedPair struct {
	pair                Pair
	fromDir             bool
	cert                *tls.Certificate // served; a broken rewrite keeps it
	sum                 [sha256.Size]byte
	certStamp, keyStamp fileStamp
	readAt              time.Time
	bad                 problem
}

// pendingFile is a Dir file that is not (yet) a served pair.
type pendingFile struct {
	stamp, keyStamp fileStamp
	hasKeyFile      bool
	readAt          time.Time
	quiet           bool // not a certificate at all (a key file): never warned
	bad             problem
}

// Run checks the files every PollInterval until ctx is done. A changed file
// is re-read; a good new certificate is used for new handshakes, a broken
// one is logged once and the previous certificate keeps serving.
func (s *Static) Run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.pollRecover()
		}
	}
}

// pollRecover keeps the poller alive through a bug in one poll: certificates
// already loaded keep serving either way, and the next poll may succeed.
func (s *Static) pollRecover() {
	defer func() {
		if r := recover(); r != nil {
			s.log.WithFields(logrus.Fields{"panic": r, "stack": string(debug.Stack())}).Error("certificate poll panicked")
		}
	}()
	s.poll(time.Now())
}

// poll runs one check of every file and swaps in a new index on change.
func (s *Static) poll(now time.Time) {
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	changed := false
	kept := s.pairs[:0]
	for _, w := range s.pairs {
		c, removed := s.refresh(w, now)
		if removed {
			delete(s.tracked, w.pair.CertFile)
			s.log.WithField("file", w.pair.CertFile).Info("certificate file removed; no longer served")
			changed = true
			continue
		}
		changed = changed || c
		kept = append(kept, w)
	}
	clear(s.pairs[len(kept):]) // drop references to removed pairs
	s.pairs = kept
	if s.dir != "" {
		if c, _ := s.scanDir(now, false); c {
			changed = true
		}
	}
	if changed {
		s.index.Store(buildIndex(s.pairs))
	}
}

// refresh re-reads a pair when its files may have changed.
func (s *Static) refresh(w *watchedPair, now time.Time) (changed, removed bool) {
	cs, ks, statErr := stampPair(w.pair)
	if w.fromDir && statErr != nil {
		if _, err := os.Stat(w.pair.CertFile); errors.Is(err, fs.ErrNotExist) {
			return false, true
		}
	}
	if statErr == nil && w.bad.seen == 0 &&
		cs.same(w.certStamp) && ks.same(w.keyStamp) &&
		!cs.racy(w.readAt) && !ks.racy(w.readAt) {
		return false, false
	}
	content, err := readPair(w.pair)
	w.readAt = now
	if err != nil {
		s.broken(w, "", err)
		return false, false
	}
	sum := content.sum()
	if sum == w.sum {
		w.certStamp, w.keyStamp, w.bad = cs, ks, problem{}
		return false, false
	}
	cert, err := parsePair(content.certPEM, content.keyPEM)
	if err != nil {
		s.broken(w, hex.EncodeToString(sum[:]), fmt.Errorf("%s: %w", w.pair.describe(), err))
		return false, false
	}
	w.cert, w.sum, w.certStamp, w.keyStamp, w.bad = cert, sum, cs, ks, problem{}
	s.log.WithFields(logrus.Fields{
		"file":      w.pair.describe(),
		"names":     certNames(cert.Leaf),
		"not_after": cert.Leaf.NotAfter,
	}).Info("certificate reloaded")
	return true, false
}

func (s *Static) broken(w *watchedPair, fingerprint string, err error) {
	if w.bad.observe(err.Error() + "\x00" + fingerprint) {
		s.log.WithField("file", w.pair.CertFile).WithError(err).
			Warn("certificate file is broken; still serving the previous certificate")
	}
}

// scanDir adds the pairs of Dir that are not tracked yet. At start any pair
// that fails to load is an error; later it is a warning and is retried when
// its files change.
func (s *Static) scanDir(now time.Time, atStart bool) (changed bool, err error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		if atStart {
			return false, fmt.Errorf("certs: certificate folder: %w", err)
		}
		s.log.WithError(err).Debug("cannot list certificate folder")
		return false, nil
	}
	seen := make(map[string]bool)
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".crt" && ext != ".pem") {
			continue
		}
		path := filepath.Join(s.dir, e.Name())
		if s.tracked[path] != nil {
			continue
		}
		seen[path] = true
		added, err := s.examine(path, strings.TrimSuffix(path, ext)+".key", now, atStart)
		if err != nil {
			return changed, err
		}
		changed = changed || added
	}
	for path := range s.pending {
		if !seen[path] {
			delete(s.pending, path)
		}
	}
	return changed, nil
}

// examine tries to turn one untracked Dir file into a served pair.
func (s *Static) examine(path, keyFile string, now time.Time, atStart bool) (added bool, err error) {
	st, err := stampOf(path)
	if err != nil {
		return false, nil // deleted since ReadDir
	}
	ks, kerr := stampOf(keyFile)
	hasKeyFile := kerr == nil
	p := s.pending[path]
	if p != nil && p.stamp.same(st) && p.keyStamp.same(ks) && p.hasKeyFile == hasKeyFile &&
		!st.racy(p.readAt) && !ks.racy(p.readAt) && (p.quiet || p.bad.warned) {
		return false, nil // nothing new since we last looked
	}
	if p == nil {
		p = &pendingFile{}
		s.pending[path] = p
	}
	p.stamp, p.keyStamp, p.hasKeyFile, p.readAt, p.quiet = st, ks, hasKeyFile, now, false

	pair := Pair{CertFile: path, KeyFile: keyFile}
	var reason error
	if !hasKeyFile {
		pair.KeyFile = ""
		b, err := readPEMFile(path)
		hasCert, hasKey := pemKinds(b)
		switch {
		case err != nil && atStart:
			return false, fmt.Errorf("certs: load %s: %w", path, err)
		case err != nil:
			reason = err
		case !hasCert:
			p.quiet = true // a key or some other PEM: not ours to judge
			return false, nil
		case !hasKey:
			reason = fmt.Errorf("%s: no private key (no %s beside it, no key in the file)", path, filepath.Base(keyFile))
		}
	}
	if reason == nil {
		if reason = s.add(pair, true, now); reason == nil {
			delete(s.pending, path)
			return true, nil
		}
		if atStart {
			return false, reason
		}
	}
	if atStart { // a lone certificate may be a CA bundle: warn, do not fail
		p.bad = problem{warned: true}
		s.log.WithField("file", path).WithError(reason).Warn("skipping certificate file")
		return false, nil
	}
	if p.bad.observe(reason.Error() + "\x00" + st.String() + ks.String()) {
		s.log.WithField("file", path).WithError(reason).Warn("skipping certificate file")
	}
	return false, nil
}

// pemKinds reports whether PEM data holds a certificate and a private key.
func pemKinds(b []byte) (hasCert, hasKey bool) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return hasCert, hasKey
		}
		switch {
		case block.Type == "CERTIFICATE":
			hasCert = true
		case block.Type == "PRIVATE KEY" || strings.HasSuffix(block.Type, " PRIVATE KEY"):
			hasKey = true
		}
	}
}
