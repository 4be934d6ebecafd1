package upstream

import (
	"bytes"

	"github.com/tlsedge/tlsedge/httpsyntax"
)

// A response head that came in whole, as nearly every one does, is checked
// in one pass over its bytes: each field line's name, colon, value and CRLF
// in one loop. The line-by-line reader in readResponseHead remains for heads
// split across reads; both apply the same rules (FuzzReadResponseHead
// compares them), and both keep where each line's parts lie
// (respHead.marks), so that fillRaw need not look for them again. Before,
// each line was searched four times over, by calls to IndexByte and
// bytes.Index that cost more than the short lines they searched.

// maxMarks bounds the field lines whose places a head keeps: as many as a
// head sent raw may have.
const maxMarks = httpsyntax.MaxRawLines

// fieldMark is one field line of respHead.block: the line starts where
// the one before ended, plus its CRLF.
type fieldMark struct {
	colon, end int32 // offsets in block; end is at the line's CR
	kind       fieldKind
}

// scanHead checks a head at the start of b and returns its length, or 0
// when b ends before the head does (the caller reads it line by line).
// The status line is parsed as readResponseHead's are; field lines in one
// pass each (scanField).
func (h *respHead) scanHead(b []byte) (int, error) {
	nl := bytes.IndexByte(b, '\n')
	if nl < 0 {
		return 0, nil
	}
	if _, err := h.parseLine(b[:nl+1], 0); err != nil {
		return 0, err
	}
	for i := h.statusEnd; ; {
		if i+1 >= len(b) {
			return 0, nil
		}
		if b[i] == '\r' && b[i+1] == '\n' {
			return i + 2, nil // the empty line
		}
		colon, end, err := scanField(b, i)
		if err != nil || end == 0 {
			return 0, err
		}
		if err := h.addField(b[i:colon], httpsyntax.TrimOWS(b[colon+1:end]), colon, end); err != nil {
			return 0, err
		}
		i = end + 2
	}
}

// scanField checks the field line at b[start:] by the rules of splitField
// and readResponseHead, and returns where its colon and its CR are; end is
// 0 when b ends inside the line.
func scanField(b []byte, start int) (colon, end int, err error) {
	colon = httpsyntax.TokenEnd(b, start)
	if colon == len(b) {
		return 0, 0, nil
	}
	if colon == start || b[colon] != ':' {
		if colon == start && (b[start] == ' ' || b[start] == '\t') {
			return 0, 0, errObsFold
		}
		return 0, 0, errFieldName
	}
	end = httpsyntax.FieldValueEnd(b, colon+1)
	switch {
	case end+1 >= len(b):
		return 0, 0, nil // at the end, or at a CR whose LF has not come
	case b[end] == '\n':
		return 0, 0, errBareLF
	case b[end] != '\r':
		return 0, 0, errFieldValue
	case b[end+1] != '\n':
		return 0, 0, errBareCR
	}
	return colon, end, nil
}

// addField records a checked field line: what it says about framing and
// the connection, and where it lies (colon and end are offsets in the
// head, whose block starts at h.statusEnd).
func (h *respHead) addField(name, value []byte, colon, end int) error {
	kind := classifyField(name)
	if err := h.noteField(name, value, kind); err != nil {
		return err
	}
	if h.fields < maxMarks {
		h.marks[h.fields] = fieldMark{colon: int32(colon - h.statusEnd), end: int32(end - h.statusEnd), kind: kind}
	}
	h.fields++
	return nil
}
