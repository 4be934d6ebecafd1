package acmetest

import (
	"fmt"
	"net"
	"syscall"
	"testing"
)

// Pause stops the Pebble process (SIGSTOP) and closes the ACME port, so
// clients get connection refused as from a CA that is down, while Pebble
// keeps its state: accounts, orders and issued certificates are all there
// after Resume. This is a CA outage; Stop and Restart are a CA reset.
func (c *CA) Pause(t testing.TB) {
	t.Helper()
	c.life.Lock()
	defer c.life.Unlock()
	if c.pebble == nil || c.proxy == nil {
		t.Fatal("acmetest: Pause: Pebble is not running")
	}
	c.proxy.close()
	c.proxy = nil
	if err := c.pebble.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("acmetest: Pause: %v", err)
	}
	c.apiTLS.CloseIdleConnections()
}

// Resume continues a paused Pebble (SIGCONT) and opens the ACME port again
// on the same address.
func (c *CA) Resume(t testing.TB) {
	t.Helper()
	c.life.Lock()
	defer c.life.Unlock()
	if c.pebble == nil || c.proxy != nil {
		t.Fatal("acmetest: Resume: Pebble is not paused")
	}
	if err := c.pebble.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatalf("acmetest: Resume: %v", err)
	}
	ln, err := net.Listen("tcp", c.addrs.public)
	if err != nil {
		t.Fatalf("acmetest: Resume: %v", fmt.Errorf("rebind the ACME port: %w", err))
	}
	c.proxy = startProxy(ln, c.addrs.pebble, c.apiTLS, c.api.cert, c.journal, c.aux)
}
