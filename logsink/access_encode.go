package logsink

import (
	"strconv"
	"unicode/utf8"
)

const hexDigit = "0123456789abcdef"

// appendLogItem writes s escaped, or "-" when it is empty (Apache's rule
// for a missing value).
func appendLogItem(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	return appendEscaped(b, s)
}

// appendEscaped escapes s as Apache's ap_escape_logitem does (server/util.c,
// T_ESCAPE_LOGITEM): a backslash before '"' and '\', \b \n \r \t \v for
// those controls, \xhh for every other byte outside printable ASCII
// (0x20-0x7e), so a client cannot forge a line or a field, and non-ASCII
// bytes are logged as bytes, whatever the terminal's encoding.
func appendEscaped(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c >= 0x20 && c < 0x7f:
			b = append(b, c)
		case c == '\b':
			b = append(b, '\\', 'b')
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c == '\v':
			b = append(b, '\\', 'v')
		default:
			b = append(b, '\\', 'x', hexDigit[c>>4], hexDigit[c&15])
		}
	}
	return b
}

// appendTLSVersion writes "1.0" ... "1.3", "-" for none, or the code in
// hex for a version this package does not name.
func appendTLSVersion(b []byte, v uint16) []byte {
	switch v {
	case 0:
		return append(b, '-')
	case 0x0301:
		return append(b, "1.0"...)
	case 0x0302:
		return append(b, "1.1"...)
	case 0x0303:
		return append(b, "1.2"...)
	case 0x0304:
		return append(b, "1.3"...)
	}
	return append(b, '0', 'x', hexDigit[v>>12], hexDigit[v>>8&15], hexDigit[v>>4&15], hexDigit[v&15])
}

// appendJSON writes one object. Keys always present: time, client_ip,
// method, host, path, proto, status, bytes, duration (seconds), app,
// backend. Present when set: user, request_id, referer, user_agent, tls,
// sticky, attempts.
func appendJSON(b []byte, e *AccessFields) []byte {
	b = append(b, `{"time":"`...)
	b = AppendTimeMillis(b, e.Time)
	b = append(b, '"')
	b = appendJSONField(b, "client_ip", e.ClientIP)
	b = appendJSONField(b, "method", e.Method)
	b = appendJSONField(b, "host", e.Host)
	b = appendJSONField(b, "path", e.Path)
	b = appendJSONField(b, "proto", e.Proto)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, e.Bytes, 10)
	b = append(b, `,"duration":`...)
	b = AppendSeconds(b, e.Duration)
	b = appendJSONField(b, "app", e.App)
	b = appendJSONField(b, "backend", e.Backend)
	b = appendJSONOptional(b, "user", e.User)
	b = appendJSONOptional(b, "request_id", e.RequestID)
	b = appendJSONOptional(b, "referer", e.Referer)
	b = appendJSONOptional(b, "user_agent", e.UserAgent)
	if e.TLSVersion != 0 {
		b = append(b, `,"tls":"`...)
		b = appendTLSVersion(b, e.TLSVersion)
		b = append(b, '"')
	}
	b = appendJSONOptional(b, "sticky", e.Sticky)
	if e.Attempts != 0 {
		b = append(b, `,"attempts":`...)
		b = strconv.AppendInt(b, int64(e.Attempts), 10)
	}
	return append(b, "}\n"...)
}

// appendJSONField writes ,"key":"value"; key is one of ours and needs no
// escaping.
func appendJSONField(b []byte, key, s string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendJSONString(b, s)
}

func appendJSONOptional(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return appendJSONField(b, key, s)
}

// appendJSONString writes s as a JSON string (RFC 8259 section 7). Invalid
// UTF-8 becomes U+FFFD and every control character is escaped, so each
// line is valid JSON whatever bytes a client sent; U+2028 and U+2029 are
// escaped too, as encoding/json does, for readers that embed the line in
// JavaScript.
// AppendJSONString appends s as a JSON string (see appendJSONString): the
// one JSON escaper of tlsedge's logs.
func AppendJSONString(b []byte, s string) []byte { return appendJSONString(b, s) }

func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hexDigit[c>>4], hexDigit[c&15])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hexDigit[r&15])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
