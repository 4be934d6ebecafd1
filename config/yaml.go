package config

import (
	"fmt"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written as "30s", "15m", "24h" in both spellings.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ParseDuration reads a Go duration ("90s", "1h30m") or plain seconds ("90").
func ParseDuration(s string) (Duration, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("negative duration %q", s)
		}
		return Duration(time.Duration(n) * time.Second), nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("not a duration (like 30s, 15m, 24h): %q", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	return Duration(v), nil
}

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration like 30s, got a %s", n.Line, kindName(n.Kind))
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML accepts "host:port", "host:port*WEIGHT" or a mapping
// {addr, weight, id}.
func (b *Backend) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		v, err := ParseBackend(n.Value)
		if err != nil {
			return fmt.Errorf("line %d: backend %q: %w", n.Line, n.Value, err)
		}
		*b = v
		return nil
	case yaml.MappingNode:
		type plain Backend // no methods: plain decoding, no recursion
		var p plain
		if err := n.Decode(&p); err != nil {
			return err
		}
		*b = Backend(p)
		return nil
	}
	return fmt.Errorf("line %d: a backend is \"host:port[*weight]\" or {addr: ..., weight: ...}, got a %s", n.Line, kindName(n.Kind))
}

// MarshalYAML prints the short spelling unless an explicit id needs the long one.
func (b Backend) MarshalYAML() (any, error) {
	if b.ID != "" && b.ID != BackendID(b.Addr) || b.Priority != 0 || b.SRV {
		type plain Backend
		return plain(b), nil
	}
	return b.String(), nil
}

// String is the command-line spelling of the backend.
func (b Backend) String() string {
	if b.Weight > 1 {
		return b.Addr + "*" + strconv.Itoa(b.Weight)
	}
	return b.Addr
}

// UnmarshalYAML accepts "sticky: true", "sticky: false", "sticky: NAME"
// and "sticky: {cookie: NAME}". false decodes to a zero Sticky that
// Load turns into nil (off).
func (s *Sticky) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		switch n.Value {
		case "true", "yes", "on":
			*s = Sticky{}
		case "false", "no", "off":
			*s = Sticky{Cookie: stickyOff}
		default:
			*s = Sticky{Cookie: n.Value}
		}
		return nil
	case yaml.MappingNode:
		type plain Sticky
		var p plain
		if err := n.Decode(&p); err != nil {
			return err
		}
		*s = Sticky(p)
		return nil
	}
	return fmt.Errorf("line %d: sticky is true, false, a cookie name or {cookie: NAME}, got a %s", n.Line, kindName(n.Kind))
}

// MarshalYAML prints the cookie name.
func (s Sticky) MarshalYAML() (any, error) { return s.CookieName(), nil }

// stickyOff marks "sticky: false" between decoding and Normalize; it is not
// a valid cookie name, so it can never collide with one.
const stickyOff = "\x00off"

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.SequenceNode:
		return "list"
	case yaml.MappingNode:
		return "mapping"
	case yaml.AliasNode:
		return "alias"
	}
	return "scalar"
}
