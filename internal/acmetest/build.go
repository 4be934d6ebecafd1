package acmetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

// The packages built, at the versions the tool directives of go.mod pin.
const (
	pebblePkg   = "github.com/letsencrypt/pebble/v2/cmd/pebble"
	challSrvPkg = "github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv"
)

// buildTimeout bounds `go build`. A warm build cache links both binaries in
// about a second; a cold one compiles Pebble's dependencies first.
const buildTimeout = 5 * time.Minute

// bins is the one piece of package state: the binaries are built once per
// test process and shared by every CA in it. Only the sync.Once writes it.
var bins struct {
	once sync.Once
	dir  string // holds pebble and pebble-challtestsrv
	err  error
}

// errCleanedUp is returned by Start after Cleanup removed the binaries.
var errCleanedUp = errors.New("acmetest.Cleanup already ran in this process")

// binaries returns the directory holding the two binaries, building them on
// first use.
func binaries() (string, error) {
	bins.once.Do(func() { bins.dir, bins.err = build() })
	return bins.dir, bins.err
}

// Cleanup removes the binaries built by this process. Call it from TestMain
// after m.Run; without it they stay in os.TempDir under
// "tlsedge-acmetest-pebble-*" (about 25 MB per test process). Start fails
// once Cleanup has run.
func Cleanup() error {
	bins.once.Do(func() { bins.err = errCleanedUp })
	if bins.dir == "" {
		return nil
	}
	dir := bins.dir
	// bins is written only inside once.Do; a second Cleanup removes
	// nothing, which RemoveAll reports as success.
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("acmetest: remove %s: %w", dir, err)
	}
	return nil
}

// build runs `go build` in the main module's root, so the versions are the
// ones go.mod and go.sum pin (not @latest, not the network), and returns
// the output directory.
func build() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()

	// `go test` puts its own GOROOT/bin first in PATH, so "go" is the
	// toolchain running the tests.
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := string(bytes.TrimSpace(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside a module")
	}

	dir, err := os.MkdirTemp("", "tlsedge-acmetest-pebble-")
	if err != nil {
		return "", fmt.Errorf("create binary dir: %w", err)
	}
	// The trailing separator makes -o a directory for both packages.
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator), pebblePkg, challSrvPkg)
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("go build %s %s in %s: %w\n%s", pebblePkg, challSrvPkg, cmd.Dir, err, out)
	}
	return dir, nil
}
