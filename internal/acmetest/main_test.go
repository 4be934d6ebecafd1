package acmetest_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/tlsedge/tlsedge/internal/acmetest"
)

// TestMain removes the Pebble binaries this test process built.
func TestMain(m *testing.M) {
	code := m.Run()
	if err := acmetest.Cleanup(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
