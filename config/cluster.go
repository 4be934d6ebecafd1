package config

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// Cluster tunes what several instances sharing a Redis storage
// (storage: redis://...) share besides certificates: sticky-cookie and
// session-ticket keys (always, with rotation), and optionally operators'
// backend admin states. Without a Redis storage it is ignored.
type Cluster struct {
	// InstanceID names this instance among the others, on status pages
	// and in `tlsedge check --cluster` (default: host name, process id and
	// a random suffix).
	InstanceID string `yaml:"instance_id,omitempty"`
	// StickyKeyRotation is how often a new sticky-cookie key is made
	// (default 24h). A key signs only once every live instance holds it;
	// cookies stay valid for KeysKept rotations.
	StickyKeyRotation Duration `yaml:"sticky_key_rotation,omitempty"`
	// TicketKeyRotation is the same for TLS session-ticket keys (default
	// 24h): a client resumes on any instance.
	TicketKeyRotation Duration `yaml:"ticket_key_rotation,omitempty"`
	// KeysKept is how many keys of each kind are kept, the signing one
	// included (default 7).
	KeysKept int `yaml:"keys_kept,omitempty"`
	// AdminSync applies the backend admin states and weights set on one
	// instance (admin API) to every instance (default off).
	AdminSync bool `yaml:"admin_sync,omitempty"`
	// RateLimits counts rate limits (rate_limit, frontend.rate_limit)
	// across instances: what a client sends to the others is taken from
	// its allowance here, a poll later (default off: each instance counts
	// its own).
	RateLimits bool `yaml:"rate_limits,omitempty"`
	// Poll is how often an instance reads the shared state (default 1s).
	Poll Duration `yaml:"poll,omitempty"`
}

// Clustered reports whether the configuration shares state through Redis.
func (c *Config) Clustered() bool {
	return strings.HasPrefix(c.Storage, "redis://") || strings.HasPrefix(c.Storage, "rediss://")
}

func (c *Cluster) validate(add func(field, value string, err error)) {
	for _, d := range []struct {
		field string
		v     Duration
		min   time.Duration
	}{
		{"cluster.sticky_key_rotation", c.StickyKeyRotation, time.Second},
		{"cluster.ticket_key_rotation", c.TicketKeyRotation, time.Second},
		{"cluster.poll", c.Poll, 10 * time.Millisecond},
	} {
		if d.v != 0 && d.v.D() < d.min {
			add(d.field, d.v.String(), errors.New("too short: at least "+d.min.String()))
		}
	}
	if c.KeysKept != 0 && (c.KeysKept < 2 || c.KeysKept > 100) {
		add("cluster.keys_kept", strconv.Itoa(c.KeysKept), errors.New("want 2 to 100 keys"))
	}
	if strings.ContainsAny(c.InstanceID, " \t\r\n:") || len(c.InstanceID) > 128 {
		add("cluster.instance_id", c.InstanceID, errors.New("want up to 128 characters without spaces or ':'"))
	}
}
