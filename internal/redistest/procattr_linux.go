package redistest

import "syscall"

// sysProcAttr makes the kernel kill redis-server when the test binary dies
// without running its cleanups (a -timeout panic, a SIGKILL), so no server
// outlives the test run. Pdeathsig fires when the thread that started the
// child exits; the Go runtime does not retire threads of goroutines that
// are not locked to one, so in practice that is the process exiting.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
