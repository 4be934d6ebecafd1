package session

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/securecookie"
)

// t0 is the injected "now" of most tests.
var t0 = time.Unix(1_700_000_000, 0)

// testKey is a deterministic key; seed tells keys apart.
func testKey(seed byte) Key {
	return Key{Hash: bytes.Repeat([]byte{seed}, 32), Block: bytes.Repeat([]byte{seed + 1}, 32)}
}

// clock is an injectable clock; tests move it instead of sleeping.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newCodec(t testing.TB, cfg Config) *Codec {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func mustEncode(t testing.TB, c *Codec, id string, issued time.Time) string {
	t.Helper()
	v, err := c.Encode(id, issued)
	if err != nil {
		t.Fatalf("Encode(%q): %v", id, err)
	}
	return v
}

// forge signs an arbitrary payload with k the way a Codec would, to reach
// the checks that run after the MAC verified.
func forge(t testing.TB, k Key, ctx string, payload []byte) string {
	t.Helper()
	sc := securecookie.New(k.Hash, k.Block).MaxAge(0).SetSerializer(securecookie.NopEncoder{})
	v, err := sc.Encode(ctx, payload)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestRoundTrip(t *testing.T) {
	clk := &clock{t0}
	for _, plain := range []bool{false, true} {
		for _, id := range []string{"a", "web-1", "0123456789abcdef", strings.Repeat("x", MaxBackendIDLen), "ünï\x00code"} {
			t.Run(fmt.Sprintf("plain=%v/%s", plain, id), func(t *testing.T) {
				c := newCodec(t, Config{Keys: []Key{testKey(1)}, Plain: plain, Now: clk.now})
				issued := t0.Add(-time.Hour)
				v := mustEncode(t, c, id, issued)
				tk, err := c.Decode(v)
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if tk.BackendID != id || !tk.Issued.Equal(issued) || !tk.LastSeen.Equal(t0) {
					t.Fatalf("got %+v, want id %q issued %v last seen %v", tk, id, issued, t0)
				}
				// Plain cookies show the id to the client, encrypted ones must not.
				if len(id) > 8 && plain == false && strings.Contains(v, id) {
					t.Fatalf("encrypted cookie %q shows the id", v)
				}
			})
		}
	}
}

func TestEncodeZeroIssuedMeansNow(t *testing.T) {
	c := newCodec(t, Config{Keys: []Key{testKey(1)}, Now: (&clock{t0}).now})
	tk, err := c.Decode(mustEncode(t, c, "b1", time.Time{}))
	if err != nil {
		t.Fatal(err)
	}
	if !tk.Issued.Equal(t0) || !tk.LastSeen.Equal(t0) {
		t.Fatalf("got %+v, want both times %v", tk, t0)
	}
}

func TestDecodeRejects(t *testing.T) {
	clk := &clock{t0}
	k := testKey(1)
	cfg := Config{Keys: []Key{k}, MaxAge: 24 * time.Hour, Idle: time.Hour, Now: clk.now}
	c := newCodec(t, cfg)
	good := mustEncode(t, c, "web-1", time.Time{})

	other := func(mod func(*Config)) string {
		cfg := cfg
		mod(&cfg)
		return mustEncode(t, newCodec(t, cfg), "web-1", time.Time{})
	}
	// flip changes the top bit of the sextet at i, which is always data:
	// a low bit next to the padding may be ignored by the base64 decoder.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	flip := func(s string, i int) string {
		b := []byte(s)
		b[i] = alphabet[strings.IndexByte(alphabet, b[i])^32]
		return string(b)
	}
	payload := func(id string, issued, seen int64) []byte { return appendPayload(nil, id, issued, seen) }
	ctx := c.signer.ctx
	now := t0.Unix()

	tests := []struct {
		name  string
		value string
		want  error
	}{
		{"empty", "", ErrInvalid},
		{"junk word", "hello", ErrInvalid},
		{"not base64", "!!!!$$$$", ErrInvalid},
		{"space padded", " " + good, ErrInvalid},
		{"quoted", `"` + good + `"`, ErrInvalid},
		{"too long", strings.Repeat("A", 5000), ErrInvalid},
		{"truncated by one", good[:len(good)-1], ErrInvalid},
		{"truncated by half", good[:len(good)/2], ErrInvalid},
		{"truncated to 4", good[:4], ErrInvalid},
		{"flipped first", flip(good, 0), ErrInvalid},
		{"flipped middle", flip(good, len(good)/2), ErrInvalid},
		{"flipped last", flip(good, len(strings.TrimRight(good, "="))-1), ErrInvalid},
		{"doubled", good + good, ErrInvalid},
		{"foreign key", other(func(c *Config) { c.Keys = []Key{testKey(7)} }), ErrInvalid},
		{"same hash other block", other(func(c *Config) { c.Keys = []Key{{Hash: k.Hash, Block: testKey(9).Block}} }), ErrInvalid},
		{"plain cookie, same key", other(func(c *Config) { c.Plain = true }), ErrInvalid},
		{"other cookie name", other(func(c *Config) { c.Name = "other" }), ErrInvalid},
		{"gob value, same key", func() string {
			v, err := securecookie.New(k.Hash, k.Block).Encode(ctx, "web-1")
			if err != nil {
				t.Fatal(err)
			}
			return v
		}(), ErrInvalid},
		{"empty payload", forge(t, k, ctx, []byte{}), ErrInvalid},
		{"unknown version", forge(t, k, ctx, append([]byte{2}, payload("web-1", now, now)[1:]...)), ErrInvalid},
		{"truncated varint", forge(t, k, ctx, []byte{payloadVersion, 0x80}), ErrInvalid},
		{"no backend id", forge(t, k, ctx, payload("", now, now)), ErrInvalid},
		{"overlong id", forge(t, k, ctx, payload(strings.Repeat("x", MaxBackendIDLen+1), now, now)), ErrInvalid},
		{"time overflow", forge(t, k, ctx, []byte{payloadVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 'x'}), ErrInvalid},
		{"last seen in the future", forge(t, k, ctx, payload("web-1", now, now+clockSkew+1)), ErrInvalid},
		{"past MaxAge", forge(t, k, ctx, payload("web-1", now-24*3600, now)), ErrExpired},
		{"idle too long", forge(t, k, ctx, payload("web-1", now-2*3600, now-3600)), ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk, err := c.Decode(tt.value)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode = %+v, %v; want %v", tk, err, tt.want)
			}
			if tk != (Ticket{}) {
				t.Fatalf("Decode returned a ticket with an error: %+v", tk)
			}
		})
	}
	// The good cookie itself passes, so the rejections above are not an
	// accident of the setup.
	if _, err := c.Decode(good); err != nil {
		t.Fatalf("good cookie: %v", err)
	}
	// Within the clock skew, a cookie from a clock running ahead is fine.
	if _, err := c.Decode(forge(t, k, ctx, payload("web-1", now+60, now+60))); err != nil {
		t.Fatalf("cookie from 60s ahead: %v", err)
	}
}

