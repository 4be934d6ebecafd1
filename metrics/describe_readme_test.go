package metrics

import (
	"os"
	"strings"
	"testing"
)

// The README's metrics table lists every metric Describe knows, with its
// type and labels, and nothing else.
func TestReadmeMetricsTable(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i, j := strings.Index(s, "<!-- metrics:begin -->"), strings.Index(s, "<!-- metrics:end -->")
	if i < 0 || j < i {
		t.Fatal("README has no metrics table")
	}
	rows := map[string]string{}
	for _, line := range strings.Split(s[i:j], "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		rows[strings.Trim(strings.TrimSpace(cells[1]), "`")] = strings.TrimSpace(cells[2]) + " " + strings.TrimSpace(cells[3])
	}
	for _, d := range Describe() {
		want := d.Type + " " + strings.Join(d.Labels, ", ")
		if got, ok := rows[d.Name]; !ok || strings.TrimSpace(got) != strings.TrimSpace(want) {
			t.Errorf("README row for %s: %q, want %q", d.Name, got, want)
		}
		delete(rows, d.Name)
	}
	for name := range rows {
		t.Errorf("README lists %s, which does not exist", name)
	}
}
