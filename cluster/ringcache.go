package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The ring cache is the last keys read from Redis, in a 0600 JSON file in
// the state directory: a restart while Redis is away serves with them.

type ringCache struct {
	Keys []cachedKey `json:"keys"` // newest first
}

type cachedKey struct {
	ID string `json:"id"`
	RingKey
}

// loadRingCache reads the cache; none (no file, or path "") is no keys.
func loadRingCache(path string, size int) ([]RingKey, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ring cache: %w", err)
	}
	var c ringCache
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("ring cache %s: %w", path, err)
	}
	keys := make([]RingKey, 0, len(c.Keys))
	for _, k := range c.Keys {
		if len(k.Secret) != size || k.Published == 0 {
			return nil, fmt.Errorf("ring cache %s: a key of %d bytes, want %d", path, len(k.Secret), size)
		}
		k.RingKey.ID = k.ID
		keys = append(keys, k.RingKey)
	}
	return keys, nil
}

// saveRingCache writes keys to path (atomically: a temporary file renamed).
func saveRingCache(path string, keys []RingKey) error {
	if path == "" {
		return nil
	}
	c := ringCache{Keys: make([]cachedKey, len(keys))}
	for i, k := range keys {
		c.Keys[i] = cachedKey{ID: k.ID, RingKey: k}
	}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ring-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename, nothing to remove
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
