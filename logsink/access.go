package logsink

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// AccessFields is one request as the access log records it. Strings are
// copied into the line as they are, escaped; "" prints as "-" in the text
// formats and is left out of JSON where the field is optional.
type AccessFields struct {
	Time               time.Time
	ClientIP           string
	Method, Host, Path string
	Proto              string // "HTTP/1.1", "HTTP/2.0"
	Status             int
	Bytes              int64 // response body bytes
	Duration           time.Duration
	App, Backend       string
	RequestID          string
	Referer, UserAgent string
	User               string // authenticated user, "" when none
	TLSVersion         uint16 // tls.VersionTLS13 ..., 0 for plain HTTP
	Sticky             string // "hit", "miss", "repin", "" when not sticky
	Attempts           int    // backends tried
}

// AccessFormat turns AccessFields into one access-log line. Compile it once
// with CompileAccessFormat; Append is then safe for concurrent use and,
// for every format but json, allocates nothing.
type AccessFormat struct {
	spec string
	json bool
	ops  []op
}

// op is one piece of a compiled template: literal text or a field.
type op struct {
	field field // fieldLiteral for text
	lit   string
}

type field uint8

const (
	fieldLiteral field = iota
	fieldTime
	fieldTimeCLF
	fieldTimeUnix
	fieldClientIP
	fieldUser
	fieldMethod
	fieldHost
	fieldPath
	fieldProto
	fieldRequest
	fieldStatus
	fieldBytes
	fieldBytesCLF
	fieldDuration
	fieldDurationMS
	fieldDurationUS
	fieldApp
	fieldBackend
	fieldRequestID
	fieldReferer
	fieldUserAgent
	fieldTLS
	fieldSticky
	fieldAttempts
)

// fieldNames are the names a template may use; the comments show what a
// field prints where that is not obvious.
var fieldNames = map[string]field{
	"time":        fieldTime,     // 2026-11-30T04:35:08.123Z, UTC
	"time_clf":    fieldTimeCLF,  // 30/Nov/2026:05:35:08 +0100, Time's own zone
	"time_unix":   fieldTimeUnix, // 1795840508.123
	"client_ip":   fieldClientIP,
	"user":        fieldUser,
	"method":      fieldMethod,
	"host":        fieldHost,
	"path":        fieldPath, // path and query, as received
	"proto":       fieldProto,
	"request":     fieldRequest, // "GET /x HTTP/1.1", Apache's %r
	"status":      fieldStatus,
	"bytes":       fieldBytes,      // 0 prints 0
	"bytes_clf":   fieldBytesCLF,   // 0 prints -, Apache's %b
	"duration":    fieldDuration,   // seconds, 0.001234
	"duration_ms": fieldDurationMS, // milliseconds, 1.234
	"duration_us": fieldDurationUS, // microseconds, 1234, Apache's %D
	"app":         fieldApp,
	"backend":     fieldBackend,
	"request_id":  fieldRequestID,
	"referer":     fieldReferer,
	"user_agent":  fieldUserAgent,
	"tls":         fieldTLS, // 1.2, 1.3, - for plain HTTP
	"sticky":      fieldSticky,
	"attempts":    fieldAttempts,
}

// The Apache formats, as templates. Apache's %l (identd) is always "-".
const (
	commonTemplate   = `{client_ip} - {user} [{time_clf}] "{request}" {status} {bytes_clf}`
	combinedTemplate = commonTemplate + ` "{referer}" "{user_agent}"`
)

// CompileAccessFormat compiles an access-log format:
//
//	common     Apache's Common Log Format: %h %l %u %t "%r" %>s %b
//	combined   common plus "%{Referer}i" "%{User-agent}i"
//	json       one JSON object per line (AppendJSON's keys)
//	template   text with {field} names, e.g.
//	           {time} {client_ip} "{method} {host} {path}" {status} {bytes} {duration} app={app}
//
// In a template "{{" and "}}" stand for literal braces; the text may not
// hold control characters, so that every line is one line. Text fields are
// escaped as Apache's ap_escape_logitem does: '"' and '\' get a backslash,
// control characters and bytes outside printable ASCII become \n, \t, ...
// or \xhh, and an empty string prints as "-".
func CompileAccessFormat(spec string) (*AccessFormat, error) {
	switch spec {
	case "json":
		return &AccessFormat{spec: spec, json: true}, nil
	case "common":
		return compileTemplate(spec, commonTemplate)
	case "combined":
		return compileTemplate(spec, combinedTemplate)
	}
	return compileTemplate(spec, spec)
}

