package session

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	hash32  = strings.Repeat("11", 32)
	block16 = strings.Repeat("22", 16)
	block32 = strings.Repeat("33", 32)
)

func TestParseKeyFile(t *testing.T) {
	content := "# sticky keys\n\n  " + strings.ToUpper(hash32) + ":" + block32 + "  # newest, signs\r\n" +
		strings.Repeat("44", 64) + "\n" + // sign-only, 64-byte hash
		strings.Repeat("55", 32) + " : " + block16 // no final newline
	keys, err := parseKeyFile("k", []byte(content))
	if err != nil {
		t.Fatal(err)
	}
	want := []Key{
		{Hash: bytes.Repeat([]byte{0x11}, 32), Block: bytes.Repeat([]byte{0x33}, 32)},
		{Hash: bytes.Repeat([]byte{0x44}, 64)},
		{Hash: bytes.Repeat([]byte{0x55}, 32), Block: bytes.Repeat([]byte{0x22}, 16)},
	}
	if len(keys) != len(want) {
		t.Fatalf("got %d keys, want %d", len(keys), len(want))
	}
	for i := range want {
		if !bytes.Equal(keys[i].Hash, want[i].Hash) || !bytes.Equal(keys[i].Block, want[i].Block) || (keys[i].Block == nil) != (want[i].Block == nil) {
			t.Errorf("key %d: got %v, want %v", i+1, keys[i], want[i])
		}
	}
}

func TestParseKeyFileErrors(t *testing.T) {
	secret := strings.Repeat("ab", 16) // key material that must not appear in errors
	tests := []struct {
		name    string
		content string
		line    int
		problem string
	}{
		{"empty", "", 0, "no keys"},
		{"only comments", "# nothing\n\n   # here\n", 0, "no keys"},
		{"short hash", "# c\n" + strings.Repeat("ab", 31), 2, "hash key is 31 bytes, need at least 32"},
		{"not hex", hash32 + "\n" + secret[:10] + "zz" + secret[12:] + strings.Repeat("ab", 16), 2, "hash key is not hex (bad character at position 11)"},
		{"odd digits", "\n\n" + hash32 + "1", 3, "hash key has an odd number of hex digits (65)"},
		{"bad block size", hash32 + ":" + strings.Repeat("ab", 20), 1, "block key is 20 bytes, need 16, 24 or 32"},
		{"block not hex", hash32 + ":" + strings.Repeat("ag", 16), 1, "block key is not hex (bad character at position 2)"},
		{"empty block", hash32 + ":", 1, "missing block key"},
		{"missing hash", ":" + block16, 1, "missing hash key"},
		{"two colons", hash32 + ":" + block16 + ":" + block16, 1, "more than one ':'"},
		{"duplicate", hash32 + "\n# again\n" + hash32 + ":" + block16, 3, "same hash key as line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := parseKeyFile("/etc/tlsedge/sticky.keys", []byte(tt.content))
			var kfe *KeyFileError
			if !errors.As(err, &kfe) {
				t.Fatalf("got %v, %v; want a *KeyFileError", keys, err)
			}
			if kfe.Line != tt.line || !strings.Contains(kfe.Problem, tt.problem) {
				t.Fatalf("got line %d %q, want line %d %q", kfe.Line, kfe.Problem, tt.line, tt.problem)
			}
			msg := err.Error()
			if !strings.Contains(msg, "/etc/tlsedge/sticky.keys") {
				t.Fatalf("error %q does not name the file", msg)
			}
			if strings.Contains(msg, secret[:8]) || strings.Contains(msg, hash32[:8]) || strings.Contains(msg, block16[:8]) {
				t.Fatalf("error %q echoes key material", msg)
			}
		})
	}
}

func TestLoadKeyFileErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadKeyFile(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("#\n"), maxKeyFileSize), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("oversized file: %v", err)
	}
}

func TestLoadOrCreateKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "sticky.keys")
	first, err := LoadOrCreateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 1 || len(first[0].Hash) != 32 || len(first[0].Block) != 32 {
		t.Fatalf("generated %v, want one key of 32+32 bytes", first)
	}
	for p, want := range map[string]fs.FileMode{path: 0o600, filepath.Dir(path): 0o700 | fs.ModeDir} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, st.Mode(), want)
		}
	}
	// No temporary files are left behind.
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("state dir holds %d entries, want 1", len(ents))
	}

	// A restart, or a second instance on the same file, gets the same key,
	// so the two codecs agree on every cookie.
	second, err := LoadOrCreateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t0}
	a := newCodec(t, Config{Keys: first, Now: clk.now})
	b := newCodec(t, Config{Keys: second, Now: clk.now})
	for _, pair := range [][2]*Codec{{a, b}, {b, a}} {
		tk, err := pair[1].Decode(mustEncode(t, pair[0], "web-1", time.Time{}))
		if err != nil || tk.BackendID != "web-1" {
			t.Fatalf("codecs from the same key file disagree: %+v, %v", tk, err)
		}
	}

	// A broken existing file is reported, never replaced.
	if err := os.WriteFile(path, []byte("# emptied by mistake\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKeyFile(path); err == nil || !strings.Contains(err.Error(), "no keys") {
		t.Fatalf("broken key file: %v", err)
	}
}

// TestLoadOrCreateKeyFileRace starts several instances on one new file at
// once: they must all end up with the same key.
func TestLoadOrCreateKeyFileRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sticky.keys")
	const n = 8
	got := make([][]Key, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { got[i], errs[i] = LoadOrCreateKeyFile(path) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("instance %d: %v", i, errs[i])
		}
		if KeyLine(got[i][0]) != KeyLine(got[0][0]) {
			t.Fatalf("instance %d got another key than instance 0", i)
		}
	}
}

func TestKeyLineRoundTrip(t *testing.T) {
	keys := []Key{GenerateKey(), {Hash: GenerateKey().Hash}}
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(KeyLine(k) + "\n")
	}
	back, err := parseKeyFile("k", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		if KeyLine(back[i]) != KeyLine(keys[i]) {
			t.Fatalf("key %d does not survive KeyLine and parsing", i+1)
		}
	}
}
