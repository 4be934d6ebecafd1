package tlsedge

import (
	"bufio"
	"encoding/binary"
	"errors"
	"strconv"

	"golang.org/x/net/http2"
)

// The HTTP/2 frontend (h2srv*.go) speaks RFC 9113 itself, the way the
// HTTP/1.1 one does RFC 9112: x/net/http2's server hands every request
// between four goroutines (frame reader, serve loop, handler, write
// scheduler) and allocates a request, header maps and a response writer
// per stream; on the S4 profile that was most of the CPU not spent in
// crypto or system calls (docs/performance.md, issue 7). Here one goroutine
// per connection reads frames and starts a goroutine per stream that runs
// the same http.Handler chain as HTTP/1.1 and writes its own frames into the
// connection's buffered writer; frames of many streams go out in one TLS
// record (h2srv_write.go).
//
// This file: frame headers, the settings the server advertises, and the
// errors of RFC 9113 5.4.

// What the server advertises and enforces.
const (
	// h2MaxFrameSize is SETTINGS_MAX_FRAME_SIZE: the protocol's initial
	// value (RFC 9113 6.5.2), which clients and conformance tools assume.
	h2MaxFrameSize = 16384
	// h2MaxStreams is SETTINGS_MAX_CONCURRENT_STREAMS (Go's default).
	h2MaxStreams = 250
	// h2StreamWindow is SETTINGS_INITIAL_WINDOW_SIZE: how much of a
	// request body a client may send ahead of the handler. The protocol's
	// 64 KiB makes uploads crawl (golang/go#47840); it also bounds what
	// one stream can make the server buffer.
	h2StreamWindow = 1 << 20
	// h2ConnWindow is the connection's receive window (raised from the
	// protocol's 64 KiB by a WINDOW_UPDATE after SETTINGS): what all of a
	// connection's request bodies can make the server buffer together.
	h2ConnWindow = 4 << 20
	// h2MaxHeaderList is SETTINGS_MAX_HEADER_LIST_SIZE, advisory (Go
	// clients refuse to send more): net/http's for MaxHeaderBytes 64 KiB.
	// The head is limited as HTTP/1.1's is (maxHeaderBytes, 431).
	h2MaxHeaderList = maxHeaderBytes + 320
	// h2MaxString bounds one decoded header name or value: above the
	// head limit, so that a 64 KiB value gets its 431; a longer one ends
	// the connection (the HPACK state cannot be kept without it).
	h2MaxString = 2 * maxHeaderBytes
	// h2MaxBlock bounds the compressed bytes of one header block
	// (HEADERS and its CONTINUATION frames): far over what fits in the
	// head limit; beyond it the connection ends (CVE-2023-45288).
	h2MaxBlock = 4 * maxHeaderBytes
	// h2TableSize is the HPACK dynamic table size of both directions
	// (the protocol's default; the server does not change it).
	h2TableSize = 4096
	// h2MaxHandlers bounds the handler goroutines of a connection: streams
	// a client resets stay counted until their handler returns, so a
	// client opening and resetting streams (CVE-2023-44487) is stopped.
	h2MaxHandlers = 4 * h2MaxStreams
	// h2MaxQueued bounds the control frames waiting to be written (PING
	// and SETTINGS acknowledgements, resets): a client that sends them
	// faster than it reads is cut off.
	h2MaxQueued = 64 << 10

	h2HeaderLen = 9 // frame header
)

// h2Frame is a frame header.
type h2Frame struct {
	length uint32
	typ    http2.FrameType
	flags  http2.Flags
	id     uint32
}

func parseH2Frame(b []byte) h2Frame {
	return h2Frame{
		length: uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]),
		typ:    http2.FrameType(b[3]),
		flags:  http2.Flags(b[4]),
		id:     binary.BigEndian.Uint32(b[5:]) & (1<<31 - 1),
	}
}

// appendH2Frame appends a frame header.
func appendH2Frame(b []byte, length int, typ http2.FrameType, flags http2.Flags, id uint32) []byte {
	return append(b, byte(length>>16), byte(length>>8), byte(length), byte(typ), byte(flags),
		byte(id>>24), byte(id>>16), byte(id>>8), byte(id))
}

