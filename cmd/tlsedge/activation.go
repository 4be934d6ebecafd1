package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
)

// systemd socket activation: a tlsedge.socket unit binds the ports (as
// root, or before tlsedge exists) and passes them as file descriptors 3,
// 4, ... with LISTEN_PID and LISTEN_FDS (sd_listen_fds(3)). A configured
// listen address takes the passed socket bound to the same port (and the
// same IP, or any IP); addresses without one are bound as usual. Passed
// sockets are handed on to a new binary at an upgrade like the others.

// activated holds the sockets systemd passed, until they are taken.
type activated struct {
	mu  sync.Mutex
	lns []net.Listener
}

// systemdSockets takes the sockets systemd passed to this process.
func systemdSockets() (*activated, error) {
	a := &activated{}
	pid, _ := strconv.Atoi(os.Getenv("LISTEN_PID"))
	n, _ := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if pid != os.Getpid() || n <= 0 {
		return a, nil
	}
	// Not for our children (a binary upgrade passes sockets its own way).
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	for fd := 3; fd < 3+n; fd++ {
		syscall.CloseOnExec(fd)
		f := os.NewFile(uintptr(fd), "systemd-socket-"+strconv.Itoa(fd))
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("socket activation: descriptor %d: %w", fd, err)
		}
		a.lns = append(a.lns, ln)
	}
	return a, nil
}

// take returns the passed socket for a configured address, or nil.
func (a *activated) take(addr string) net.Listener {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, ln := range a.lns {
		ta, ok := ln.Addr().(*net.TCPAddr)
		if !ok || strconv.Itoa(ta.Port) != port {
			continue
		}
		if ip := net.ParseIP(host); host == "" || ip != nil && (ip.IsUnspecified() || ip.Equal(ta.IP)) || ta.IP.IsUnspecified() {
			a.lns = append(a.lns[:i], a.lns[i+1:]...)
			return ln
		}
	}
	return nil
}

// unused are the passed sockets no configured address took.
func (a *activated) unused() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, ln := range a.lns {
		out = append(out, ln.Addr().String())
	}
	return out
}
