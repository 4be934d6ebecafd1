// Package session owns request affinity: the sticky-cookie codec and its key
// ring. A sticky cookie names the backend a client is pinned to by a stable
// backend id (never an address), is signed with HMAC-SHA256 and, by default,
// encrypted with AES, so every tlsedge instance holding the same key file
// routes a session to the same backend without shared state.
//
// The cookie value is a gorilla/securecookie value (NopEncoder) around a
// compact binary payload:
//
//	version byte (1) | uvarint issued | uvarint lastSeen-issued | backend id
//
// with both times in unix seconds. Lifetimes are checked here, not by
// securecookie (its MaxAge is disabled), so that the clock can be injected and
// an idle lifetime can be tracked through the last-seen time.
package session

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/gorilla/securecookie"
)

// DefaultCookieName is the cookie name when Config.Name is empty. It matches
// the configuration default so a codec built without a name still agrees
// with one built from the config.
const DefaultCookieName = "tlsedge_sticky"

// MaxBackendIDLen is the longest backend id a cookie carries. The config
// package allows ids of 1-64 bytes; the limit also bounds maxValueLen.
const MaxBackendIDLen = 64

// Decode errors come in two classes. Callers treat both the same (ignore the
// cookie, pick a backend afresh, set a new cookie); the classes exist for
// metrics and debug logs. The wrapped text says which check failed and never
// contains the cookie or a key.
var (
	// ErrInvalid: not a cookie we issued under any key of the ring, or one
	// that is malformed, truncated, tampered with or from the future.
	ErrInvalid = errors.New("session: invalid sticky cookie")
	// ErrExpired: an authentic cookie past its MaxAge or Idle lifetime.
	ErrExpired = errors.New("session: sticky cookie expired")
	// ErrBackendID: Encode was given an empty or overlong backend id.
	ErrBackendID = errors.New("session: invalid backend id")
)

// The decode failures are built once: junk cookies are the common case under
// attack and should cost no allocation for the error.
var (
	errEmpty     = fmt.Errorf("%w: empty", ErrInvalid)
	errTooLong   = fmt.Errorf("%w: longer than %d bytes", ErrInvalid, maxValueLen)
	errAlphabet  = fmt.Errorf("%w: not base64url", ErrInvalid)
	errNoKey     = fmt.Errorf("%w: not signed by any key of the ring", ErrInvalid)
	errFuture    = fmt.Errorf("%w: last seen in the future", ErrInvalid)
	errMaxAge    = fmt.Errorf("%w: older than MaxAge", ErrExpired)
	errIdle      = fmt.Errorf("%w: idle longer than Idle", ErrExpired)
	errEncodeAge = fmt.Errorf("%w: issued more than MaxAge ago", ErrExpired)
)

// clockSkew is how far in the future a cookie's last-seen time may lie. Several
// instances share keys but not clocks; five minutes is Kerberos' default
// tolerance, generous for NTP-synced hosts, and bounds how much a skewed
// clock can stretch an Idle lifetime.
const clockSkew = 5 * 60

// maxUnix (9999-12-31T23:59:59Z) bounds decoded times so that arithmetic on
// them cannot overflow an int64.
const maxUnix = 253402300799

// maxValueLen bounds the cookie values Decode looks at. The longest value
// Encode makes (64-byte id, AES, times near maxUnix) is 220 bytes; the test
// TestMaxValueLen keeps this honest.
const maxValueLen = 256

// Config configures a Codec. The zero value of each field means its default.
// New copies what it needs; the caller may reuse or change cfg afterwards.
type Config struct {
	// Name is the cookie name, an RFC 6265 token. It is also bound into the
	// MAC, so a value cannot be replayed under another cookie's name.
	// Default DefaultCookieName.
	Name string
	// Keys is the key ring: Keys[0] signs (and encrypts) new cookies, every
	// key verifies. Rotate by prepending a new key and dropping the oldest
	// once MaxAge (or your patience) has passed. At least one key.
	Keys []Key
	// Plain turns encryption off: cookies are signed only, the backend id is
	// readable by the client, and the cookie is ~30 bytes shorter. Block keys
	// are then ignored. With encryption on (the default) Keys[0] must have a
	// Block key; older keys without one still verify plain cookies, so a
	// deployment can move from plain to encrypted without losing sessions.
	// Switching the other way invalidates encrypted cookies (one re-pick).
	Plain bool
	// MaxAge ends a session this long after it was first issued, however
	// busy. 0 means no limit. Resolution is one second.
	MaxAge time.Duration
	// Idle ends a session after this long without a request. 0 means no
	// limit. The cookie carries its last-seen time, which the caller keeps
	// fresh by re-issuing the cookie when NeedsRefresh says so.
	Idle time.Duration
	// Now returns the current time. Default time.Now; tests inject a clock.
	Now func() time.Time
}

