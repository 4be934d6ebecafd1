package session

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestNewRejects(t *testing.T) {
	k := testKey(1)
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error
	}{
		{"no keys", Config{}, "no keys"},
		{"bad name", Config{Name: "a b", Keys: []Key{k}}, "invalid cookie name"},
		{"short hash", Config{Keys: []Key{{Hash: make([]byte, 31), Block: k.Block}}}, "key 1: hash key is 31 bytes"},
		{"bad block in second key", Config{Keys: []Key{k, {Hash: k.Hash, Block: make([]byte, 15)}}}, "key 2: block key is 15 bytes"},
		{"encrypting without block", Config{Keys: []Key{{Hash: k.Hash}}}, "no block key"},
		{"negative MaxAge", Config{Keys: []Key{k}, MaxAge: -time.Second}, "MaxAge"},
		{"sub-second Idle", Config{Keys: []Key{k}, Idle: time.Millisecond}, "Idle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, %v; want error containing %q", c, err, tt.want)
			}
		})
	}
	// Sign-only keys are fine in plain mode, and for verification only.
	for _, cfg := range []Config{
		{Keys: []Key{{Hash: k.Hash}}, Plain: true},
		{Keys: []Key{k, {Hash: testKey(2).Hash}}},
	} {
		if _, err := New(cfg); err != nil {
			t.Errorf("New(%v): %v", cfg, err)
		}
	}
}

func TestNewCopiesKeys(t *testing.T) {
	k := testKey(1)
	k.Hash, k.Block = append([]byte(nil), k.Hash...), append([]byte(nil), k.Block...)
	clk := &clock{t0}
	c := newCodec(t, Config{Keys: []Key{k}, Now: clk.now})
	v := mustEncode(t, c, "web-1", time.Time{})
	k.Hash[0]++
	k.Block[0]++
	if _, err := c.Decode(v); err != nil {
		t.Fatalf("changing the caller's key slices changed the codec: %v", err)
	}
}

func TestEncodeRejects(t *testing.T) {
	clk := &clock{t0}
	c := newCodec(t, Config{Keys: []Key{testKey(1)}, MaxAge: time.Hour, Now: clk.now})
	tests := []struct {
		name   string
		id     string
		issued time.Time
		want   error
	}{
		{"empty id", "", time.Time{}, ErrBackendID},
		{"long id", strings.Repeat("x", MaxBackendIDLen+1), time.Time{}, ErrBackendID},
		{"issued past MaxAge", "b", t0.Add(-time.Hour), ErrExpired},
		{"issued far in the future", "b", t0.Add(time.Hour), nil},
		{"issued before 1970", "b", time.Unix(-1, 0), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := c.Encode(tt.id, tt.issued)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("Encode = %q, %v; want error %v", v, err, tt.want)
			}
		})
	}
}

// TestMaxValueLen checks that the longest cookie Encode can make fits
// within what Decode accepts, and shows what typical cookies cost.
func TestMaxValueLen(t *testing.T) {
	far := time.Unix(maxUnix, 0)
	for _, plain := range []bool{false, true} {
		c := newCodec(t, Config{Keys: []Key{testKey(1)}, Plain: plain, Now: func() time.Time { return far }})
		v := mustEncode(t, c, strings.Repeat("x", MaxBackendIDLen), far)
		if len(v) > maxValueLen {
			t.Errorf("plain=%v: longest value is %d bytes, maxValueLen is %d", plain, len(v), maxValueLen)
		}
		if _, err := c.Decode(v); err != nil {
			t.Errorf("plain=%v: longest value does not decode: %v", plain, err)
		}
		typical := newCodec(t, Config{Keys: []Key{testKey(1)}, Plain: plain})
		t.Logf("plain=%v: longest value %d bytes, 8-byte id now %d bytes",
			plain, len(v), len(mustEncode(t, typical, "web-0001", time.Time{})))
	}
}

func TestKeyDoesNotPrintSecrets(t *testing.T) {
	k := testKey(0xab)
	cfg := Config{Keys: []Key{k}}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(format, cfg)
		if strings.Contains(strings.ToLower(out), "abab") || strings.Contains(out, "171") {
			t.Errorf("%s prints key material: %s", format, out)
		}
	}
}
