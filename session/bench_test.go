package session

import (
	"testing"
	"time"

	"github.com/gorilla/securecookie"
)

func benchCodec(b *testing.B, plain bool, keys ...Key) *Codec {
	if len(keys) == 0 {
		keys = []Key{testKey(1)}
	}
	return newCodec(b, Config{Keys: keys, Plain: plain, MaxAge: 24 * time.Hour, Idle: time.Hour})
}

func BenchmarkEncode(b *testing.B) {
	for _, bc := range []struct {
		name  string
		plain bool
	}{{"aes", false}, {"plain", true}} {
		b.Run(bc.name, func(b *testing.B) {
			c := benchCodec(b, bc.plain)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Encode("web-0001", time.Time{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSetCookie(b *testing.B) {
	c := benchCodec(b, false)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.SetCookie("web-0001", time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFormatSetCookie(b *testing.B) {
	v := mustEncode(b, benchCodec(b, false), "web-0001", time.Time{})
	b.ReportAllocs()
	for b.Loop() {
		_ = FormatSetCookie(DefaultCookieName, v, time.Hour)
	}
}

func BenchmarkDecode(b *testing.B) {
	k1, k2, k3 := testKey(1), testKey(3), testKey(5)
	oldest := benchCodec(b, false, k3)
	foreign := benchCodec(b, false, testKey(7))
	for _, bc := range []struct {
		name  string
		c     *Codec
		value string
		ok    bool
	}{
		{"aes", benchCodec(b, false), "", true},
		{"plain", benchCodec(b, true), "", true},
		// A cookie from the oldest of three keys costs three HMACs.
		{"aes/ring3-oldest", benchCodec(b, false, k1, k2, k3), mustEncode(b, oldest, "web-0001", time.Time{}), true},
		// What a scanner sends: the charset check rejects it before any HMAC.
		{"junk", benchCodec(b, false), "not-a-cookie!", false},
		{"foreign/ring3", benchCodec(b, false, k1, k2, k3), mustEncode(b, foreign, "web-0001", time.Time{}), false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			v := bc.value
			if v == "" {
				v = mustEncode(b, bc.c, "web-0001", time.Time{})
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.c.Decode(v); (err == nil) != bc.ok {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeMultiRing3 is the securecookie.DecodeMulti equivalent of
// BenchmarkDecode/aes/ring3-oldest (decode plus payload parse, no lifetime
// checks), kept to justify Decode's own loop.
func BenchmarkDecodeMultiRing3(b *testing.B) {
	keys := []Key{testKey(1), testKey(3), testKey(5)}
	var pairs [][]byte
	for _, k := range keys {
		pairs = append(pairs, k.Hash, k.Block)
	}
	codecs := securecookie.CodecsFromPairs(pairs...)
	for _, c := range codecs {
		c.(*securecookie.SecureCookie).MaxAge(0).SetSerializer(securecookie.NopEncoder{})
	}
	const ctx = DefaultCookieName
	v, err := codecs[2].Encode(ctx, appendPayload(nil, "web-0001", t0.Unix(), t0.Unix()))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		var p []byte
		if err := securecookie.DecodeMulti(ctx, v, &p, codecs...); err != nil {
			b.Fatal(err)
		}
		if _, err := parsePayload(p); err != nil {
			b.Fatal(err)
		}
	}
}
