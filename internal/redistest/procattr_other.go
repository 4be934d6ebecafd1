//go:build !linux

package redistest

import "syscall"

// sysProcAttr has nothing to add off Linux: without Pdeathsig, a test binary
// killed before its cleanups run leaves its redis-server behind.
func sysProcAttr() *syscall.SysProcAttr { return nil }