func compileTemplate(spec, tmpl string) (*AccessFormat, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("logsink: access format %q: "+format, append([]any{spec}, args...)...)
	}
	if tmpl == "" {
		return nil, fail("empty (want common, combined, json or a template of {field} names)")
	}
	f := &AccessFormat{spec: spec}
	var lit strings.Builder
	addLit := func() {
		if lit.Len() > 0 {
			f.ops = append(f.ops, op{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(tmpl); i++ {
		c := tmpl[i]
		switch {
		case c == '{' && strings.HasPrefix(tmpl[i:], "{{"), c == '}' && strings.HasPrefix(tmpl[i:], "}}"):
			lit.WriteByte(c)
			i++
		case c == '{':
			end := strings.IndexByte(tmpl[i:], '}')
			if end < 0 {
				return nil, fail("unclosed { at byte %d", i)
			}
			name := tmpl[i+1 : i+end]
			fd, ok := fieldNames[name]
			if !ok {
				return nil, fail("unknown field {%s} (known: %s)", name, knownFields())
			}
			addLit()
			f.ops = append(f.ops, op{field: fd})
			i += end
		case c == '}':
			return nil, fail("unmatched } at byte %d (write }} for a brace)", i)
		case c < 0x20 || c == 0x7f:
			return nil, fail("control character %q at byte %d", c, i)
		default:
			lit.WriteByte(c)
		}
	}
	addLit()
	return f, nil
}

func knownFields() string {
	names := make([]string, 0, len(fieldNames))
	for n := range fieldNames {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// String returns the spec the format was compiled from.
func (f *AccessFormat) String() string { return f.spec }

// Append appends e's line, ending in '\n', to b and returns the result.
// With a b of sufficient capacity (a pooled 1 KiB buffer), common,
// combined and templates allocate nothing; so does json.
func (f *AccessFormat) Append(b []byte, e *AccessFields) []byte {
	if f.json {
		return appendJSON(b, e)
	}
	for i := range f.ops {
		b = appendField(b, &f.ops[i], e)
	}
	return append(b, '\n')
}

func appendField(b []byte, o *op, e *AccessFields) []byte {
	switch o.field {
	case fieldLiteral:
		return append(b, o.lit...)
	case fieldTime:
		return AppendTimeMillis(b, e.Time)
	case fieldTimeCLF:
		return e.Time.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	case fieldTimeUnix:
		ms := e.Time.Nanosecond() / 1e6 // within [0, 999] for times before 1970 too
		b = strconv.AppendInt(b, e.Time.Unix(), 10)
		return append(b, '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10))
	case fieldClientIP:
		return appendLogItem(b, e.ClientIP)
	case fieldUser:
		return appendLogItem(b, e.User)
	case fieldMethod:
		return appendLogItem(b, e.Method)
	case fieldHost:
		return appendLogItem(b, e.Host)
	case fieldPath:
		return appendLogItem(b, e.Path)
	case fieldProto:
		return appendLogItem(b, e.Proto)
	case fieldRequest:
		return appendRequest(b, e)
	case fieldStatus:
		return strconv.AppendInt(b, int64(e.Status), 10)
	case fieldBytes:
		return strconv.AppendInt(b, e.Bytes, 10)
	case fieldBytesCLF:
		if e.Bytes == 0 {
			return append(b, '-')
		}
		return strconv.AppendInt(b, e.Bytes, 10)
	case fieldDuration:
		return AppendSeconds(b, e.Duration)
	case fieldDurationMS:
		return strconv.AppendFloat(b, float64(e.Duration)/float64(time.Millisecond), 'f', 3, 64)
	case fieldDurationUS:
		return strconv.AppendInt(b, e.Duration.Microseconds(), 10)
	case fieldApp:
		return appendLogItem(b, e.App)
	case fieldBackend:
		return appendLogItem(b, e.Backend)
	case fieldRequestID:
		return appendLogItem(b, e.RequestID)
	case fieldReferer:
		return appendLogItem(b, e.Referer)
	case fieldUserAgent:
		return appendLogItem(b, e.UserAgent)
	case fieldTLS:
		return appendTLSVersion(b, e.TLSVersion)
	case fieldSticky:
		return appendLogItem(b, e.Sticky)
	case fieldAttempts:
		return strconv.AppendInt(b, int64(e.Attempts), 10)
	}
	return b
}

// appendRequest writes Apache's %r, the request line, from its parts:
// "GET /x HTTP/1.1", without the protocol when it is unknown.
func appendRequest(b []byte, e *AccessFields) []byte {
	if e.Method == "" && e.Path == "" && e.Proto == "" {
		return append(b, '-')
	}
	b = appendEscaped(b, e.Method)
	b = append(b, ' ')
	b = appendEscaped(b, e.Path)
	if e.Proto != "" {
		b = append(b, ' ')
		b = appendEscaped(b, e.Proto)
	}
	return b
}
