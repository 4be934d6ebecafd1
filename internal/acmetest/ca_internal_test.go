package acmetest

import (
	"errors"
	"net"
	"strings"
	"testing"
)

// TestLaunchPortTaken: when Pebble loses its port to another process, launch
// reports errExited, which is what makes Start retry with fresh ports.
func TestLaunchPortTaken(t *testing.T) {
	c, err := newCA(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", c.addrs.pebble)
	if err != nil {
		t.Fatalf("take Pebble's port: %v", err)
	}
	defer ln.Close()

	err = c.launch()
	if terr := c.teardown(); terr != nil {
		t.Errorf("teardown: %v", terr)
	}
	if !errors.Is(err, errExited) {
		t.Fatalf("launch with Pebble's port taken: %v, want errExited", err)
	}
	if !strings.Contains(c.Log(), "address already in use") {
		t.Errorf("Pebble's log does not say why it exited:\n%s", c.Log())
	}
}
