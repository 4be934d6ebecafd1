package httpsyntax

import (
	"net/http"
	"net/textproto"
)

// RawFields carries a response head's field lines from the proxy to the
// server's writer as the backend sent them: validated, with the lines the
// proxy does not forward marked, and the fields the layers in between add
// kept aside. On the common path (an HTTP/1.1 client, a response with a
// length) the head is written out again without ever becoming an
// http.Header: building that map, walking it in the filters and walking it
// again to write it was the largest part of the proxy's own work per
// request. Any layer that asks for the writer's Header gets the map, built
// from these fields at that moment, so code that knows nothing of
// RawFields sees what it always saw.
type RawFields struct {
	block []byte // the head's field lines, each ending in CRLF; aliases the backend's read buffer
	lines []rawLine
	drop  uint64 // bit i: line i is not forwarded
	add   []addedField
	// Length is the body's length as the lines declare it.
	Length int64
}

type rawLine struct{ start, colon, end int32 } // end: before the CRLF

type addedField struct {
	name   string
	values []string
}

// MaxRawLines is the most field lines RawFields holds; a longer head goes
// through the http.Header path.
const MaxRawLines = 64

// Reset starts over with a head's field block; the block must stay
// unchanged until the head is written.
func (f *RawFields) Reset(block []byte, length int64) {
	f.block, f.lines, f.drop, f.add, f.Length = block, f.lines[:0], 0, f.add[:0], length
}

// Release lets go of what the fields refer to (the block, added
// values), keeping the room for the next head's.
func (f *RawFields) Release() {
	clear(f.add)
	f.block, f.lines, f.add = nil, f.lines[:0], f.add[:0]
}

// Own copies the block into buf and keeps the copy, for a writer that
// sends the head after the backend's buffer has moved on; it returns the
// copy for reuse.
func (f *RawFields) Own(buf []byte) []byte {
	buf = append(buf[:0], f.block...)
	f.block = buf
	return buf
}

// AddLine records a field line of the block: its name is
// block[start:colon], its value what follows the colon up to end (the
// CRLF excluded), with optional whitespace trimmed. It reports false when
// the head has more than MaxRawLines lines.
func (f *RawFields) AddLine(start, colon, end int) bool {
	if len(f.lines) == MaxRawLines {
		return false
	}
	f.lines = append(f.lines, rawLine{int32(start), int32(colon), int32(end)})
	return true
}

// Len is the number of field lines, dropped ones included.
func (f *RawFields) Len() int { return len(f.lines) }

// Name is line i's field name, as the backend spelled it.
func (f *RawFields) Name(i int) []byte {
	l := f.lines[i]
	return f.block[l.start:l.colon]
}

// Value is line i's field value without surrounding whitespace.
func (f *RawFields) Value(i int) []byte {
	l := f.lines[i]
	return TrimOWS(f.block[l.colon+1 : l.end])
}

// Drop leaves line i out of the head.
func (f *RawFields) Drop(i int) { f.drop |= 1 << i }

// Kept reports whether line i is still to be forwarded.
func (f *RawFields) Kept(i int) bool { return f.drop&(1<<i) == 0 }

// DropAdded removes the added fields named name, in any letter case.
func (f *RawFields) DropAdded(name string) {
	kept := f.add[:0]
	for _, a := range f.add {
		if !EqualFieldName(a.name, name) {
			kept = append(kept, a)
		}
	}
	clear(f.add[len(kept):])
	f.add = kept
}

// Has reports whether a kept line or an added field is named name.
func (f *RawFields) Has(name string) bool {
	for i := range f.lines {
		if f.Kept(i) && EqualFieldName(f.Name(i), name) {
			return true
		}
	}
	for _, a := range f.add {
		if EqualFieldName(a.name, name) && len(a.values) > 0 {
			return true
		}
	}
	return false
}

// Add adds values under name after the lines. The slice is kept, not
// copied: callers hand over slices nobody writes to again.
func (f *RawFields) Add(name string, values []string) {
	f.add = append(f.add, addedField{name, values})
}

// NumAdded is the number of Add calls still in effect; Added is the i-th.
func (f *RawFields) NumAdded() int { return len(f.add) }

// Added returns the name and values of the i-th added field.
func (f *RawFields) Added(i int) (string, []string) { return f.add[i].name, f.add[i].values }

// CopyTo adds the kept lines, then the added fields, to h under canonical
// keys: the http.Header the fields stand for.
func (f *RawFields) CopyTo(h http.Header) {
	for i := range f.lines {
		if !f.Kept(i) {
			continue
		}
		k := textproto.CanonicalMIMEHeaderKey(string(f.Name(i)))
		h[k] = append(h[k], string(f.Value(i)))
	}
	for _, a := range f.add {
		k := textproto.CanonicalMIMEHeaderKey(a.name)
		h[k] = append(h[k], a.values...)
	}
}

// AppendTo writes the head's field lines to b: the kept lines as the
// backend sent them (runs of consecutive lines in one copy), then the
// added fields, leaving out any whose name is not a token or whose value
// could split the head.
func (f *RawFields) AppendTo(b []byte) []byte {
	for i := 0; i < len(f.lines); {
		if !f.Kept(i) {
			i++
			continue
		}
		j := i + 1
		for j < len(f.lines) && f.Kept(j) {
			j++
		}
		b = append(b, f.block[f.lines[i].start:f.lines[j-1].end+2]...)
		i = j
	}
	for _, a := range f.add {
		if !IsToken(a.name) {
			continue
		}
		for _, v := range a.values {
			if ValidFieldValue(v) {
				b = append(b, a.name...)
				b = append(b, ": "...)
				b = append(b, v...)
				b = append(b, "\r\n"...)
			}
		}
	}
	return b
}

// EqualFieldName reports whether the field name n equals name in ASCII
// letter case folding (strings.EqualFold also folds Unicode).
func EqualFieldName[T ~string | ~[]byte](n T, name string) bool {
	if len(n) != len(name) {
		return false
	}
	for i := 0; i < len(n); i++ {
		a, b := n[i], name[i]
		if a == b {
			continue
		}
		if a|0x20 != b|0x20 || a|0x20 < 'a' || a|0x20 > 'z' {
			return false
		}
	}
	return true
}

// RawFieldsWriter is an http.ResponseWriter that can take a response's
// field lines unparsed. The server's HTTP/1.1 writer does; each wrapper
// that passes them through unchanged, or applies its own changes to them,
// says so by implementing this too. A wrapper that does not hides the
// writers beneath it, and the fields go through its Header as before.
type RawFieldsWriter interface {
	// RawFields with take returns empty fields for the caller to fill,
	// which the writer's WriteHeader will send, or nil when it cannot
	// take them (its Header holds fields already, or the head is sent).
	// Without take it returns the filled fields not yet sent, or nil.
	// Calling Header turns the fields into map entries and ends them.
	RawFields(take bool) *RawFields
}

// RawFieldsOf is w's RawFields(take), nil when w is no RawFieldsWriter.
func RawFieldsOf(w http.ResponseWriter, take bool) *RawFields {
	if rw, ok := w.(RawFieldsWriter); ok {
		return rw.RawFields(take)
	}
	return nil
}
