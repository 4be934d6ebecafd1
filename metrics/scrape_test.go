package metrics

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// scraped is one scrape of the text exposition format, parsed by hand:
// expfmt lives in a module this one does not require directly.
type scraped struct {
	values map[string]float64  // series key (see key) -> value
	types  map[string]string   // family -> counter, gauge, histogram, ...
	helps  map[string]string   // family -> help text
	labels map[string][]string // family -> sorted label names over its series
}

// scrape GETs m's Handler through a real HTTP server and parses the body.
func scrape(t testing.TB, m *Metrics) scraped {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape: %s: %s", resp.Status, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("scrape: Content-Type %q, want text/plain", ct)
	}
	s, err := parseText(resp.Body)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	return s
}

func parseText(r io.Reader) (scraped, error) {
	s := scraped{
		values: map[string]float64{}, types: map[string]string{},
		helps: map[string]string{}, labels: map[string][]string{},
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
		case strings.HasPrefix(line, "# TYPE "):
			f := strings.Fields(line)
			s.types[f[2]] = f[3]
		case strings.HasPrefix(line, "# HELP "):
			name, help, _ := strings.Cut(line[len("# HELP "):], " ")
			s.helps[name] = help
		case strings.HasPrefix(line, "#"):
		default:
			name, pairs, v, err := parseSeries(line)
			if err != nil {
				return s, fmt.Errorf("%q: %w", line, err)
			}
			k := key(name, pairs...)
			if _, dup := s.values[k]; dup {
				return s, fmt.Errorf("series %s twice", k)
			}
			s.values[k] = v
			// A family's label names: the union over its series (a
			// histogram's le is on _bucket only).
			fam := family(name)
			for i := 0; i < len(pairs); i += 2 {
				if !slices.Contains(s.labels[fam], pairs[i]) {
					s.labels[fam] = append(s.labels[fam], pairs[i])
					slices.Sort(s.labels[fam])
				}
			}
		}
	}
	return s, sc.Err()
}

// parseSeries splits `name{a="x",b="y"} value` into its parts.
func parseSeries(line string) (name string, pairs []string, v float64, err error) {
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return "", nil, 0, fmt.Errorf("no value")
	}
	name, rest := line[:i], line[i:]
	if rest[0] == '{' {
		rest = rest[1:]
		for rest != "" && rest[0] != '}' {
			ln, after, ok := strings.Cut(rest, `="`)
			if !ok {
				return "", nil, 0, fmt.Errorf("bad label")
			}
			var val strings.Builder
			j := 0
			for ; j < len(after) && after[j] != '"'; j++ {
				if after[j] == '\\' && j+1 < len(after) {
					j++
					if after[j] == 'n' {
						val.WriteByte('\n')
						continue
					}
				}
				val.WriteByte(after[j])
			}
			if j == len(after) {
				return "", nil, 0, fmt.Errorf("unterminated label value")
			}
			pairs = append(pairs, ln, val.String())
			rest = strings.TrimPrefix(after[j+1:], ",")
		}
		if rest == "" {
			return "", nil, 0, fmt.Errorf("unterminated labels")
		}
		rest = rest[1:]
	}
	f := strings.Fields(rest)
	if len(f) < 1 {
		return "", nil, 0, fmt.Errorf("no value")
	}
	v, err = strconv.ParseFloat(f[0], 64)
	return name, pairs, v, err
}

// key is the canonical name of a series: labels sorted by name, so that
// tests need not know the exposition order.
func key(name string, kv ...string) string {
	if len(kv) == 0 {
		return name
	}
	var p []string
	for i := 0; i+1 < len(kv); i += 2 {
		p = append(p, kv[i]+"="+strconv.Quote(kv[i+1]))
	}
	slices.Sort(p)
	return name + "{" + strings.Join(p, ",") + "}"
}

// family strips the suffixes a histogram's series add to its name.
func family(series string) string {
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if f, ok := strings.CutSuffix(series, suf); ok && strings.HasSuffix(f, "_seconds") {
			return f
		}
	}
	return series
}

// count returns how many series of family name the scrape holds, and
// the sum of their values.
func (s scraped) count(name string) (n int, sum float64) {
	for k, v := range s.values {
		if k == name || strings.HasPrefix(k, name+"{") {
			n++
			sum += v
		}
	}
	return n, sum
}

// want fails t unless series k has value v.
func (s scraped) want(t *testing.T, v float64, name string, kv ...string) {
	t.Helper()
	k := key(name, kv...)
	got, ok := s.values[k]
	if !ok {
		t.Errorf("%s: missing", k)
		return
	}
	if got != v {
		t.Errorf("%s = %v, want %v", k, got, v)
	}
}

// absent fails t if family name has any series.
func (s scraped) absent(t *testing.T, name string) {
	t.Helper()
	if n, _ := s.count(name); n != 0 {
		t.Errorf("%s: %d series, want none", name, n)
	}
}

func TestParseSeries(t *testing.T) {
	tests := []struct {
		line, key string
		v         float64
	}{
		{`up 1`, "up", 1},
		{`a_total{x="1",b="q\"uo\\te"} 2.5`, key("a_total", "b", `q"uo\te`, "x", "1"), 2.5},
		{`h_bucket{le="+Inf"} 7`, key("h_bucket", "le", "+Inf"), 7},
		{`g{} -3e-05 1700000000`, "g", -3e-05},
	}
	for _, tt := range tests {
		name, pairs, v, err := parseSeries(tt.line)
		if err != nil {
			t.Errorf("%s: %v", tt.line, err)
			continue
		}
		if k := key(name, pairs...); k != tt.key || v != tt.v {
			t.Errorf("%s: %s %v, want %s %v", tt.line, k, v, tt.key, tt.v)
		}
	}
}
