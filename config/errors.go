package config

import (
	"strconv"
	"strings"
)

// FieldError is a configuration error that names where it is: the app
// (its name or route; empty for global settings), the field, and the bad
// value as written.
type FieldError struct {
	App   string
	Field string
	Value string
	Err   error
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.App != "" {
		b.WriteString("app ")
		b.WriteString(strconv.Quote(e.App))
		b.WriteString(": ")
	}
	b.WriteString(e.Field)
	b.WriteString(" ")
	b.WriteString(strconv.Quote(e.Value))
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *FieldError) Unwrap() error { return e.Err }
