package session

import (
	"encoding/binary"
	"fmt"
)

// The payload is what securecookie signs (and encrypts). It is hand-rolled
// rather than gob or JSON: gob spends microseconds and ~60 bytes describing
// its types, and every byte here is paid for ~1.8 times in the cookie (AES
// IV, then base64 twice) on every request.
//
//	byte    version (payloadVersion)
//	uvarint issued, unix seconds
//	uvarint lastSeen - issued, seconds (never negative; usually 1-3 bytes)
//	bytes   backend id, the rest (1-MaxBackendIDLen bytes)
//
// The id comes last so it needs no length prefix. Trailing bytes cannot
// exist; a future format gets a new version byte and the old parser rejects
// it as invalid, which costs a session one re-pick during a rolling upgrade.
const payloadVersion = 1

// binaryMaxVarint is the longest uvarint appendPayload writes: times are at
// most maxUnix, which is below 2^42.
const binaryMaxVarint = 6

var (
	errPayloadEmpty   = fmt.Errorf("%w: empty payload", ErrInvalid)
	errPayloadVersion = fmt.Errorf("%w: unknown payload version", ErrInvalid)
	errPayloadTime    = fmt.Errorf("%w: bad time in payload", ErrInvalid)
	errPayloadID      = fmt.Errorf("%w: bad backend id in payload", ErrInvalid)
)

type payload struct {
	id       string
	issued   int64
	lastSeen int64
}

// appendPayload appends the encoding of a payload to dst. The caller
// guarantees 0 <= issued <= lastSeen <= maxUnix and a valid id.
func appendPayload(dst []byte, id string, issued, lastSeen int64) []byte {
	dst = append(dst, payloadVersion)
	dst = binary.AppendUvarint(dst, uint64(issued))
	dst = binary.AppendUvarint(dst, uint64(lastSeen-issued))
	return append(dst, id...)
}

// parsePayload decodes an authenticated payload. The MAC already vouches for
// the bytes, so failures here mean a key shared with something else, a
// format from a newer version, or a mode switch; the checks still keep every
// value in range so nothing downstream can overflow.
func parsePayload(b []byte) (payload, error) {
	if len(b) == 0 {
		return payload{}, errPayloadEmpty
	}
	if b[0] != payloadVersion {
		return payload{}, errPayloadVersion
	}
	b = b[1:]
	issued, n := binary.Uvarint(b)
	if n <= 0 || issued > maxUnix {
		return payload{}, errPayloadTime
	}
	b = b[n:]
	delta, n := binary.Uvarint(b)
	if n <= 0 || delta > maxUnix-issued {
		return payload{}, errPayloadTime
	}
	b = b[n:]
	if len(b) == 0 || len(b) > MaxBackendIDLen {
		return payload{}, errPayloadID
	}
	return payload{
		id:       string(b),
		issued:   int64(issued),
		lastSeen: int64(issued + delta),
	}, nil
}
