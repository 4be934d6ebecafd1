package logsink

import (
	"strconv"
	"time"
)

// AppendTimeMillis appends t in UTC as 2006-01-02T15:04:05.000Z, the time
// of every access-log format but CLF. It writes the digits itself:
// time.AppendFormat parses its layout on every call, and that was a fifth
// of the log writer's cost per line. Years outside 0..9999 take
// AppendFormat's path.
func AppendTimeMillis(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, "2006-01-02T15:04:05.000Z")
	}
	hour, min, sec := t.Clock()
	ms := t.Nanosecond() / 1e6
	return append(b,
		byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-',
		byte('0'+int(month)/10), byte('0'+int(month)%10), '-',
		byte('0'+day/10), byte('0'+day%10), 'T',
		byte('0'+hour/10), byte('0'+hour%10), ':',
		byte('0'+min/10), byte('0'+min%10), ':',
		byte('0'+sec/10), byte('0'+sec%10), '.',
		byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
}

// AppendSeconds appends d in seconds with six decimals (0.001234), rounded
// to the nearest microsecond, as strconv.AppendFloat(b, d.Seconds(), 'f',
// 6, 64) would print it, without going through a float.
func AppendSeconds(b []byte, d time.Duration) []byte {
	neg := d < 0
	us := int64(d)
	if neg {
		us = -us
		b = append(b, '-')
	}
	if us < 0 { // the most negative duration has no positive
		return strconv.AppendFloat(b[:len(b)-1], d.Seconds(), 'f', 6, 64)
	}
	us, rem := us/1000, us%1000
	if rem >= 500 {
		us++
	}
	b = strconv.AppendInt(b, us/1e6, 10)
	f := us % 1e6
	return append(b, '.',
		byte('0'+f/100000), byte('0'+f/10000%10), byte('0'+f/1000%10),
		byte('0'+f/100%10), byte('0'+f/10%10), byte('0'+f%10))
}
