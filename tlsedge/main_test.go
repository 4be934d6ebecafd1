package tlsedge

import (
	"fmt"
	"os"
	"testing"

	"github.com/tlsedge/tlsedge/internal/acmetest"
)

// TestMain removes the Pebble binaries the ACME tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if err := acmetest.Cleanup(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}
