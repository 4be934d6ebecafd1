package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http/httputil"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// Idle timeout: rather than read deadlines, a per-connection timer checks a
// flag that the copy loops set on every read. Deadlines would have to be
// refreshed while bytes move (a syscall-free but timer-heap update per
// refresh, so throttled), the silent direction's deadline must not fire
// while the other direction is busy (so expiry needs a cross-check and a
// re-arm), a throttled refresh can close a connection up to the throttle
// interval early, and a timed-out write leaves a tls.Conn unusable. The
// flag costs one atomic load per read (a store only when it flips); the
// timer runs no goroutine between checks and fires idleChecks times per
// IdleTimeout, whatever the traffic.
type tcpTunnel struct {
	client, backend net.Conn
	bufs            httputil.BufferPool // for a splice that could not get a pipe
	pipeSize        int                 // see TCPProxy.pipeSize
	moved           atomic.Bool         // a read returned bytes since the last check
	silent          atomic.Int32        // checks in a row that found moved unset
	over            atomic.Bool         // Serve is finishing: the timer must not re-arm
	ending          atomic.Pointer[tcpEnding]
	timer           *time.Timer
	tick            time.Duration
}

// tcpEnding is the first reason recorded for ending the connection.
type tcpEnding struct {
	end TCPEnd
	err error
}

var endDone = &tcpEnding{end: TCPEndDone}

// tunnel copies both ways until both directions are done, then closes
// both connections and fills in res.
func (p *TCPProxy) tunnel(ctx context.Context, client, backend net.Conn, res *TCPResult) {
	t := &tcpTunnel{client: client, backend: backend, bufs: p.bufs, pipeSize: p.pipeSize}
	if p.idle > 0 {
		t.tick = (p.idle + idleChecks - 1) / idleChecks // idleChecks ticks cover idle
		// Armed far away and only then reset: the runtime orders a
		// timer's Reset before its callback, so check sees t.timer set.
		t.timer = time.AfterFunc(math.MaxInt64, t.check)
		t.timer.Reset(t.tick)
	}
	stopCtx := context.AfterFunc(ctx, func() { t.stop(&tcpEnding{end: TCPEndCanceled}) })

	var toClient, toBackend func() int64
	if cs, bs, ok := spliceSides(client, backend, p.splice); ok {
		// Plain TCP on both sides: the kernel moves the bytes
		// (tcp_splice_linux.go).
		res.spliced = true
		toClient = func() int64 { return t.splice(cs, bs, TCPEndBackendError, TCPEndClientError) }
		toBackend = func() int64 { return t.splice(bs, cs, TCPEndClientError, TCPEndBackendError) }
	} else {
		up, down := p.bufs.Get(), p.bufs.Get()
		defer p.bufs.Put(up)
		defer p.bufs.Put(down)
		toClient = func() int64 { return t.pipe(client, backend, down, TCPEndBackendError, TCPEndClientError) }
		toBackend = func() int64 { return t.pipe(backend, client, up, TCPEndClientError, TCPEndBackendError) }
	}
	sent := make(chan int64, 1)
	go func() {
		// Owned by this call, which waits for it below; it ends when the
		// backend finishes sending or stop closes the connections.
		defer func() {
			if v := recover(); v != nil {
				p.log.WithField("panic", v).Error("tcp proxy: copy to client panicked\n" + string(debug.Stack()))
				t.stop(&tcpEnding{end: TCPEndBackendError, err: fmt.Errorf("panic: %v", v)})
				sent <- 0
			}
		}()
		sent <- toClient()
	}()
	res.Received = toBackend()
	res.Sent = <-sent

	stopCtx()
	t.over.Store(true)
	if t.timer != nil {
		t.timer.Stop()
	}
	t.stop(endDone) // closes both if nothing else did
	e := t.ending.Load()
	res.End, res.Err = e.end, e.err
}

// stop records why the connection ends, if nothing did before, and closes
// both sides, which ends both copies. Closing a *tls.Conn with a write in
// flight does not wait for it (crypto/tls interlocks Close and Write).
func (t *tcpTunnel) stop(e *tcpEnding) {
	if t.ending.CompareAndSwap(nil, e) {
		// The backend first: a TLS close sends close_notify, which may
		// wait up to 5 s on a client that stopped reading.
		_ = t.backend.Close()
		_ = t.client.Close()
	}
}

// markMoved notes that a read returned bytes. The load first keeps the
// cache line shared while bytes flow: only a flip writes.
func (t *tcpTunnel) markMoved() {
	if !t.moved.Load() {
		t.moved.Store(true)
	}
}

// check is the idle timer's callback; see tcpTunnel.
func (t *tcpTunnel) check() {
	if t.over.Load() {
		return
	}
	if t.moved.Swap(false) {
		t.silent.Store(0)
	} else if t.silent.Add(1) >= idleChecks {
		t.stop(&tcpEnding{end: TCPEndIdle})
		return
	}
	t.timer.Reset(t.tick)
}

// pipe copies src to dst until src is done, then half-closes dst. It
// returns the bytes written to dst. A read error is blamed on src's side,
// a write error on dst's.
func (t *tcpTunnel) pipe(dst, src net.Conn, buf []byte, srcErr, dstErr TCPEnd) int64 {
	h := tcpHalf{t: t, src: src, dst: dst}
	n, err := io.CopyBuffer((*tcpHalfWriter)(&h), &h, buf)
	if err != nil {
		end := dstErr
		if err == h.readErr {
			end = srcErr
		}
		t.stop(&tcpEnding{end: end, err: err})
		return n
	}
	if err := closeWrite(dst); errors.Is(err, errors.ErrUnsupported) {
		// The peer cannot be told "no more data" short of closing: src is
		// done, so end the connection as the pre-half-close proxies did.
		t.stop(endDone)
	}
	// Other errors (the peer already reset) surface in the other
	// direction's copy.
	return n
}

// tcpHalf is one direction of a tunnel. Its Read and tcpHalfWriter's
// Write are the only methods, so io.CopyBuffer uses the pooled buffer
// rather than a WriterTo or ReaderFrom (net.TCPConn's ReadFrom would
// allocate a buffer of its own for a *tls.Conn source).
type tcpHalf struct {
	t        *tcpTunnel
	src, dst net.Conn
	readErr  error // the last error of src other than io.EOF
}

func (h *tcpHalf) Read(p []byte) (int, error) {
	n, err := h.src.Read(p)
	if n > 0 {
		h.t.markMoved()
	}
	if err != nil && err != io.EOF {
		h.readErr = err
	}
	return n, err
}

type tcpHalfWriter tcpHalf

func (w *tcpHalfWriter) Write(p []byte) (int, error) { return w.dst.Write(p) }

// closeWriter is implemented by *net.TCPConn, *net.UnixConn and
// *tls.Conn.
type closeWriter interface{ CloseWrite() error }

var (
	_ closeWriter = (*net.TCPConn)(nil)
	_ closeWriter = (*tls.Conn)(nil)
)

// closeWrite tells c's peer that no more data is coming. For TLS that is a
// close_notify alert and then, when the underlying connection allows, a
// TCP FIN, so a peer that waits for the end of the TCP stream sees it too.
// It returns errors.ErrUnsupported when c has no way to half-close.
func closeWrite(c net.Conn) error {
	if tc, ok := c.(*tls.Conn); ok {
		if err := tc.CloseWrite(); err != nil {
			return err
		}
		if cw, ok := tc.NetConn().(closeWriter); ok {
			return cw.CloseWrite()
		}
		return nil
	}
	if cw, ok := c.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
