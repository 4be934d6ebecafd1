package logsink

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"time"
)

// fileBuffer is how many bytes the file transport gathers before a write:
// lines are written when the buffer fills or the queue runs empty, so a
// busy log costs one write(2) per 32 KiB, an idle one a write per line.
const fileBuffer = 32 << 10

// fileT appends lines to a file. The writer goroutine owns f and buf; mu
// only lets interrupt close f from another goroutine.
type fileT struct {
	path    string
	buf     []byte
	pending int // lines in buf

	mu          sync.Mutex
	f           *os.File
	interrupted bool
}

var _ transport = (*fileT)(nil)

func openFile(path string) (*fileT, error) {
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &fileT{path: path, f: f, buf: make([]byte, 0, fileBuffer)}, nil
}

// openAppend opens path the way log files are opened: appending, created
// if missing, readable by the group (adm, on Debian) and not by others.
func openAppend(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
}

func (t *fileT) stamped() bool              { return false }
func (t *fileT) retryAt() (time.Time, bool) { return time.Time{}, false }

func (t *fileT) write(l *line) error {
	t.buf = append(append(t.buf, l.b...), '\n')
	t.pending++
	if len(t.buf) < fileBuffer {
		return nil
	}
	err := t.flush()
	if be, ok := err.(*batchError); ok {
		be.Lines-- // l is counted by the caller
	}
	return err
}

func (t *fileT) flush() error {
	if len(t.buf) == 0 {
		return nil
	}
	_, err := t.f.Write(t.buf)
	n := t.pending
	t.buf, t.pending = t.buf[:0], 0
	if err != nil {
		return &batchError{Lines: n, Err: fmt.Errorf("logsink: write %s: %w", t.path, err)}
	}
	return nil
}

// reopen opens the path afresh before closing the old file, so a failed
// open (a full disk, a missing directory) leaves the log where it was.
func (t *fileT) reopen() error {
	nf, err := openAppend(t.path)
	if err != nil {
		return fmt.Errorf("logsink: reopen %s: %w", t.path, err)
	}
	t.mu.Lock()
	if t.interrupted {
		t.mu.Unlock()
		nf.Close()
		return ErrClosed
	}
	old := t.f
	t.f = nf
	t.mu.Unlock()
	old.Close() //nolint:errcheck // everything was written before the swap
	return nil
}

// interrupt closes the file: a write blocked on a FIFO or a stalled
// network file system returns (os.File's poller unblocks it).
func (t *fileT) interrupt() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.interrupted {
		t.interrupted = true
		t.f.Close() //nolint:errcheck // unblocking is all that is wanted
	}
}

func (t *fileT) close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.interrupted {
		return nil
	}
	t.interrupted = true
	if err := t.f.Close(); err != nil {
		return fmt.Errorf("logsink: close %s: %w", t.path, err)
	}
	return nil
}

// ReopenOnSignal reopens sinks each time the process receives sig (SIGUSR1
// for logrotate's postrotate), until ctx ends. The signal is registered
// before ReopenOnSignal returns, so one sent afterwards is never missed
// (nor does it kill the process); the goroutine it starts is owned by ctx.
// Reopen errors go to each sink's Options.OnError.
func ReopenOnSignal(ctx context.Context, sig os.Signal, sinks ...Sink) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sig)
	go func() {
		defer signal.Stop(ch)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				for _, s := range sinks {
					s.Reopen() //nolint:errcheck // reported through Options.OnError
				}
			}
		}
	}()
}
