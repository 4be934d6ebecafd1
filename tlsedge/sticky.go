package tlsedge

import (
	"errors"
	"hash/maphash"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tlsedge/tlsedge/session"

	"github.com/tlsedge/tlsedge/httpsyntax"
)

// stickyCodec reads and writes one app's sticky cookie around the proxy.
// Its keys can change while it serves (a cluster's key rotation): the
// codec and the caches that depend on the keys are one stickyState behind
// an atomic pointer, loaded once per use.
type stickyCodec struct {
	name   string
	prefix string // name + "=", precomputed for the header scan
	ids    []string
	cur    atomic.Pointer[stickyState]
	// rekey builds the app's codec with other keys (nil in tests that
	// never change keys).
	rekey func(keys []session.Key) (*session.Codec, error)
}

// stickyState is what depends on the keys.
type stickyState struct {
	codec *session.Codec
	// fresh holds, per backend id, the last new-session cookie issued and
	// the second it was issued in. A new session's cookie says only
	// "backend X, issued at second T", so every new session pinned to X
	// within one second can share one encoding: encryption and MAC run at
	// most once per backend per second instead of once per new visitor.
	// The map is built once; only the pointers change.
	fresh map[string]*atomic.Pointer[freshCookie]
	// seen caches decoded cookies: a returning browser sends the same
	// value on every request, and verifying it (HMAC, AES, base64) is the
	// expensive part. Lifetimes are still checked on every request.
	seen ticketCache
}

// ticketCache maps recently verified cookie values to their tickets: a
// fixed array of slots picked by a keyed hash, each swapped atomically, so
// lookups take no lock and memory is bounded whatever clients send. Only
// values that verified are ever stored, so a forged value can never hit.
type ticketCache struct {
	seed  maphash.Seed
	slots [ticketCacheSlots]atomic.Pointer[cachedTicket]
}

const ticketCacheSlots = 1024

type cachedTicket struct {
	value  string
	ticket session.Ticket
}

func (c *ticketCache) get(v string) (session.Ticket, bool) {
	e := c.slots[maphash.String(c.seed, v)%ticketCacheSlots].Load()
	if e == nil || e.value != v {
		return session.Ticket{}, false
	}
	return e.ticket, true
}

// put stores a copy of v: the caller's string may be a slice of a whole
// request head, which the cache must not keep alive.
func (c *ticketCache) put(v string, t session.Ticket) {
	c.slots[maphash.String(c.seed, v)%ticketCacheSlots].Store(&cachedTicket{value: strings.Clone(v), ticket: t})
}

type freshCookie struct {
	second int64
	header []string // one Set-Cookie value; len == cap, so an append copies
}

func newStickyCodec(name string, c *session.Codec, backendIDs []string) *stickyCodec {
	s := &stickyCodec{name: name, prefix: name + "=", ids: backendIDs}
	s.cur.Store(s.newState(c))
	return s
}

func (s *stickyCodec) newState(c *session.Codec) *stickyState {
	st := &stickyState{codec: c, fresh: make(map[string]*atomic.Pointer[freshCookie], len(s.ids))}
	st.seen.seed = maphash.MakeSeed()
	for _, id := range s.ids {
		st.fresh[id] = new(atomic.Pointer[freshCookie])
	}
	return st
}

// setKeys makes keys (the signer first) the codec's: cookies are signed
// with the first from now on and verified with all of them. The caches
// start empty: what they hold was made or verified with the old keys.
func (s *stickyCodec) setKeys(keys []session.Key) error {
	if s.rekey == nil {
		return errors.New("sticky: this codec cannot change keys")
	}
	c, err := s.rekey(keys)
	if err != nil {
		return err
	}
	s.cur.Store(s.newState(c))
	return nil
}

// newSessionCookie returns the Set-Cookie value of a session beginning now
// on backend id, shared with other sessions begun on it in the same second.
func (s *stickyState) newSessionCookie(id string, now time.Time) ([]string, error) {
	slot := s.fresh[id]
	sec := now.Unix()
	if slot != nil {
		if c := slot.Load(); c != nil && c.second == sec {
			return c.header, nil
		}
	}
	v, err := s.codec.SetCookie(id, now)
	if err != nil {
		return nil, err
	}
	header := []string{v}
	if slot != nil {
		slot.Store(&freshCookie{second: sec, header: header})
	}
	return header, nil
}

