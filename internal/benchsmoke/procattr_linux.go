package main

import "syscall"

// sysProcAttr makes the kernel kill a server we started when this program
// dies without stopping it (a SIGKILL, a panic), so none outlives the run.
// Pdeathsig fires when the thread that started the child exits; the Go
// runtime does not retire threads of goroutines that are not locked to one,
// so in practice that is the process exiting.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