func TestRotation(t *testing.T) {
	clk := &clock{t0}
	a, b := testKey(1), testKey(2)
	onlyA := newCodec(t, Config{Keys: []Key{a}, Now: clk.now})
	onlyB := newCodec(t, Config{Keys: []Key{b}, Now: clk.now})
	ring := newCodec(t, Config{Keys: []Key{b, a}, Now: clk.now})

	old := mustEncode(t, onlyA, "web-1", time.Time{})
	if tk, err := ring.Decode(old); err != nil || tk.BackendID != "web-1" {
		t.Fatalf("cookie from A under [B, A]: %+v, %v", tk, err)
	}
	fresh := mustEncode(t, ring, "web-2", time.Time{})
	if _, err := onlyB.Decode(fresh); err != nil {
		t.Fatalf("new cookie is not signed by B: %v", err)
	}
	if _, err := onlyA.Decode(fresh); !errors.Is(err, ErrInvalid) {
		t.Fatalf("new cookie decodes under A alone: %v", err)
	}
	// Dropping A ends A's sessions.
	if _, err := onlyB.Decode(old); !errors.Is(err, ErrInvalid) {
		t.Fatalf("cookie from A under [B]: %v", err)
	}
}

// A cookie verified by an older key of the ring asks to be re-issued, and
// the re-issued one, signed by the new key, outlives the old key: an
// active session survives any number of rotations.
func TestRotationRefreshesOldKeys(t *testing.T) {
	clk := &clock{t0}
	a, b := testKey(1), testKey(2)
	onlyA := newCodec(t, Config{Keys: []Key{a}, Now: clk.now})
	ring := newCodec(t, Config{Keys: []Key{b, a}, Now: clk.now})
	onlyB := newCodec(t, Config{Keys: []Key{b}, Now: clk.now})
	issued := t0.Add(-time.Hour)
	old := mustEncode(t, onlyA, "web-1", issued)
	tk, err := ring.Decode(old)
	if err != nil || !tk.OldKey || !ring.NeedsRefresh(tk) {
		t.Fatalf("a cookie of the old key under [B, A]: %+v, %v, refresh %v", tk, err, ring.NeedsRefresh(tk))
	}
	renewed := mustEncode(t, ring, tk.BackendID, tk.Issued)
	tk2, err := onlyB.Decode(renewed)
	if err != nil || tk2.OldKey || ring.NeedsRefresh(tk2) || !tk2.Issued.Equal(issued) {
		t.Fatalf("the re-issued cookie under [B]: %+v, %v", tk2, err)
	}
}

