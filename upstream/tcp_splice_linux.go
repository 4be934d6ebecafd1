//go:build linux

package upstream

import (
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Splicing: each direction has a pipe of its own. A splice moves what the
// source socket has into the pipe, then splices drain the pipe into the
// destination socket until it is empty, so the pipe is empty whenever the
// source is read: EAGAIN from the source then means "no data" and from
// the destination "send buffer full", and the RawConn callbacks return
// false on it to have Go's poller wait, as for any read or write. The
// sockets are non-blocking (Go made them so); SPLICE_F_NONBLOCK makes the
// pipe ends so too. The pipe is closed when its direction ends.
//
// Pipe size, measured with BenchmarkTCPTunnel (proxy CPU per GiB on
// loopback, ranges over several runs; copying through 32 KiB buffers:
// 470-590 ms): 8 KiB pipes 980-1160 ms, 64 KiB (the kernel's default)
// 340-420, 256 KiB 250-310, 1 MiB 215-300. A pipe starts at the default and grows to
// TCPProxy.pipeSize (256 KiB) once a splice fills half of it: bulk
// transfers get the big pipe, the many quiet tunnels keep the small one.
// That matters because pipes count against the user's
// fs.pipe-user-pages-soft (64 MiB by default: 512 tunnels of two default
// pipes) whatever they hold; beyond it an unprivileged user's new pipes
// get 8 KiB and cannot grow, which splices slower than copying, so such a
// pipe is given up and the direction copies. A spliced tunnel also holds
// four more descriptors.

const spliceSupported = true

// splicePipeSize is what a pipe grows to once full; see above.
const splicePipeSize = 256 << 10

// minSplicePipe is the smallest pipe worth splicing through.
const minSplicePipe = 64 << 10

const spliceFlags = unix.SPLICE_F_NONBLOCK | unix.SPLICE_F_MOVE

// maxSplice is what a splice from a socket asks for: more than any pipe
// holds, so the pipe's room is the limit.
const maxSplice = 4 << 20

// splice moves src's bytes to dst (src.ahead first) until src is done,
// then half-closes dst: tcpTunnel.pipe without the copy, with the same
// count, idle marks and blame.
func (t *tcpTunnel) splice(dst, src spliceSide, srcErr, dstErr TCPEnd) int64 {
	var n int64
	if len(src.ahead) > 0 {
		t.markMoved() // read from src, by its wrapper
		m, err := dst.conn.Write(src.ahead)
		n = int64(m)
		if err != nil {
			t.stop(&tcpEnding{end: dstErr, err: err})
			return n
		}
	}
	p, err := newSplicePipe(t.pipeSize)
	if err != nil {
		// Out of descriptors, or a pipe too small (see above): copying
		// needs neither.
		buf := t.bufs.Get()
		defer t.bufs.Put(buf)
		return n + t.pipe(dst.conn, src.conn, buf, srcErr, dstErr)
	}
	defer p.close()
	m, fromSrc, err := p.run(t, dst.conn, src.conn)
	n += m
	if err != nil {
		end := dstErr
		if fromSrc {
			end = srcErr
		}
		t.stop(&tcpEnding{end: end, err: err})
		return n
	}
	// An error here (the peer already reset) surfaces in the other
	// direction, as in pipe.
	_ = dst.conn.CloseWrite()
	return n
}

// splicePipe is one direction's pipe and the results of its RawConn
// callbacks, which are method values made once so that a splice
// allocates nothing.
type splicePipe struct {
	r, w        int   // the pipe's read and write ends
	size        int   // its capacity
	grow        int   // the capacity to take once full; 0: no more
	inPipe      int   // bytes in the pipe
	n           int   // what the last splice moved
	err         error // and its error
	fill, drain func(fd uintptr) bool
}

// newSplicePipe returns a pipe of at least minSplicePipe that grows to
// grow bytes once full, or an error if there is none.
func newSplicePipe(grow int) (*splicePipe, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, os.NewSyscallError("pipe2", err)
	}
	p := &splicePipe{r: fds[0], w: fds[1], grow: grow}
	size, err := unix.FcntlInt(uintptr(p.w), unix.F_GETPIPE_SZ, 0)
	if err == nil && size < minSplicePipe {
		// A pipe made past pipe-user-pages-soft; this is refused (EPERM)
		// unless the process is privileged.
		size, err = unix.FcntlInt(uintptr(p.w), unix.F_SETPIPE_SZ, minSplicePipe)
	}
	if err != nil {
		p.close()
		return nil, os.NewSyscallError("fcntl", err)
	}
	p.size = size
	p.fill, p.drain = p.fillFrom, p.drainTo
	return p, nil
}

// resize grows the empty pipe to p.grow, once; where the kernel refuses
// (above fs.pipe-max-size, or past pipe-user-pages-soft) it keeps its
// size and works.
func (p *splicePipe) resize() {
	if size, err := unix.FcntlInt(uintptr(p.w), unix.F_SETPIPE_SZ, p.grow); err == nil {
		p.size = size
	}
	p.grow = 0
}

func (p *splicePipe) close() {
	_ = unix.Close(p.r)
	_ = unix.Close(p.w)
}

// fillFrom splices what socket fd has into the empty pipe.
func (p *splicePipe) fillFrom(fd uintptr) bool {
	var n int64
	for {
		n, p.err = unix.Splice(int(fd), nil, p.w, nil, maxSplice, spliceFlags)
		if p.err != unix.EINTR {
			break
		}
	}
	p.n = int(n)
	return p.err != unix.EAGAIN
}

// drainTo splices what the pipe holds into socket fd, as much as its send
// buffer takes.
func (p *splicePipe) drainTo(fd uintptr) bool {
	var n int64
	for {
		n, p.err = unix.Splice(p.r, nil, int(fd), nil, p.inPipe, spliceFlags)
		if p.err != unix.EINTR {
			break
		}
	}
	p.n = int(n)
	if p.n == 0 && p.err == nil {
		p.err = io.ErrNoProgress // a pipe with bytes always gives some
	}
	return p.err != unix.EAGAIN
}

// run moves src's bytes to dst through the pipe until src's EOF (err nil)
// or an error, src's if fromSrc. It returns the bytes written to dst.
func (p *splicePipe) run(t *tcpTunnel, dst, src *net.TCPConn) (written int64, fromSrc bool, err error) {
	srcRaw, err := src.SyscallConn()
	if err != nil {
		return 0, true, err
	}
	dstRaw, err := dst.SyscallConn()
	if err != nil {
		return 0, false, err
	}
	for {
		// An error of Read itself is a closed connection (stop) or a
		// deadline.
		if err := srcRaw.Read(p.fill); err != nil {
			return written, true, err
		}
		if p.err != nil {
			return written, true, spliceError("read", src, p.err)
		}
		if p.n == 0 {
			return written, false, nil
		}
		t.markMoved()
		p.inPipe = p.n
		// Half counts as full: a pipe holds size/4096 buffers of up to a
		// page each, and fills up short of size when pages are partial.
		full := p.n >= p.size/2
		for p.inPipe > 0 {
			if err := dstRaw.Write(p.drain); err != nil {
				return written, false, err
			}
			if p.err != nil {
				return written, false, spliceError("write", dst, p.err)
			}
			p.inPipe -= p.n
			written += int64(p.n)
		}
		if full && p.grow > p.size {
			p.resize()
		}
	}
}

// spliceError is what net would return for the same failure of a read or
// write on c, with splice as the system call.
func spliceError(op string, c *net.TCPConn, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("splice", err)}
}