func appendUint32(b []byte, v uint32) []byte {
	return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// appendRSTStream appends RST_STREAM(code) for stream id.
func appendRSTStream(b []byte, id uint32, code http2.ErrCode) []byte {
	b = appendH2Frame(b, 4, http2.FrameRSTStream, 0, id)
	return appendUint32(b, uint32(code))
}

// appendWindowUpdate appends WINDOW_UPDATE(n) for stream id (0: the
// connection).
func appendWindowUpdate(b []byte, id uint32, n uint32) []byte {
	b = appendH2Frame(b, 4, http2.FrameWindowUpdate, 0, id)
	return appendUint32(b, n)
}

// appendGoAway appends GOAWAY(code) naming last as the last stream acted on.
func appendGoAway(b []byte, last uint32, code http2.ErrCode) []byte {
	b = appendH2Frame(b, 8, http2.FrameGoAway, 0, 0)
	b = appendUint32(b, last)
	return appendUint32(b, uint32(code))
}

// appendServerPreface appends the server's SETTINGS and the WINDOW_UPDATE
// that opens the connection's receive window to h2ConnWindow.
func appendServerPreface(b []byte) []byte {
	settings := [...]http2.Setting{
		{ID: http2.SettingMaxConcurrentStreams, Val: h2MaxStreams},
		{ID: http2.SettingInitialWindowSize, Val: h2StreamWindow},
		{ID: http2.SettingMaxFrameSize, Val: h2MaxFrameSize},
		{ID: http2.SettingMaxHeaderListSize, Val: h2MaxHeaderList},
	}
	b = appendH2Frame(b, 6*len(settings), http2.FrameSettings, 0, 0)
	for _, s := range settings {
		b = append(b, byte(s.ID>>8), byte(s.ID))
		b = appendUint32(b, s.Val)
	}
	return appendWindowUpdate(b, 0, h2ConnWindow-h2InitialWindow)
}

// h2InitialWindow is the protocol's initial flow-control window (RFC 9113
// 6.9.2), of both directions until SETTINGS say otherwise.
const h2InitialWindow = 65535

// h2MaxWindow is the largest flow-control window (RFC 9113 6.9.1).
const h2MaxWindow = 1<<31 - 1

// h2ConnError is a connection error (RFC 9113 5.4.1): GOAWAY with code,
// then the connection ends.
type h2ConnError struct {
	code   http2.ErrCode
	reason string
}

func (e *h2ConnError) Error() string {
	return "http2: connection error: " + e.code.String() + ": " + e.reason
}

func connErr(code http2.ErrCode, reason string) error {
	return &h2ConnError{code: code, reason: reason}
}

// h2StreamError is a stream error (RFC 9113 5.4.2): RST_STREAM with code.
type h2StreamError struct {
	id   uint32
	code http2.ErrCode
}

func (e *h2StreamError) Error() string {
	return "http2: stream " + strconv.FormatUint(uint64(e.id), 10) + " error: " + e.code.String()
}

func streamErr(id uint32, code http2.ErrCode) error { return &h2StreamError{id: id, code: code} }

var (
	errH2StreamClosed = errors.New("http2: stream closed")
	errH2ConnClosed   = errors.New("http2: client connection closed")
	errH2BodyClosed   = errors.New("http2: request body closed by handler")
)

// h2ReadFrame reads the next frame from br: its header and payload, the
// payload a slice of br's buffer valid until the next read. br's buffer
// holds a frame of h2MaxFrameSize. Nothing is consumed when the read
// fails (a timeout can be retried).
func h2ReadFrame(br *bufio.Reader) (h2Frame, []byte, error) {
	b, err := br.Peek(h2HeaderLen)
	if err != nil {
		return h2Frame{}, nil, err
	}
	f := parseH2Frame(b)
	if f.length > h2MaxFrameSize {
		return f, nil, connErr(http2.ErrCodeFrameSize, "frame larger than SETTINGS_MAX_FRAME_SIZE")
	}
	n := h2HeaderLen + int(f.length)
	if b, err = br.Peek(n); err != nil {
		return f, nil, err
	}
	br.Discard(n) //nolint:errcheck // peeked
	return f, b[h2HeaderLen:], nil
}

// h2ReadBufSize holds the largest frame the server accepts and its header.
const h2ReadBufSize = h2MaxFrameSize + 1024
