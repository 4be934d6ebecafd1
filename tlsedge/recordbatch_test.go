package tlsedge

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"sync/atomic"
	"testing"

	"github.com/tlsedge/tlsedge/internal/testpki"
)

// writeCounter counts the writes that reach the socket.
type writeCounter struct {
	net.Conn
	writes atomic.Int64
}

func (w *writeCounter) Write(p []byte) (int, error) {
	w.writes.Add(1)
	return w.Conn.Write(p)
}

// A 1 MiB response written in 64 KiB pieces inside batches leaves in one
// socket write per piece (4 TLS records), and arrives intact; the same
// writes without batches take one socket write per record.
func TestRecordBatchGathersRecords(t *testing.T) {
	ca := testpki.NewCA(t, "batch")
	leaf := ca.Server(t, "batch.test")
	body := make([]byte, 1<<20)
	rand.Read(body) //nolint:errcheck // never fails

	run := func(batch bool) int64 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		got := make(chan []byte, 1)
		go func() {
			c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "batch.test"})
			if err != nil {
				got <- nil
				return
			}
			defer c.Close()
			b, _ := io.ReadAll(c)
			got <- b
		}()
		raw, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		wc := &writeCounter{Conn: raw}
		cc := &clientConn{Conn: wc}
		tc := tls.Server(cc, &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, DynamicRecordSizingDisabled: true})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		before := wc.writes.Load()
		for p := body; len(p) > 0; p = p[64<<10:] {
			if batch {
				cc.startBatch()
			}
			if _, err := tc.Write(p[:64<<10]); err != nil {
				t.Fatal(err)
			}
			if batch {
				if err := cc.endBatch(); err != nil {
					t.Fatal(err)
				}
			}
		}
		writes := wc.writes.Load() - before
		tc.Close()
		if b := <-got; !bytes.Equal(b, body) {
			t.Fatalf("batch=%v: the client read %d bytes, not the 1 MiB written", batch, len(b))
		}
		return writes
	}
	plain, gathered := run(false), run(true)
	t.Logf("1 MiB in 64 KiB writes: %d socket writes without batches, %d with", plain, gathered)
	if gathered != 16 {
		t.Errorf("with batches: %d socket writes, want 16 (one per 64 KiB)", gathered)
	}
	if plain < 64 {
		t.Errorf("without batches: %d socket writes, want one per 16 KiB record (64)", plain)
	}
}
