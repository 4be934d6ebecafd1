package redisstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"
)

// storeScript writes one file: KEYS[1] its hash, KEYS[2] the index; ARGV[1]
// the clean key, ARGV[2] the value. It keeps the tree a tree, as a file
// system would: no file below a file (reply {storeUnderFile, the file}) and
// no file where a directory is ({storeOverDirectory, ""}). Success is
// {storeOK, ""}. The modification time is the server's clock, one clock for
// every instance sharing the store.
var storeScript = redis.NewScript(`
local key = ARGV[1]
local slash = string.find(key, "/", 1, true)
while slash do
	local parent = string.sub(key, 1, slash - 1)
	if redis.call("ZSCORE", KEYS[2], parent) then
		return {1, parent}
	end
	slash = string.find(key, "/", slash + 1, true)
end
if #redis.call("ZRANGE", KEYS[2], "[" .. key .. "/", "(" .. key .. "0", "BYLEX", "LIMIT", 0, 1) > 0 then
	return {2, ""}
end
local now = redis.call("TIME")
local modified = now[1] .. string.format("%06d", tonumber(now[2]))
redis.call("HSET", KEYS[1], "value", ARGV[2], "modified", modified)
redis.call("ZADD", KEYS[2], 0, key)
return {0, ""}
`)

// deleteScript removes a file or a directory with everything under it:
// KEYS[1] the index; ARGV[1] the file hash prefix, ARGV[2] the clean key
// (never the root). It replies the number of files removed.
var deleteScript = redis.NewScript(`
local files, key = ARGV[1], ARGV[2]
local lo, hi = "[" .. key .. "/", "(" .. key .. "0"
local removed = 0
for _, k in ipairs(redis.call("ZRANGE", KEYS[1], lo, hi, "BYLEX")) do
	redis.call("DEL", files .. k)
	removed = removed + 1
end
redis.call("ZREMRANGEBYLEX", KEYS[1], lo, hi)
if redis.call("ZREM", KEYS[1], key) == 1 then
	redis.call("DEL", files .. key)
	removed = removed + 1
end
return removed
`)

// statScript describes a key: KEYS[1] the index; ARGV[1] the file hash
// prefix, ARGV[2] the clean key. Replies {kind, size, modified}: kind as in
// the Go constants missing, file, directory.
//
// A directory's modification time is that of the newest file under it.
// certmagic compares it to pick the most recently used ACME account (one
// directory per account email); FileStorage gives the directory's mtime,
// which changes when a file in it is written. Finding the newest file reads
// every file under the directory, which is cheap for an account directory
// (two files) and the reason not to Stat a large one.
var statScript = redis.NewScript(`
local files, key = ARGV[1], ARGV[2]
if redis.call("ZSCORE", KEYS[1], key) then
	local h = files .. key
	return {1, redis.call("HSTRLEN", h, "value"), redis.call("HGET", h, "modified") or "0"}
end
local lo, hi = "[" .. key .. "/", "(" .. key .. "0"
if key == "" then lo, hi = "-", "+" end
local under = redis.call("ZRANGE", KEYS[1], lo, hi, "BYLEX")
if #under == 0 and key ~= "" then
	return {0, 0, "0"}
end
local newest, newestText = -1, "0"
for _, k in ipairs(under) do
	local m = redis.call("HGET", files .. k, "modified")
	if m and tonumber(m) > newest then
		newest, newestText = tonumber(m), m
	end
end
return {2, 0, newestText}
`)

// storeScript's reply codes.
const (
	storeOK            = 0
	storeUnderFile     = 1
	storeOverDirectory = 2
)

// kind is what a key names; statScript replies it as a number.
type kind int64

const (
	missing   kind = 0
	file      kind = 1
	directory kind = 2
)

// errDeleteRoot: Delete("") would delete every certificate and account of
// every instance; FileStorage would do it, we refuse.
var errDeleteRoot = errors.New("refusing to delete the root (every stored key)")

// Store puts value at key, creating or replacing it.
func (s *Storage) Store(ctx context.Context, key string, value []byte) error {
	k := cleanKey(key)
	if k == "" {
		return s.fail("store", key, ErrIsDirectory) // the root
	}
	reply, err := storeScript.Run(ctx, s.rdb, []string{s.fileKey(k), s.indexKey()}, k, value).Slice()
	if err != nil {
		return s.fail("store", key, err)
	}
	code, detail, err := codeAndText(reply)
	if err != nil {
		return s.fail("store", key, err)
	}
	switch code {
	case storeOK:
		return nil
	case storeUnderFile:
		return s.fail("store", key, fmt.Errorf("%w: %q", ErrNotDirectory, detail))
	case storeOverDirectory:
		return s.fail("store", key, ErrIsDirectory)
	}
	return s.fail("store", key, fmt.Errorf("unexpected script reply %v", reply))
}

// Load returns the value at key. A key that was never stored or has been
// deleted gives an error that is fs.ErrNotExist; any other error (Redis
// unreachable, say) is not, so certmagic does not take an outage for a
// missing certificate.
func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	k := cleanKey(key)
	value, err := s.rdb.HGet(ctx, s.fileKey(k), "value").Bytes()
	if err == nil {
		return value, nil
	}
	if !errors.Is(err, redis.Nil) {
		return nil, s.fail("load", key, err)
	}
	kd, err := s.kindOf(ctx, k)
	switch {
	case err != nil:
		return nil, s.fail("load", key, err)
	case kd == directory:
		return nil, s.fail("load", key, ErrIsDirectory)
	}
	return nil, s.fail("load", key, fs.ErrNotExist)
}

