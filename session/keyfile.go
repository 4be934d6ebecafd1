package session

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// Key is one key of the ring. Hash authenticates (HMAC-SHA256, at least 32
// bytes); Block, when not nil, encrypts (AES, 16, 24 or 32 bytes). Keys are
// secrets: String and GoString print only their lengths, so a Config that
// lands in a log or a status page does not leak them.
type Key struct {
	Hash, Block []byte
}

// MinHashKeyLen is the shortest hash key accepted: HMAC-SHA256 gains nothing
// from more than 64 bytes and is weakened by less than its output size.
const MinHashKeyLen = 32

// String describes k without revealing it.
func (k Key) String() string {
	return "session.Key{Hash: " + strconv.Itoa(len(k.Hash)) + " bytes, Block: " + strconv.Itoa(len(k.Block)) + " bytes}"
}

// GoString keeps %#v from printing the key bytes.
func (k Key) GoString() string { return k.String() }

func (k Key) validate() error {
	if len(k.Hash) < MinHashKeyLen {
		return fmt.Errorf("hash key is %d bytes, need at least %d", len(k.Hash), MinHashKeyLen)
	}
	switch len(k.Block) {
	case 16, 24, 32:
	default:
		if k.Block != nil {
			return fmt.Errorf("block key is %d bytes, need 16, 24 or 32 (AES-128/192/256)", len(k.Block))
		}
	}
	return nil
}

// GenerateKey returns a fresh random key: a 32-byte hash key and a 32-byte
// (AES-256) block key. crypto/rand cannot fail on supported systems (it
// crashes the program instead), hence no error.
func GenerateKey() Key {
	b := make([]byte, 64)
	_, _ = rand.Read(b)
	return Key{Hash: b[:32:32], Block: b[32:]}
}

// KeyLine formats k as a line of a key file, without the newline. The
// result is the secret itself: write it to a 0600 file, never to a log.
func KeyLine(k Key) string {
	s := hex.EncodeToString(k.Hash)
	if k.Block != nil {
		s += ":" + hex.EncodeToString(k.Block)
	}
	return s
}

// KeyFileError is a problem in a key file. Problem never quotes the key
// material, only what is wrong with it.
type KeyFileError struct {
	Path    string
	Line    int // 1-based; 0 when the problem is the file as a whole
	Problem string
}

func (e *KeyFileError) Error() string {
	if e.Line == 0 {
		return "session: key file " + e.Path + ": " + e.Problem
	}
	return "session: key file " + e.Path + " line " + strconv.Itoa(e.Line) + ": " + e.Problem
}

// maxKeyFileSize bounds what LoadKeyFile reads: a key file of thousands of
// keys is a mistake (the wrong path), and every verify key costs an HMAC on
// each foreign cookie.
const maxKeyFileSize = 64 << 10

// keyFileHeader starts a generated key file and documents the format for
// whoever opens it.
const keyFileHeader = `# tlsedge sticky-cookie keys. Keep this file secret (mode 0600) and identical
# on every instance serving the same apps, or sessions stop being sticky.
#
# One key per line: HASH-HEX[:BLOCK-HEX]. The hash key (at least 32 bytes)
# signs with HMAC-SHA256; the optional block key (16, 24 or 32 bytes)
# encrypts with AES. The first key signs new cookies; every key verifies.
# To rotate: add a new first line (e.g. "$(openssl rand -hex 32):$(openssl
# rand -hex 32)") on every instance, reload, and delete the last line once
# the sticky max age has passed. '#' starts a comment.
`

// LoadKeyFile reads a key file: one key per line, "HASH-HEX[:BLOCK-HEX]",
// the first key signing and every key verifying. Blank lines and everything
// from '#' to the end of a line are ignored; surrounding space and CRLF line
// ends are fine. Errors are *KeyFileError naming the file and line, or
// wrap the I/O error.
func LoadKeyFile(path string) ([]Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("session: key file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("session: key file: %w", err)
	}
	if len(data) > maxKeyFileSize {
		return nil, &KeyFileError{Path: path, Problem: "larger than " + strconv.Itoa(maxKeyFileSize) + " bytes; is this the right file?"}
	}
	return parseKeyFile(path, data)
}

