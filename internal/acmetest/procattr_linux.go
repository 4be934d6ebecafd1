package acmetest

import "syscall"

// sysProcAttr makes the kernel SIGKILL Pebble and pebble-challtestsrv when
// the test binary dies without running its cleanups (a -timeout panic, a
// SIGKILL), so no CA outlives the run holding its ports. Pdeathsig fires
// when the thread that started the child exits; the Go runtime retires
// only threads whose goroutine exits while locked to them, so in practice
// that is the test process exiting.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
