package tlsedge

import (
	"net"
	"sync"
	"sync/atomic"
)

// crypto/tls seals at most 16 KiB of plaintext per record and hands every
// record to the connection below it with a write(2) of its own: a 1 MiB
// response leaves in 64 system calls, each of which, on loopback and on
// fast links alike, also pays for a TCP segment's trip through the stack.
// HAProxy and nginx write several records at once. recordBatch gathers
// the records of one large response write (h1Writer.Write) and sends them
// in one write(2): 4 records, 64 KiB of body, per system call.
//
// The gathering is switched on and off by the goroutine serving the
// connection, around one tls.Conn.Write. crypto/tls writes records only
// under its output lock, so the only other writer is an alert (Close's
// close_notify) from another goroutine: under mu it lands after the
// gathered records, as it would have on the wire.
type recordBatch struct {
	on  atomic.Bool // read without mu on every write: the common case is off
	mu  sync.Mutex
	buf *[]byte // from batchPool while on
}

// batchCap holds four full TLS 1.3 records (16 KiB of plaintext, the
// content type byte, a 16-byte tag and the 5-byte header each).
const batchCap = 4 * (16<<10 + 1 + 16 + 5)

// batchMin is the smallest body write worth gathering: two records.
const batchMin = 16<<10 + 1

var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, batchCap); return &b }}

// Write is the tls.Conn's write to the network: gathered while a batch is
// on, straight through otherwise.
func (c *clientConn) Write(p []byte) (int, error) {
	b := &c.batch
	if !b.on.Load() {
		return c.Conn.Write(p)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf == nil { // ended between the load and the lock
		return c.Conn.Write(p)
	}
	buf := *b.buf
	if len(buf)+len(p) > cap(buf) {
		if err := b.flushLocked(c.Conn); err != nil {
			return 0, err
		}
		buf = *b.buf
		if len(p) > cap(buf) {
			return c.Conn.Write(p)
		}
	}
	*b.buf = append(buf, p...)
	return len(p), nil
}

// startBatch gathers the writes that follow, until endBatch.
func (c *clientConn) startBatch() {
	b := &c.batch
	b.mu.Lock()
	b.buf = batchPool.Get().(*[]byte)
	b.on.Store(true)
	b.mu.Unlock()
}

// endBatch sends what was gathered and stops gathering. Its error is the
// write's: the client is gone.
func (c *clientConn) endBatch() error {
	b := &c.batch
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.flushLocked(c.Conn)
	b.on.Store(false)
	batchPool.Put(b.buf)
	b.buf = nil
	return err
}

func (b *recordBatch) flushLocked(nc net.Conn) error {
	buf := *b.buf
	*b.buf = buf[:0]
	if len(buf) == 0 {
		return nil
	}
	_, err := nc.Write(buf)
	return err
}

// batcher is what h1Writer needs of the connection under the tls.Conn;
// nil when it is not a clientConn (tests' plain listeners).
type batcher interface {
	startBatch()
	endBatch() error
}

var _ batcher = (*clientConn)(nil)
