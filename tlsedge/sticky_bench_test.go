package tlsedge

import (
	"net/http"
	"testing"
	"time"

	"github.com/tlsedge/tlsedge/session"
)

// BenchmarkStickyCookie is the sticky cookie's work on a request that
// carries one, as readCookie does it (without the pool's map lookup of
// the backend): find and strip the cookie, then either the ticket cache
// and the lifetime check (a returning visitor, the common case) or a full
// decode (the first request after a restart or a cache eviction); and a
// request without the cookie. BenchmarkStickyNewSession is the
// Set-Cookie of a new session; session's BenchmarkEncode and
// BenchmarkDecode the codec alone.
//
//	go test -run '^$' -bench Sticky -benchmem ./tlsedge
func BenchmarkStickyCookie(b *testing.B) {
	codec, err := session.New(session.Config{Name: "s", Keys: []session.Key{session.GenerateKey()}, Idle: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	s := newStickyCodec("s", codec, []string{"web-0001"})
	value, err := codec.Encode("web-0001", time.Now())
	if err != nil {
		b.Fatal(err)
	}
	withCookie := "_ga=GA1.2.3; s=" + value + "; theme=dark"
	read := func(b *testing.B, line string, cached bool) {
		h := http.Header{}
		lines := make([]string, 1)
		b.ReportAllocs()
		for b.Loop() {
			lines[0] = line
			h["Cookie"] = lines[:1]
			v, found := stripCookie(h, s.prefix)
			if !found {
				continue
			}
			if cached {
				t, ok := s.cur.Load().seen.get(v)
				if !ok {
					if t, err = codec.Decode(v); err != nil {
						b.Fatal(err)
					}
					s.cur.Load().seen.put(v, t)
				}
				if err := codec.Alive(t); err != nil {
					b.Fatal(err)
				}
			} else if _, err := codec.Decode(v); err != nil {
				b.Fatal(err)
			}
			_ = fnv64a("203.0.113.9", fnv64a(v, fnvOffset))
		}
	}
	b.Run("returning/cached", func(b *testing.B) { read(b, withCookie, true) })
	b.Run("returning/decode", func(b *testing.B) { read(b, withCookie, false) })
	b.Run("no-cookie", func(b *testing.B) { read(b, "_ga=GA1.2.3; theme=dark", true) })
}
