package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"go.yaml.in/yaml/v3"
)

// Load reads a YAML configuration file. Unknown fields are errors, so a
// typo never silently falls back to a default.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes YAML configuration bytes.
func Parse(data []byte) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return &c, nil // an empty file is an empty configuration
		}
		return nil, err
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document; tlsedge reads one")
	}
	return &c, nil
}

// Marshal prints the configuration as YAML, the form `tlsedge check` shows.
func (c *Config) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// DefaultStateDir is $XDG_STATE_HOME/tlsedge, ~/.local/state/tlsedge when
// that is unset, and /var/lib/tlsedge for root (uid 0).
func DefaultStateDir(getenv func(string) string, uid int) string {
	if uid == 0 {
		return "/var/lib/tlsedge"
	}
	if x := getenv("XDG_STATE_HOME"); x != "" {
		return filepath.Join(x, "tlsedge")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".local", "state", "tlsedge")
	}
	return filepath.Join(os.TempDir(), "tlsedge-state")
}