// Delete removes key; if key is a directory, everything under it. Deleting
// what does not exist is not an error. The root cannot be deleted.
func (s *Storage) Delete(ctx context.Context, key string) error {
	k := cleanKey(key)
	if k == "" {
		return s.fail("delete", key, errDeleteRoot)
	}
	if err := deleteScript.Run(ctx, s.rdb, []string{s.indexKey()}, s.filePrefix(), k).Err(); err != nil {
		return s.fail("delete", key, err)
	}
	return nil
}

// Exists reports whether key is a file or a directory; false also when
// Redis could not be asked.
func (s *Storage) Exists(ctx context.Context, key string) bool {
	kd, err := s.kindOf(ctx, cleanKey(key))
	return err == nil && kd != missing
}

// List returns the keys under dir: its direct children (files and
// directories) or, if recursive, every file and directory below it, in the
// order FileStorage returns them. A missing dir is fs.ErrNotExist; a file
// has no children. The whole directory's file keys are read from the index,
// so a non-recursive List of a directory costs as much as a recursive one.
func (s *Storage) List(ctx context.Context, dir string, recursive bool) ([]string, error) {
	k := cleanKey(dir)
	lo, hi := underRange(k)
	files, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: s.indexKey(), Start: lo, Stop: hi, ByLex: true}).Result()
	if err != nil {
		return nil, s.fail("list", dir, err)
	}
	if len(files) == 0 && k != "" {
		kd, err := s.kindOf(ctx, k)
		switch {
		case err != nil:
			return nil, s.fail("list", dir, err)
		case kd == missing:
			return nil, s.fail("list", dir, fs.ErrNotExist)
		}
	}
	return listing(dir, k, files, recursive), nil
}

// Stat describes key. Key in the result is key as given; Size is the
// value's length for a file and 0 for a directory; Modified is when the
// file (for a directory: the newest file under it) was last stored, by the
// Redis server's clock.
func (s *Storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	reply, err := statScript.Run(ctx, s.rdb, []string{s.indexKey()}, s.filePrefix(), cleanKey(key)).Slice()
	if err != nil {
		return certmagic.KeyInfo{}, s.fail("stat", key, err)
	}
	code, size, micros, ok := kindSizeTime(reply)
	if !ok {
		return certmagic.KeyInfo{}, s.fail("stat", key, fmt.Errorf("unexpected script reply %v", reply))
	}
	modified, err := parseMicros(micros)
	if err != nil {
		return certmagic.KeyInfo{}, s.fail("stat", key, err)
	}
	switch kind(code) {
	case missing:
		return certmagic.KeyInfo{}, s.fail("stat", key, fs.ErrNotExist)
	case file:
		return certmagic.KeyInfo{Key: key, Modified: modified, Size: size, IsTerminal: true}, nil
	case directory:
		return certmagic.KeyInfo{Key: key, Modified: modified, IsTerminal: false}, nil
	}
	return certmagic.KeyInfo{}, s.fail("stat", key, fmt.Errorf("unexpected script reply %v", reply))
}

// kindOf tells whether the clean key k is a file, a directory or neither,
// reading the index in one transaction.
func (s *Storage) kindOf(ctx context.Context, k string) (kind, error) {
	if k == "" {
		return directory, nil // the root always exists
	}
	var isFile *redis.FloatCmd
	var under *redis.StringSliceCmd
	lo, hi := underRange(k)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		isFile = p.ZScore(ctx, s.indexKey(), k)
		under = p.ZRangeArgs(ctx, redis.ZRangeArgs{Key: s.indexKey(), Start: lo, Stop: hi, ByLex: true, Count: 1})
		return nil
	})
	// ZSCORE of a non-member is redis.Nil, which the pipeline returns as
	// its error; that answer is "not a file", not a failure.
	if err != nil && !errors.Is(err, redis.Nil) {
		return missing, err
	}
	switch {
	case isFile.Err() == nil:
		return file, nil
	case len(under.Val()) > 0:
		return directory, nil
	}
	return missing, nil
}

// codeAndText unpacks a {code, text} script reply.
func codeAndText(reply []any) (int64, string, error) {
	if len(reply) == 2 {
		code, ok1 := reply[0].(int64)
		text, ok2 := reply[1].(string)
		if ok1 && ok2 {
			return code, text, nil
		}
	}
	return 0, "", fmt.Errorf("unexpected script reply %v", reply)
}

// kindSizeTime unpacks statScript's {kind, size, modified} reply.
func kindSizeTime(reply []any) (code, size int64, micros string, ok bool) {
	if len(reply) != 3 {
		return 0, 0, "", false
	}
	code, ok1 := reply[0].(int64)
	size, ok2 := reply[1].(int64)
	micros, ok3 := reply[2].(string)
	return code, size, micros, ok1 && ok2 && ok3
}

// parseMicros reads a modification time written by storeScript; "0" (no
// files) is the zero time.
func parseMicros(text string) (time.Time, error) {
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("bad modification time %q in Redis: %w", text, err)
	}
	if n == 0 {
		return time.Time{}, nil
	}
	return time.UnixMicro(n), nil
}