func (c *Config) name() string {
	if c.Name == "" {
		return DefaultCookieName
	}
	return c.Name
}

func (c *Config) nowFunc() func() time.Time {
	if c.Now == nil {
		return time.Now
	}
	return c.Now
}

// Ticket is what a valid sticky cookie says.
type Ticket struct {
	// BackendID names the backend the session is pinned to. It is a hint:
	// the backend may have been removed or be down.
	BackendID string
	// Issued is when the session began; refreshing keeps it.
	Issued time.Time
	// LastSeen is when the cookie was last (re)issued.
	LastSeen time.Time
	// OldKey says a key other than the signing one verified it: after a
	// key rotation, re-issuing it (NeedsRefresh) moves an active session to
	// the new key before the old one is dropped.
	OldKey bool
}

// Codec encodes and decodes sticky cookies for one cookie name and key ring.
// It is immutable after New and safe for concurrent use.
type Codec struct {
	name    string
	signer  ringCodec   // ring[0]
	ring    []ringCodec // every key, signer first
	maxAge  int64       // seconds, 0 = no limit
	idle    int64       // seconds, 0 = no limit
	refresh int64       // seconds of last-seen age after which to re-issue
	now     func() time.Time
	// cookie is "name=", precomputed for SetCookie.
	cookie string
}

// ringCodec is one key of the ring as securecookie sees it. ctx is the name
// the MAC covers (it is not sent): the cookie name plus the mode and a
// fingerprint of the block key. A cookie made under the same hash key but in
// plain mode or with another block key would otherwise pass the MAC and
// decrypt to garbage that parses about once in a few hundred tries.
type ringCodec struct {
	sc  *securecookie.SecureCookie
	ctx string
}

// New validates cfg and builds a Codec, precomputing one securecookie codec
// per key.
func New(cfg Config) (*Codec, error) {
	name := cfg.name()
	if err := ValidCookieName(name); err != nil {
		return nil, err
	}
	if len(cfg.Keys) == 0 {
		return nil, errors.New("session: no keys")
	}
	if cfg.MaxAge < 0 || (cfg.MaxAge > 0 && cfg.MaxAge < time.Second) {
		return nil, fmt.Errorf("session: MaxAge %s: must be 0 (no limit) or at least 1s", cfg.MaxAge)
	}
	if cfg.Idle < 0 || (cfg.Idle > 0 && cfg.Idle < time.Second) {
		return nil, fmt.Errorf("session: Idle %s: must be 0 (no limit) or at least 1s", cfg.Idle)
	}
	if !cfg.Plain && cfg.Keys[0].Block == nil {
		return nil, errors.New("session: encryption is on but the signing key (the first) has no block key; add one or set Plain")
	}
	c := &Codec{
		name:   name,
		maxAge: int64(cfg.MaxAge / time.Second),
		idle:   int64(cfg.Idle / time.Second),
		now:    cfg.nowFunc(),
		cookie: name + "=",
	}
	// Re-issue once a quarter of Idle has passed: an active client then sees
	// at most four Set-Cookie headers per Idle period, and the idle timeout
	// actually enforced lies between 3/4 Idle and Idle of real inactivity.
	c.refresh = max(c.idle/4, 1)
	for i, k := range cfg.Keys {
		if err := k.validate(); err != nil {
			return nil, fmt.Errorf("session: key %d: %w", i+1, err)
		}
		c.ring = append(c.ring, newRingCodec(name, k, cfg.Plain))
	}
	c.signer = c.ring[0]
	return c, nil
}

func newRingCodec(name string, k Key, plain bool) ringCodec {
	// Copy the keys: securecookie keeps the slices, and the caller owns cfg.
	hash := append([]byte(nil), k.Hash...)
	var block []byte
	ctx := name + ":plain"
	if !plain && k.Block != nil {
		block = append([]byte(nil), k.Block...)
		sum := sha256.Sum256(block)
		ctx = name + ":aes:" + hex.EncodeToString(sum[:8])
	}
	sc := securecookie.New(hash, block).
		MaxAge(0). // lifetimes are ours: injectable clock, Idle
		MaxLength(maxValueLen).
		SetSerializer(securecookie.NopEncoder{})
	return ringCodec{sc: sc, ctx: ctx}
}

// Name is the cookie name.
func (c *Codec) Name() string { return c.name }

// Encode returns a cookie value pinning the session to backendID. issued is
// when the session began (the zero time means now); pass Ticket.Issued to
// refresh a session without extending its MaxAge. The last-seen time is now.
func (c *Codec) Encode(backendID string, issued time.Time) (string, error) {
	v, _, err := c.encode(backendID, issued)
	return v, err
}

