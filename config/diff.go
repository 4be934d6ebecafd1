package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// A Diff is what changes when one configuration replaces another: what a
// reload would do, shown before it is done (`tlsedge reload --dry-run`,
// `tlsedge check --diff`) and logged after.
//
// Apps and TCP services are matched by name, backends within them by ID:
// the ID is what a sticky cookie names, so a backend whose ID disappears
// loses its sessions even if its address stays, and one that keeps its ID
// at a new address keeps them.
type Diff struct {
	AppsAdded   []string     `json:"apps_added,omitempty"`
	AppsRemoved []string     `json:"apps_removed,omitempty"`
	AppsChanged []Changed    `json:"apps_changed,omitempty"`
	TCPAdded    []string     `json:"tcp_added,omitempty"`
	TCPRemoved  []string     `json:"tcp_removed,omitempty"`
	TCPChanged  []Changed    `json:"tcp_changed,omitempty"`
	Backends    []BackendSet `json:"backends,omitempty"`
	// Settings are the changed top-level sections and settings outside
	// apps and TCP services (frontend, upstream, log, certs, acme, ...),
	// by their names in the file.
	Settings []string `json:"settings,omitempty"`
	// Restart lists the changes a reload cannot make (listen addresses):
	// they need a restart or a binary upgrade.
	Restart []string `json:"restart,omitempty"`
}

// Changed is an app or TCP service present on both sides, with the names
// of the settings that differ (as in the file; "backends" is not among
// them: backend changes are in Diff.Backends).
type Changed struct {
	Name   string   `json:"name"`
	Fields []string `json:"fields"`
}

// BackendSet is the backends one app or TCP service gains, loses or moves.
type BackendSet struct {
	// Owner is "app NAME" or "tcp NAME".
	Owner   string          `json:"owner"`
	Added   []BackendChange `json:"added,omitempty"`
	Removed []BackendChange `json:"removed,omitempty"`
	// Moved keep their ID (and their sticky sessions) at another address,
	// weight or priority.
	Moved []BackendChange `json:"moved,omitempty"`
}

// BackendChange is one backend of a BackendSet. Addr is the new address
// for added and moved backends, the old one for removed ones.
type BackendChange struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
	// Was says what a moved backend was ("10.0.0.5:8080 weight 1").
	Was string `json:"was,omitempty"`
	Now string `json:"now,omitempty"`
	// StickySessions, for a removed backend of a running instance, is how
	// many distinct sticky sessions pinned to it were seen recently: those
	// users move to another backend (and lose server-side session state).
	// Compare leaves it zero; the server fills it in.
	StickySessions int `json:"sticky_sessions,omitempty"`
}

// Empty reports whether nothing changes.
func (d *Diff) Empty() bool {
	return len(d.AppsAdded)+len(d.AppsRemoved)+len(d.AppsChanged)+len(d.TCPAdded)+len(d.TCPRemoved)+
		len(d.TCPChanged)+len(d.Backends)+len(d.Settings)+len(d.Restart) == 0
}

// Compare returns what changes from old to cfg. Both should be validated
// (Validate fills in names and backend IDs, which the comparison matches
// on).
func Compare(old, cfg *Config) Diff {
	var d Diff
	d.Restart = ListenerChanges(old, cfg)
	d.Settings = changedFields(reflect.ValueOf(*old), reflect.ValueOf(*cfg), map[string]bool{
		"apps": true, "tcp": true, "listen": true, "http_listen": true,
	})

	oldApps := byName(old.Apps, func(a *App) string { return a.Name })
	for i := range cfg.Apps {
		a := &cfg.Apps[i]
		was, ok := oldApps[a.Name]
		if !ok {
			d.AppsAdded = append(d.AppsAdded, a.Name)
			continue
		}
		delete(oldApps, a.Name)
		if f := changedFields(reflect.ValueOf(*was), reflect.ValueOf(*a), map[string]bool{"backends": true}); len(f) > 0 {
			d.AppsChanged = append(d.AppsChanged, Changed{Name: a.Name, Fields: f})
		}
		if s := compareBackends("app "+a.Name, was.Backends, a.Backends); s != nil {
			d.Backends = append(d.Backends, *s)
		}
	}
	d.AppsRemoved = sortedKeys(oldApps)

	oldTCP := byName(old.TCP, func(t *TCPService) string { return t.Name })
	for i := range cfg.TCP {
		t := &cfg.TCP[i]
		was, ok := oldTCP[t.Name]
		if !ok {
			d.TCPAdded = append(d.TCPAdded, t.Name)
			continue
		}
		delete(oldTCP, t.Name)
		if f := changedFields(reflect.ValueOf(*was), reflect.ValueOf(*t), map[string]bool{"backends": true, "listen": true}); len(f) > 0 {
			d.TCPChanged = append(d.TCPChanged, Changed{Name: t.Name, Fields: f})
		}
		if s := compareBackends("tcp "+t.Name, was.Backends, t.Backends); s != nil {
			d.Backends = append(d.Backends, *s)
		}
	}
	d.TCPRemoved = sortedKeys(oldTCP)
	return d
}

