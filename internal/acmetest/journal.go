package acmetest

import (
	"bytes"
	"context"
	"strings"
	"sync"
)

// Order is one new-order request that Pebble accepted (201 Created), as the
// recording proxy saw Pebble's answer. Pebble's log names orders but not
// their identifiers, hence the proxy.
type Order struct {
	ID       string   // Pebble's order ID, as in its "Added order" log line
	Names    []string // identifier values as Pebble stored them: DNS names lowercased, deduplicated and sorted, then IPs
	Profile  string   // the profile Pebble applied (it picks one when the client names none)
	Replaces string   // ARI certificate ID the order replaces, "" if none
}

// journal is what one CA has done, across restarts: Pebble's output as
// lines, the events parsed from them and the orders the proxy recorded.
// It is safe for concurrent use; the writers are the goroutines of os/exec
// copying the child's stdout and stderr, and the proxy's handlers.
type journal struct {
	mu      sync.Mutex
	log     bytes.Buffer
	orders  []string // IDs from "Added order" lines
	issued  []string // serials from "Issued certificate serial" lines
	created []Order  // from the proxy
	changed chan struct{}
}

func newJournal() *journal {
	return &journal{changed: make(chan struct{})}
}

// notifyLocked wakes every wait. Callers hold j.mu.
func (j *journal) notifyLocked() {
	close(j.changed)
	j.changed = make(chan struct{})
}

// addLine appends one complete line of Pebble output and records the
// events it reports.
func (j *journal) addLine(line string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.log.WriteString(line)
	j.log.WriteByte('\n')
	switch ev := parseLine(line); ev.kind {
	case eventOrder:
		j.orders = append(j.orders, ev.order)
	case eventIssued:
		j.issued = append(j.issued, ev.serial)
	default:
		return
	}
	j.notifyLocked()
}

func (j *journal) addOrder(o Order) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.created = append(j.created, o)
	j.notifyLocked()
}

// wait blocks until cond, evaluated under j.mu, holds or ctx ends.
func (j *journal) wait(ctx context.Context, cond func(*journal) bool) bool {
	for {
		j.mu.Lock()
		ok, ch := cond(j), j.changed
		j.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// snapshot runs read under j.mu; read must copy what it returns.
func snapshot[T any](j *journal, read func(*journal) T) T {
	j.mu.Lock()
	defer j.mu.Unlock()
	return read(j)
}

type eventKind int

const (
	eventNone   eventKind = iota
	eventOrder            // Added order "ID" to the db
	eventIssued           // Issued certificate serial SERIAL for order ID
)

type event struct {
	kind   eventKind
	order  string
	serial string
}

// The strings below are Pebble v2.10.3's log formats:
//
//	wfe/wfe.go NewOrder:      "Added order %q to the db\n"
//	ca/ca.go   CompleteOrder: "Issued certificate serial %s for order %s\n"
//
// behind the logger prefix "Pebble 2006/01/02 15:04:05 ". The serial is
// hex.EncodeToString of the serial number's bytes (see Serial). A Pebble
// upgrade that rewords them breaks the harness's tests, not silently the
// callers'.
const (
	orderPrefix  = `Added order "`
	orderSuffix  = `" to the db`
	issuedPrefix = "Issued certificate serial "
	issuedMiddle = " for order "
)

// parseLine recognizes the lines the journal counts. Order IDs are Pebble
// tokens (base64url), so %q quoting leaves them unchanged.
func parseLine(line string) event {
	if _, rest, ok := strings.Cut(line, orderPrefix); ok {
		if id, tail, ok := strings.Cut(rest, orderSuffix); ok && id != "" && tail == "" {
			return event{kind: eventOrder, order: id}
		}
		return event{}
	}
	if _, rest, ok := strings.Cut(line, issuedPrefix); ok {
		serial, order, ok := strings.Cut(rest, issuedMiddle)
		if ok && serial != "" && isLowerHex(serial) && order != "" && !strings.ContainsAny(order, " \t") {
			return event{kind: eventIssued, serial: serial, order: order}
		}
	}
	return event{}
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// lineWriter turns one output stream of a child into whole lines for the
// journal. os/exec copies each stream in its own goroutine and a read can
// end mid-line, so lines are assembled per stream before they meet.
type lineWriter struct {
	partial []byte // only touched by the stream's copying goroutine and, after it ended, by flush
	emit    func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.partial = append(w.partial, p...)
			return n, nil
		}
		line := p[:i]
		if len(w.partial) > 0 {
			line = append(w.partial, line...)
			w.partial = w.partial[:0]
		}
		w.emit(strings.TrimSuffix(string(line), "\r"))
		p = p[i+1:]
	}
}

// flush emits an unterminated last line, such as a panic cut short by a
// kill. Call it only after the child's Wait returned.
func (w *lineWriter) flush() {
	if len(w.partial) > 0 {
		w.emit(string(w.partial))
		w.partial = nil
	}
}
