//go:build !linux

package tlsedge

import "crypto/tls"

// idlePoller: idle connections park on Linux only (h1park_linux.go);
// elsewhere they wait in their serving goroutine.
type idlePoller struct{}

func newIdlePoller(wake, expire func(*h1Link)) (*idlePoller, error) { return nil, nil }

func canPark(*tls.Conn) bool { return false }

func (p *idlePoller) park(*h1Link) bool { return false }

func (p *idlePoller) shutdown() {}
