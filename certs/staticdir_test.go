package certs

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestStaticDir loads a certificate folder and follows its changes: new
// pairs are served, deleted ones dropped, a lone certificate waits for its
// key.
func TestStaticDir(t *testing.T) {
	ti := newTestIssuer(t)
	dir := t.TempDir()
	ti.writePair(t, dir, "a", "a.test")
	certPEM, keyPEM := ti.issue(t, "b.test")
	writeFile(t, dir, "b.pem", append(certPEM, keyPEM...)) // chain and key in one file
	loneCert, loneKey := ti.issue(t, "lone.test")
	writeFile(t, dir, "lone.crt", loneCert)                     // no key: skipped with a warning
	writeFile(t, dir, "privkey.pem", keyPEM)                    // a key alone: silently ignored
	writeFile(t, dir, "notes.txt", []byte("not a certificate")) // other extensions are ignored

	log, hook := testLog()
	s, err := NewStatic(StaticConfig{Dir: dir, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Names(), []string{"a.test", "b.test"}; !slices.Equal(got, want) {
		t.Fatalf("Names() = %q, want %q", got, want)
	}
	if w := warnings(hook); len(w) != 1 || w[0].Data["file"] != filepath.Join(dir, "lone.crt") {
		t.Fatalf("want one warning for lone.crt, got %d", len(w))
	}
	if got := s.Describe("b.test"); got != "file "+filepath.Join(dir, "b.pem") {
		t.Errorf("Describe(b.test) = %q", got)
	}

	steps := []struct {
		name   string
		change func(t *testing.T)
		want   []string
	}{
		{"new pair added", func(t *testing.T) { ti.writePair(t, dir, "c", "c.test") },
			[]string{"a.test", "b.test", "c.test"}},
		{"key for the lone certificate arrives", func(t *testing.T) { writeFile(t, dir, "lone.key", loneKey) },
			[]string{"a.test", "b.test", "c.test", "lone.test"}},
		{"certificate deleted", func(t *testing.T) {
			if err := os.Remove(filepath.Join(dir, "a.crt")); err != nil {
				t.Fatal(err)
			}
		}, []string{"b.test", "c.test", "lone.test"}},
		{"deleted certificate comes back", func(t *testing.T) { ti.writePair(t, dir, "a", "a.test") },
			[]string{"a.test", "b.test", "c.test", "lone.test"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.change(t)
			s.poll(time.Now())
			if got := s.Names(); !slices.Equal(got, st.want) {
				t.Errorf("Names() = %q, want %q", got, st.want)
			}
		})
	}
	if w := warnings(hook); len(w) != 1 {
		t.Errorf("folder changes logged %d warnings, want only the start-up one", len(w))
	}
}

// TestStaticDirBrokenNewFile adds a broken pair after start: it is not
// served, it is logged once, and it is served once repaired.
func TestStaticDirBrokenNewFile(t *testing.T) {
	ti := newTestIssuer(t)
	dir := t.TempDir()
	ti.writePair(t, dir, "a", "a.test")
	log, hook := testLog()
	s, err := NewStatic(StaticConfig{Dir: dir, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "z.crt", []byte("garbage"))
	writeFile(t, dir, "z.key", []byte("garbage"))
	for range 5 {
		s.poll(time.Now())
	}
	if w := warnings(hook); len(w) != 1 || w[0].Data["file"] != filepath.Join(dir, "z.crt") {
		t.Fatalf("want one warning for z.crt, got %d", len(w))
	}
	if cert, _ := s.Lookup(&tls.ClientHelloInfo{ServerName: "z.test"}); cert != nil {
		t.Fatal("broken z.crt is served")
	}
	ti.writePair(t, dir, "z", "z.test")
	s.poll(time.Now())
	if cert, _ := s.Lookup(&tls.ClientHelloInfo{ServerName: "z.test"}); cert == nil {
		t.Fatal("repaired z.crt is not served")
	}
}
