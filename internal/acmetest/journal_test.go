package acmetest

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		want event
	}{
		{`Pebble 2026/01/02 15:04:05 Added order "dM2aZ4W_jK0" to the db`, event{kind: eventOrder, order: "dM2aZ4W_jK0"}},
		{`Pebble 2026/01/02 15:04:05 Issued certificate serial 0a1b2c for order dM2aZ4W_jK0`, event{kind: eventIssued, serial: "0a1b2c", order: "dM2aZ4W_jK0"}},
		{`Pebble 2026/01/02 15:04:05 There are now 1 orders in the db`, event{}},
		{`Pebble 2026/01/02 15:04:05 Added order "" to the db`, event{}},
		{`Pebble 2026/01/02 15:04:05 Added order "x" to the db, twice`, event{}},
		{`Pebble 2026/01/02 15:04:05 Issued certificate serial 0A1B for order x`, event{}},
		{`Pebble 2026/01/02 15:04:05 Issued certificate serial 0a1b for order `, event{}},
		{`Pebble 2026/01/02 15:04:05 Issued certificate serial for order x`, event{}},
		{`Pebble 2026/01/02 15:04:05 Error: unable to issue order: boom`, event{}},
		{``, event{}},
	} {
		if got := parseLine(tc.line); got != tc.want {
			t.Errorf("parseLine(%q) = %+v, want %+v", tc.line, got, tc.want)
		}
	}
}

func FuzzParseLine(f *testing.F) {
	f.Add(`Pebble 2026/01/02 15:04:05 Added order "abc" to the db`)
	f.Add(`Pebble 2026/01/02 15:04:05 Issued certificate serial 0a for order abc`)
	f.Add(`Added order "Issued certificate serial `)
	f.Fuzz(func(t *testing.T, line string) {
		ev := parseLine(line)
		switch ev.kind {
		case eventOrder:
			if ev.order == "" || !strings.Contains(line, orderPrefix+ev.order+orderSuffix) {
				t.Errorf("order %q not in %q", ev.order, line)
			}
		case eventIssued:
			if !isLowerHex(ev.serial) || !strings.Contains(line, issuedPrefix+ev.serial+issuedMiddle+ev.order) {
				t.Errorf("serial %q, order %q not in %q", ev.serial, ev.order, line)
			}
		}
	})
}

// TestLineWriter: lines split across writes, and two streams interleaving,
// reach the journal whole.
func TestLineWriter(t *testing.T) {
	var got []string
	emit := func(s string) { got = append(got, s) }
	out, errs := &lineWriter{emit: emit}, &lineWriter{emit: emit}
	for _, w := range []struct {
		lw *lineWriter
		s  string
	}{
		{out, "Pebble one"}, {errs, "panic: "}, {out, " half\r\nPebble two\n"},
		{errs, "boom\n"}, {out, "Pebble cut"},
	} {
		if n, err := w.lw.Write([]byte(w.s)); n != len(w.s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", w.s, n, err)
		}
	}
	out.flush()
	errs.flush()
	want := []string{"Pebble one half", "Pebble two", "panic: boom", "Pebble cut"}
	if !slices.Equal(got, want) {
		t.Errorf("lines %q, want %q", got, want)
	}
}

func TestJournalWait(t *testing.T) {
	j := newJournal()
	go func() {
		j.addLine(`Pebble x Added order "o1" to the db`)
		j.addLine(`Pebble x Issued certificate serial 01 for order o1`)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !j.wait(ctx, func(j *journal) bool { return len(j.issued) == 1 }) {
		t.Fatal("wait timed out")
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if j.wait(ctx, func(j *journal) bool { return len(j.issued) == 2 }) {
		t.Fatal("wait for an issuance that never comes returned true")
	}
}

func TestParseOrder(t *testing.T) {
	body := `{"status":"pending","identifiers":[{"type":"dns","value":"a.example.test"},{"type":"ip","value":"127.0.0.1"}],
		"profile":"default","replaces":"aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE","finalize":"https://127.0.0.1:1/finalize-order/x"}`
	o, err := parseOrder([]byte(body), "https://127.0.0.1:1/my-order/dM2aZ4W_jK0")
	if err != nil {
		t.Fatal(err)
	}
	want := Order{ID: "dM2aZ4W_jK0", Names: []string{"a.example.test", "127.0.0.1"}, Profile: "default", Replaces: "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"}
	if o.ID != want.ID || !slices.Equal(o.Names, want.Names) || o.Profile != want.Profile || o.Replaces != want.Replaces {
		t.Errorf("parseOrder = %+v, want %+v", o, want)
	}
	for _, bad := range []struct{ body, loc string }{{"{", "https://h/my-order/x"}, {"{}", ""}} {
		if _, err := parseOrder([]byte(bad.body), bad.loc); err == nil {
			t.Errorf("parseOrder(%q, %q) = nil error", bad.body, bad.loc)
		}
	}
}

func TestOptionsCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		ok   bool
	}{
		{"zero", Options{}, true},
		{"short validity", Options{ValidityPeriod: time.Minute, OrderRetryAfter: time.Second}, true},
		{"negative validity", Options{ValidityPeriod: -time.Second}, false},
		{"negative retry", Options{AuthzRetryAfter: -time.Second}, false},
		{"profile named default", Options{Profiles: map[string]time.Duration{"default": time.Hour}}, false},
		{"profile without validity", Options{Profiles: map[string]time.Duration{"short": 0}}, false},
		{"EAB ok", Options{EAB: map[string]string{"kid": "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"}}, true},
		{"EAB padded", Options{EAB: map[string]string{"kid": "YWJj="}}, false},
		{"EAB empty key", Options{EAB: map[string]string{"kid": ""}}, false},
		{"port out of range", Options{HTTPPort: 70000}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.opts.check(); (err == nil) != tc.ok {
				t.Errorf("check() = %v, want ok=%t", err, tc.ok)
			}
		})
	}
}

func TestSeconds(t *testing.T) {
	for d, want := range map[time.Duration]uint64{0: 0, time.Nanosecond: 1, time.Second: 1, 1500 * time.Millisecond: 2, time.Minute: 60} {
		if got := seconds(d); got != want {
			t.Errorf("seconds(%s) = %d, want %d", d, got, want)
		}
	}
}