// LoadOrCreateKeyFile loads the key file at path, first creating it with
// one generated key if it does not exist (directory 0700, file 0600), so
// that a restart keeps every session and a second instance pointed at the
// same file agrees with the first. Creation is atomic: the file is written
// under a temporary name and hard-linked into place, so a concurrent
// starter either wins or loads the winner's key, and no reader sees a
// half-written file.
func LoadOrCreateKeyFile(path string) ([]Key, error) {
	keys, err := LoadKeyFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return keys, err
	}
	if err := createKeyFile(path); err != nil {
		return nil, err
	}
	return LoadKeyFile(path)
}

func createKeyFile(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("session: create key file: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".tlsedge-keys-*") // mode 0600
	if err != nil {
		return fmt.Errorf("session: create key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	content := keyFileHeader + KeyLine(GenerateKey()) + "\n"
	_, err = tmp.WriteString(content)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("session: create key file: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("session: create key file: %w", err)
	}
	// Make the new name durable, or a power cut could bring back a state
	// with no key file and the next start would invalidate every session.
	// Some systems cannot sync a directory; the file itself is synced.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// parseKeyFile parses the content of a key file; path is only for errors.
func parseKeyFile(path string, data []byte) ([]Key, error) {
	var keys []Key
	seen := make(map[string]int) // hash key -> line, to reject duplicates
	for n := 1; len(data) > 0; n++ {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte("\n"))
		line, _, _ = bytes.Cut(line, []byte("#"))
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		k, problem := parseKeyLine(line)
		if problem != "" {
			return nil, &KeyFileError{Path: path, Line: n, Problem: problem}
		}
		if prev, dup := seen[string(k.Hash)]; dup {
			return nil, &KeyFileError{Path: path, Line: n, Problem: "same hash key as line " + strconv.Itoa(prev)}
		}
		seen[string(k.Hash)] = n
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, &KeyFileError{Path: path, Problem: "no keys (want lines of HASH-HEX[:BLOCK-HEX])"}
	}
	return keys, nil
}

// parseKeyLine parses "HASH-HEX[:BLOCK-HEX]". It reports problems as text
// that describes the shape of the input, never its content.
func parseKeyLine(line []byte) (Key, string) {
	hashHex, blockHex, hasBlock := bytes.Cut(line, []byte(":"))
	if bytes.IndexByte(blockHex, ':') >= 0 {
		return Key{}, "more than one ':' (want HASH-HEX[:BLOCK-HEX])"
	}
	hashHex, blockHex = bytes.TrimSpace(hashHex), bytes.TrimSpace(blockHex)
	var k Key
	var problem string
	if k.Hash, problem = decodeHex("hash key", hashHex); problem != "" {
		return Key{}, problem
	}
	if hasBlock {
		if k.Block, problem = decodeHex("block key", blockHex); problem != "" {
			return Key{}, problem
		}
	}
	if err := k.validate(); err != nil {
		return Key{}, err.Error()
	}
	return k, ""
}

func decodeHex(what string, s []byte) ([]byte, string) {
	if len(s) == 0 {
		return nil, "missing " + what
	}
	for i, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			// The column, not the byte: a typo inside a secret is still
			// part of the secret.
			return nil, what + " is not hex (bad character at position " + strconv.Itoa(i+1) + ")"
		}
	}
	if len(s)%2 != 0 {
		return nil, what + " has an odd number of hex digits (" + strconv.Itoa(len(s)) + ")"
	}
	b := make([]byte, len(s)/2)
	if _, err := hex.Decode(b, s); err != nil {
		return nil, what + " is not hex"
	}
	return b, ""
}