// ListenerChanges are the differences a reload refuses: sockets are bound.
func ListenerChanges(old, cfg *Config) []string {
	var out []string
	if old.Listen != cfg.Listen {
		out = append(out, fmt.Sprintf("listen %s -> %s", old.Listen, cfg.Listen))
	}
	if old.HTTPListen != cfg.HTTPListen {
		out = append(out, fmt.Sprintf("http_listen %s -> %s", old.HTTPListen, cfg.HTTPListen))
	}
	if (len(old.Apps) == 0) != (len(cfg.Apps) == 0) {
		out = append(out, "HTTPS listener on/off (apps added to or removed from a TCP-only configuration)")
	}
	if a, b := old.TCPListens(), cfg.TCPListens(); !slices.Equal(a, b) {
		out = append(out, fmt.Sprintf("TCP listeners %v -> %v", a, b))
	}
	return out
}

// compareBackends matches backends by ID; nil when nothing changed.
func compareBackends(owner string, old, cur []Backend) *BackendSet {
	s := BackendSet{Owner: owner}
	was := byName(old, func(b *Backend) string { return b.ID })
	for i := range cur {
		b := &cur[i]
		o, ok := was[b.ID]
		switch {
		case !ok:
			s.Added = append(s.Added, BackendChange{ID: b.ID, Addr: b.Addr})
		case *o != *b:
			s.Moved = append(s.Moved, BackendChange{ID: b.ID, Addr: b.Addr, Was: describeBackend(o), Now: describeBackend(b)})
		}
		delete(was, b.ID)
	}
	for _, id := range sortedKeys(was) {
		s.Removed = append(s.Removed, BackendChange{ID: id, Addr: was[id].Addr})
	}
	if len(s.Added)+len(s.Removed)+len(s.Moved) == 0 {
		return nil
	}
	return &s
}

func describeBackend(b *Backend) string {
	s := fmt.Sprintf("%s weight %d", b.Addr, max(b.Weight, 1))
	if b.Priority != 0 {
		s += fmt.Sprintf(" priority %d", b.Priority)
	}
	return s
}

// changedFields names the fields of two values of one struct type that
// differ, by their YAML names; inlined structs are looked into, so that
// their fields are named as in the file. skip lists names not compared.
func changedFields(a, b reflect.Value, skip map[string]bool) []string {
	var out []string
	t := a.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if strings.Contains(opts, "inline") {
			out = append(out, changedFields(a.Field(i), b.Field(i), skip)...)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		if name == "-" || skip[name] {
			continue
		}
		if !sameValue(a.Field(i), b.Field(i)) {
			out = append(out, name)
		}
	}
	return out
}

// sameValue is reflect.DeepEqual, except that an empty list equals none:
// a file may write `allow: []` where flags leave it out.
func sameValue(a, b reflect.Value) bool {
	if k := a.Kind(); (k == reflect.Slice || k == reflect.Map) && a.Len() == 0 && b.Len() == 0 {
		return true
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

// Lines renders d for people, one change per line; none when d is Empty.
func (d *Diff) Lines() []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	for _, r := range d.Restart {
		add("needs a restart (a reload refuses it): %s", r)
	}
	for _, s := range d.Settings {
		add("setting changed: %s", s)
	}
	for _, n := range d.AppsAdded {
		add("app added: %s", n)
	}
	for _, n := range d.AppsRemoved {
		add("app removed: %s", n)
	}
	for _, c := range d.AppsChanged {
		add("app changed: %s (%s)", c.Name, strings.Join(c.Fields, ", "))
	}
	for _, n := range d.TCPAdded {
		add("tcp service added: %s", n)
	}
	for _, n := range d.TCPRemoved {
		add("tcp service removed: %s", n)
	}
	for _, c := range d.TCPChanged {
		add("tcp service changed: %s (%s)", c.Name, strings.Join(c.Fields, ", "))
	}
	for _, s := range d.Backends {
		for _, b := range s.Added {
			add("%s: backend added: %s (%s)", s.Owner, b.ID, b.Addr)
		}
		for _, b := range s.Removed {
			pinned := ""
			if b.StickySessions > 0 {
				pinned = fmt.Sprintf(": %d sticky sessions pinned to it move to another backend", b.StickySessions)
			}
			add("%s: backend removed: %s (%s)%s", s.Owner, b.ID, b.Addr, pinned)
		}
		for _, b := range s.Moved {
			add("%s: backend changed: %s (%s, was %s); its sticky sessions stay", s.Owner, b.ID, b.Now, b.Was)
		}
	}
	return out
}

// byName indexes items by key; the first of two with one key wins
// (Validate refuses duplicates).
func byName[T any](items []T, key func(*T) string) map[string]*T {
	m := make(map[string]*T, len(items))
	for i := range items {
		k := key(&items[i])
		if _, dup := m[k]; !dup {
			m[k] = &items[i]
		}
	}
	return m
}

func sortedKeys[T any](m map[string]T) []string {
	if len(m) == 0 {
		return nil
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