func TestPlainToEncryptedMigration(t *testing.T) {
	clk := &clock{t0}
	old := Key{Hash: testKey(1).Hash} // sign-only key
	plain := newCodec(t, Config{Keys: []Key{old}, Plain: true, Now: clk.now})
	enc := newCodec(t, Config{Keys: []Key{testKey(2), old}, Now: clk.now})
	if tk, err := enc.Decode(mustEncode(t, plain, "web-1", time.Time{})); err != nil || tk.BackendID != "web-1" {
		t.Fatalf("plain cookie under encrypting ring with the old sign-only key: %+v, %v", tk, err)
	}
}

func TestIdleAndRefresh(t *testing.T) {
	clk := &clock{t0}
	c := newCodec(t, Config{Keys: []Key{testKey(1)}, Idle: 40 * time.Minute, MaxAge: 2 * time.Hour, Now: clk.now})
	v := mustEncode(t, c, "web-1", time.Time{})

	steps := []struct {
		advance     time.Duration
		wantErr     error
		wantRefresh bool
	}{
		{0, nil, false},
		{9 * time.Minute, nil, false}, // < Idle/4
		{time.Minute, nil, true},      // = Idle/4: re-issue
	}
	for i, s := range steps {
		clk.advance(s.advance)
		tk, err := c.Decode(v)
		if !errors.Is(err, s.wantErr) {
			t.Fatalf("step %d: Decode err %v, want %v", i, err, s.wantErr)
		}
		if got := c.NeedsRefresh(tk); got != s.wantRefresh {
			t.Fatalf("step %d: NeedsRefresh = %v, want %v", i, got, s.wantRefresh)
		}
	}

	// A client active every 30 minutes keeps its session past the idle
	// limit by refreshing, and keeps its original issue time...
	v = mustEncode(t, c, "web-1", t0)
	for range 3 {
		clk.advance(30 * time.Minute)
		tk, err := c.Decode(v)
		if err != nil {
			t.Fatalf("at %v: %v", clk.t.Sub(t0), err)
		}
		if !tk.Issued.Equal(t0) {
			t.Fatalf("refresh moved Issued to %v", tk.Issued)
		}
		if !c.NeedsRefresh(tk) {
			t.Fatal("no refresh after 30 minutes")
		}
		if v, err = c.Encode(tk.BackendID, tk.Issued); err != nil {
			t.Fatal(err)
		}
	}
	// ...until MaxAge (2h after t0; now is t0+1h40m) ends it regardless.
	clk.advance(20 * time.Minute)
	if _, err := c.Decode(v); !errors.Is(err, ErrExpired) {
		t.Fatalf("past MaxAge: %v", err)
	}
	// Refreshing a ticket whose MaxAge is over is refused, not extended.
	if _, err := c.Encode("web-1", t0); !errors.Is(err, ErrExpired) {
		t.Fatalf("Encode past MaxAge: %v", err)
	}

	// Idle ends a quiet session at exactly Idle after last seen.
	v = mustEncode(t, c, "web-1", time.Time{})
	clk.advance(40*time.Minute - time.Second)
	if _, err := c.Decode(v); err != nil {
		t.Fatalf("one second before idle expiry: %v", err)
	}
	clk.advance(time.Second)
	if _, err := c.Decode(v); !errors.Is(err, ErrExpired) {
		t.Fatalf("at idle expiry: %v", err)
	}
}

func TestNoLifetimes(t *testing.T) {
	clk := &clock{t0}
	c := newCodec(t, Config{Keys: []Key{testKey(1)}, Now: clk.now})
	v := mustEncode(t, c, "web-1", time.Time{})
	clk.advance(10 * 365 * 24 * time.Hour)
	tk, err := c.Decode(v)
	if err != nil {
		t.Fatalf("ten years later: %v", err)
	}
	if c.NeedsRefresh(tk) {
		t.Fatal("NeedsRefresh without Idle")
	}
}

func TestAliveMatchesDecode(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	c, err := New(Config{Keys: []Key{GenerateKey()}, MaxAge: time.Hour, Idle: 10 * time.Minute, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.Encode("web1", now)
	if err != nil {
		t.Fatal(err)
	}
	tk, err := c.Decode(v)
	if err != nil || c.Alive(tk) != nil {
		t.Fatalf("fresh ticket: %v / %v", err, c.Alive(tk))
	}
	for _, d := range []time.Duration{9 * time.Minute, 10 * time.Minute, 2 * time.Hour} {
		now = time.Unix(1_700_000_000, 0).Add(d)
		_, decErr := c.Decode(v)
		aliveErr := c.Alive(tk)
		if (decErr == nil) != (aliveErr == nil) || (aliveErr != nil && !errors.Is(aliveErr, ErrExpired)) {
			t.Errorf("after %v: Decode %v, Alive %v", d, decErr, aliveErr)
		}
	}
}
