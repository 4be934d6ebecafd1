//go:build !linux

package main

import "syscall"

// sysProcAttr has nothing to add off Linux: without Pdeathsig, a run killed
// before it stops its servers leaves them behind.
func sysProcAttr() *syscall.SysProcAttr { return nil }