// readCookie finds the sticky cookie, decodes it into a backend hint, and
// removes it from the request: the backend has no use for it (HAProxy's
// "indirect"), and a backend that echoed cookies must not leak it. An
// invalid cookie is ignored without a word to the user: the request is
// balanced and a fresh cookie set.
func (x *exchange) readCookie(r *http.Request) {
	value, found := stripCookie(r.Header, x.app.sticky.prefix)
	x.sticky = stickyMiss
	if !found {
		return
	}
	s := x.app.sticky.cur.Load()
	t, ok := s.seen.get(value)
	if ok {
		if s.codec.Alive(t) != nil {
			return
		}
	} else {
		var err error
		if t, err = s.codec.Decode(value); err != nil {
			return
		}
		s.seen.put(value, t)
	}
	x.ticket, x.hasTicket = t, true
	// Sessions begun on one backend within one second share a cookie
	// (newSessionCookie encodes once per second), so the cookie alone
	// would count them once; with the client's address they count per
	// client. A client that changes address counts twice: a drain figure
	// that errs high, never low.
	x.stickyKey = fnv64a(clientIP(r), fnv64a(value, fnvOffset))
	x.target.Prefer = x.app.pool.Backend(t.BackendID)
}

// fnvOffset starts an FNV-1a hash.
const fnvOffset = 14695981039346656037

// fnv64a continues the FNV-1a hash h over s: the key by which a backend
// counts the distinct sessions pinned to it.
func fnv64a(s string, h uint64) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// setCookie runs when the response headers are about to be written.
func (c *stickyCodec) setCookie(x *exchange) {
	chosen := x.target.Chosen
	if chosen == nil {
		return // tlsedge answered itself (502): nothing to pin to
	}
	s := c.cur.Load()
	var v []string
	var err error
	switch {
	case x.hasTicket && chosen.ID() == x.ticket.BackendID:
		x.sticky = stickyHit
		chosen.NoteSticky(x.stickyKey, x.start) // for the drain figures of the status page
		if !s.codec.NeedsRefresh(x.ticket) {
			return
		}
		// A refresh keeps the session's age.
		var one string
		one, err = s.codec.SetCookie(chosen.ID(), x.ticket.Issued)
		v = []string{one}
		if errors.Is(err, session.ErrExpired) {
			// The session's max age ran out during this request: start a new one.
			v, err = s.newSessionCookie(chosen.ID(), x.start)
		}
	default:
		if x.hasTicket {
			x.sticky = stickyRepin
		}
		v, err = s.newSessionCookie(chosen.ID(), x.start)
	}
	if err != nil {
		x.app.log.WithError(err).Error("sticky cookie not set")
		return
	}
	if rf := httpsyntax.RawFieldsOf(x.w, false); rf != nil {
		rf.Add("Set-Cookie", v) // after the backend's, as below
		return
	}
	h := x.w.Header()
	if old := h["Set-Cookie"]; len(old) > 0 {
		h["Set-Cookie"] = append(old, v...) // the backend's cookies stay
	} else {
		h["Set-Cookie"] = v // shared, but len == cap: nobody appends in place
	}
}

// stripCookie returns the value of the first cookie named by prefix
// ("name=") in the request's Cookie headers and removes every cookie of
// that name, keeping the others as they were. It allocates only when the
// cookie is present.
func stripCookie(h http.Header, prefix string) (value string, found bool) {
	lines := h["Cookie"]
	for li, line := range lines {
		if !strings.Contains(line, prefix) {
			continue
		}
		var kept []string
		for part := range strings.SplitSeq(line, ";") {
			p := strings.TrimSpace(part)
			if v, ok := strings.CutPrefix(p, prefix); ok {
				if !found {
					value, found = strings.Trim(v, `"`), true
				}
				continue
			}
			if p != "" {
				kept = append(kept, p)
			}
		}
		lines[li] = strings.Join(kept, "; ")
	}
	if found {
		// Drop lines emptied by the removal.
		out := lines[:0]
		for _, l := range lines {
			if l != "" {
				out = append(out, l)
			}
		}
		if len(out) == 0 {
			delete(h, "Cookie")
		} else {
			h["Cookie"] = out
		}
	}
	return value, found
}
