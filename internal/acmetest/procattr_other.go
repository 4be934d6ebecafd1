//go:build !linux

package acmetest

import "syscall"

// sysProcAttr has nothing to add off Linux: without Pdeathsig, a test
// binary killed before its cleanups run leaves its Pebble behind.
func sysProcAttr() *syscall.SysProcAttr { return nil }
