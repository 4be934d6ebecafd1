package tlsedge

import (
	"fmt"
	"os"
	"testing"

	"github.com/tlsedge/tlsedge/internal/acmetest"
)

// TestMain removes the Pebble binaries the ACME tests built. Started with
// TLSEDGE_TEST_BACKEND set, the test binary is a backend process instead
// (see procbackend_test.go): failover tests kill and restart real
// processes.
func TestMain(m *testing.M) {
	if addr := os.Getenv(backendProcEnv); addr != "" {
		os.Exit(runBackendProcess(addr))
	}
	if addr := os.Getenv(idleClientEnv); addr != "" {
		os.Exit(runIdleClient(addr))
	}
	code := m.Run()
	if err := acmetest.Cleanup(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}
