package session

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

// FuzzDecode feeds arbitrary strings to Decode (it must not panic, and must
// fail with one of the two error classes), and encodes arbitrary ids and
// ages (whatever Encode accepts must decode to the same ticket).
func FuzzDecode(f *testing.F) {
	clk := &clock{t0}
	k := testKey(1)
	enc := newCodec(f, Config{Keys: []Key{k}, MaxAge: 30 * 24 * time.Hour, Idle: 24 * time.Hour, Now: clk.now})
	plain := newCodec(f, Config{Keys: []Key{{Hash: k.Hash}}, Plain: true, Now: clk.now})
	ctx := enc.signer.ctx

	// Seeds: real cookies, cookies with payloads Encode never makes, junk.
	f.Add(mustEncode(f, enc, "web-1", time.Time{}), "web-1", int64(0))
	f.Add(mustEncode(f, plain, "web-1", time.Time{}), "b", int64(3600))
	f.Add(forge(f, k, ctx, []byte{payloadVersion, 0x80}), "x", int64(-1))
	f.Add(forge(f, k, ctx, appendPayload(nil, "future", t0.Unix()+86400, t0.Unix()+86400)), "x", int64(1e12))
	f.Add(forge(f, k, ctx, []byte{}), strings.Repeat("i", 65), int64(31*86400))
	f.Add("", "", int64(0))
	f.Add("====", "\x00", int64(86400))
	f.Add("MTcwMDAwMDAwMHxhYmN8", "ü", int64(1))

	f.Fuzz(func(t *testing.T, value, id string, age int64) {
		for _, c := range []*Codec{enc, plain} {
			tk, err := c.Decode(value)
			switch {
			case err == nil:
				if tk.BackendID == "" || len(tk.BackendID) > MaxBackendIDLen || tk.LastSeen.Before(tk.Issued) {
					t.Fatalf("Decode(%q) accepted an impossible ticket %+v", value, tk)
				}
			case !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrExpired):
				t.Fatalf("Decode(%q): error %v is neither ErrInvalid nor ErrExpired", value, err)
			}

			issued := t0.Add(-time.Duration(age%(1<<40)) * time.Second)
			v, err := c.Encode(id, issued)
			if err != nil {
				return
			}
			tk, err = c.Decode(v)
			if err != nil {
				t.Fatalf("Encode(%q, %v) = %q does not decode: %v", id, issued, v, err)
			}
			wantSeen := t0 // last seen is now, or Issued if that is ahead
			if issued.After(t0) {
				wantSeen = issued
			}
			if tk.BackendID != id || tk.Issued.Unix() != issued.Unix() || tk.LastSeen.Unix() != wantSeen.Unix() {
				t.Fatalf("Encode(%q, %v) decodes to %+v", id, issued, tk)
			}
		}
	})
}

// hexRun finds runs of hex digits long enough to be (part of) a key.
var hexRun = regexp.MustCompile(`[0-9a-fA-F]{8,}`)

// FuzzLoadKeyFile fuzzes the key file parser behind LoadKeyFile (the file
// I/O around it is not worth a temporary file per input). Whatever it
// accepts must be a valid ring that survives KeyLine; whatever it rejects
// must name the file and quote no key material.
func FuzzLoadKeyFile(f *testing.F) {
	f.Add([]byte("# keys\n" + hash32 + ":" + block32 + "\n" + strings.Repeat("44", 40) + "\n"))
	f.Add([]byte(hash32 + " : " + block16 + " # comment\r\n\n"))
	f.Add([]byte(hash32 + ":" + block16 + ":" + block16))
	f.Add([]byte(":" + block16))
	f.Add([]byte(strings.Repeat("ab", 31) + "\n" + hash32 + "\n" + hash32))
	f.Add([]byte("\xff\xfe\x00#\n:"))

	f.Fuzz(func(t *testing.T, data []byte) {
		const path = "/run/keys"
		keys, err := parseKeyFile(path, data)
		if err != nil {
			msg := err.Error()
			var kfe *KeyFileError
			if !errors.As(err, &kfe) || !strings.HasPrefix(msg, "session: key file "+path) {
				t.Fatalf("error %q is not a *KeyFileError naming the file", msg)
			}
			for _, run := range hexRun.FindAllString(string(data), -1) {
				if strings.Contains(kfe.Problem, run) {
					t.Fatalf("error %q quotes key material %q", msg, run)
				}
			}
			return
		}
		if len(keys) == 0 {
			t.Fatal("no error and no keys")
		}
		var b strings.Builder
		for _, k := range keys {
			if err := k.validate(); err != nil {
				t.Fatalf("accepted invalid key: %v", err)
			}
			b.WriteString(KeyLine(k) + "\n")
		}
		back, err := parseKeyFile(path, []byte(b.String()))
		if err != nil || len(back) != len(keys) {
			t.Fatalf("accepted keys do not survive KeyLine: %v", err)
		}
		for i := range keys {
			if KeyLine(back[i]) != KeyLine(keys[i]) {
				t.Fatalf("key %d changed through KeyLine", i+1)
			}
		}
		if _, err := New(Config{Keys: keys, Plain: keys[0].Block == nil}); err != nil {
			t.Fatalf("parsed keys rejected by New: %v", err)
		}
	})
}
