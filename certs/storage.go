package certs

import (
	"context"
	"os"
	"path/filepath"

	"github.com/caddyserver/certmagic"

	"github.com/tlsedge/tlsedge/certs/redisstore"
)

// OpenStorage opens where ACME certificates, accounts and locks live: files
// under stateDir/acme when spec is empty, else the Redis that spec names.
// It returns the storage and a description for logs (password hidden).
//
// A storage that exists but does not work right now — an unwritable state
// dir, a Redis that does not answer — is returned together with a
// *DegradedError: the caller logs it and serves what it can, and
// certmagic's retries succeed once the storage works. A bad URL is an
// error and no storage.
func OpenStorage(ctx context.Context, spec, stateDir string) (certmagic.Storage, string, error) {
	if spec == "" {
		dir := filepath.Join(stateDir, "acme")
		st := &certmagic.FileStorage{Path: dir}
		if err := checkWritable(dir); err != nil {
			return st, dir, &DegradedError{Storage: dir, Err: err}
		}
		return st, dir, nil
	}
	st, err := redisstore.New(ctx, spec, redisstore.Options{Unreachable: true})
	if st == nil {
		return nil, "", err
	}
	// A local mirror under the state dir: an instance that has run before
	// serves its certificates while Redis does not answer (mirror.go).
	m := &mirrorStorage{shared: st, local: &certmagic.FileStorage{Path: filepath.Join(stateDir, "acme-mirror")}}
	if err != nil {
		return m, m.String(), &DegradedError{Storage: st.String(), Mirror: m.local.Path, Err: err}
	}
	return m, m.String(), nil
}

// ReadStorage opens the storage OpenStorage would, for reading only: it
// creates nothing and does not check that it can write.
func ReadStorage(ctx context.Context, spec, stateDir string) (certmagic.Storage, string, error) {
	if spec == "" {
		dir := filepath.Join(stateDir, "acme")
		return &certmagic.FileStorage{Path: dir}, dir, nil
	}
	st, err := redisstore.New(ctx, spec, redisstore.Options{})
	if err != nil {
		return nil, "", err
	}
	return st, st.String(), nil
}

// DegradedError says a storage was opened but does not work yet.
type DegradedError struct {
	Storage string
	// Mirror is the local copy of a shared storage, "" for none.
	Mirror string
	Err    error
}

func (e *DegradedError) Error() string {
	if e.Mirror != "" {
		return "ACME storage " + e.Storage + " does not work (" + e.Err.Error() + "): certificates are served from the local mirror " +
			e.Mirror + " where it has them (none if this instance never ran with this storage); nothing is ordered or renewed until it works; retrying with backoff"
	}
	return "ACME storage " + e.Storage + " does not work (" + e.Err.Error() + "): ACME certificates can be neither loaded nor ordered until it does; retrying with backoff"
}

func (e *DegradedError) Unwrap() error { return e.Err }

// checkWritable creates dir if needed and writes and removes a file in it.
func checkWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tlsedge-write-check-*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