// encode also returns the Max-Age (seconds) the browser should keep the
// cookie for, 0 for a session cookie.
func (c *Codec) encode(backendID string, issued time.Time) (string, int64, error) {
	if backendID == "" || len(backendID) > MaxBackendIDLen {
		return "", 0, fmt.Errorf("%w: %d bytes, want 1-%d", ErrBackendID, len(backendID), MaxBackendIDLen)
	}
	now := c.now().Unix()
	iss := now
	if !issued.IsZero() {
		iss = issued.Unix()
	}
	// A ticket minted by an instance whose clock runs slightly ahead has
	// Issued > now; keep Issued exactly and let last-seen equal it.
	seen := max(now, iss)
	if iss < 0 || iss > now+clockSkew || seen > maxUnix {
		return "", 0, fmt.Errorf("session: issue time %d (unix) outside [1970, now+%ds]", iss, clockSkew)
	}
	age := seen - iss
	if c.maxAge > 0 && age >= c.maxAge {
		return "", 0, errEncodeAge
	}
	var buf [1 + 2*binaryMaxVarint + MaxBackendIDLen]byte
	p := appendPayload(buf[:0], backendID, iss, seen)
	v, err := c.signer.sc.Encode(c.signer.ctx, p)
	if err != nil {
		return "", 0, fmt.Errorf("session: encode: %w", err)
	}
	// The browser drops the cookie when the server would refuse it anyway:
	// at the end of MaxAge, or Idle after this Set-Cookie.
	var maxAge int64
	if c.maxAge > 0 {
		maxAge = c.maxAge - age
	}
	if c.idle > 0 && (maxAge == 0 || c.idle < maxAge) {
		maxAge = c.idle
	}
	return v, maxAge, nil
}

// Decode checks a cookie value against every key of the ring and against
// the lifetimes. Errors wrap ErrInvalid or ErrExpired. Decode is safe on any
// input.
func (c *Codec) Decode(value string) (Ticket, error) {
	switch {
	case value == "":
		return Ticket{}, errEmpty
	case len(value) > maxValueLen:
		return Ticket{}, errTooLong
	case !isBase64URL(value):
		// Key-independent junk: reject before any HMAC is computed.
		return Ticket{}, errAlphabet
	}
	var (
		p   payload
		err error = errNoKey
	)
	// Our own loop rather than securecookie.DecodeMulti: it stops at the
	// first key whose MAC verifies and whose payload parses, and does not
	// build a MultiError on every foreign cookie.
	used := 0
	for i := range c.ring {
		rc := &c.ring[i]
		var b []byte
		if rc.sc.Decode(rc.ctx, value, &b) != nil {
			continue
		}
		if p, err = parsePayload(b); err == nil {
			used = i
			break
		}
	}
	if err != nil {
		return Ticket{}, err
	}
	if err := c.alive(p.issued, p.lastSeen); err != nil {
		return Ticket{}, err
	}
	return Ticket{
		BackendID: p.id,
		Issued:    time.Unix(p.issued, 0),
		LastSeen:  time.Unix(p.lastSeen, 0),
		OldKey:    used > 0, // ring[0] signs
	}, nil
}

// Alive checks the lifetimes of a ticket Decode accepted earlier, at the
// current time: a caller that caches decoded cookies (the MAC check is the
// expensive part) still ends sessions on time. Errors wrap ErrExpired.
func (c *Codec) Alive(t Ticket) error {
	return c.alive(t.Issued.Unix(), t.LastSeen.Unix())
}

func (c *Codec) alive(issued, lastSeen int64) error {
	now := c.now().Unix()
	switch {
	case lastSeen > now+clockSkew:
		return errFuture
	case c.maxAge > 0 && now-issued >= c.maxAge:
		return errMaxAge
	case c.idle > 0 && now-lastSeen >= c.idle:
		return errIdle
	}
	return nil
}

// NeedsRefresh reports whether the caller should re-issue the cookie of a
// ticket Decode accepted, with SetCookie(t.BackendID, t.Issued): to keep
// its last-seen time fresh under an Idle lifetime (once a quarter of Idle,
// at least a second, has passed since it was last issued), or to sign it
// with the current key when an older one verified it.
func (c *Codec) NeedsRefresh(t Ticket) bool {
	return t.OldKey || c.idle > 0 && c.now().Unix()-t.LastSeen.Unix() >= c.refresh
}

// SetCookie is Encode followed by FormatSetCookie: the Set-Cookie header
// value for the codec's cookie name, with a Max-Age that ends when the
// server would stop accepting the cookie (the rest of MaxAge, or Idle from
// now, whichever is sooner; none without lifetimes).
func (c *Codec) SetCookie(backendID string, issued time.Time) (string, error) {
	v, maxAge, err := c.encode(backendID, issued)
	if err != nil {
		return "", err
	}
	return formatSetCookie(c.cookie, v, maxAge), nil
}

// isBase64URL reports whether s uses only the padded base64url alphabet,
// the only bytes securecookie emits.
func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9',
			b == '-', b == '_', b == '=':
		default:
			return false
		}
	}
	return true
}
