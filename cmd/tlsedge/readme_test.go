package main

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/tlsedge/tlsedge/config"
)

// readmeSection returns the lines between <!-- NAME:begin --> and <!-- NAME:end -->.
func readmeSection(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	_, rest, ok := strings.Cut(s, "<!-- "+name+":begin -->")
	body, _, ok2 := strings.Cut(rest, "<!-- "+name+":end -->")
	if !ok || !ok2 {
		t.Fatalf("README.md has no %s section", name)
	}
	return body
}

// TestReadmeFlagReference keeps the README's flag table and the real flag
// set in step: every flag documented, nothing documented that is gone.
func TestReadmeFlagReference(t *testing.T) {
	var v flagValues
	fs := newFlagSet("tlsedge", &v)
	var real []string
	fs.VisitAll(func(f *pflag.Flag) { real = append(real, f.Name) })

	re := regexp.MustCompile("(?m)^\\| `(?:-[a-z], )?--([a-z0-9-]+)")
	var documented []string
	for _, m := range re.FindAllStringSubmatch(readmeSection(t, "flags"), -1) {
		documented = append(documented, m[1])
	}
	sort.Strings(real)
	sort.Strings(documented)
	if strings.Join(real, " ") != strings.Join(documented, " ") {
		t.Errorf("README flag reference is out of date:\n flags:  %v\n README: %v", real, documented)
	}
	// Shorthands too.
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Shorthand != "" && !strings.Contains(readmeSection(t, "flags"), "`-"+f.Shorthand+", --"+f.Name) {
			t.Errorf("README does not show -%s for --%s", f.Shorthand, f.Name)
		}
	})
}

func TestReadmeAppOptions(t *testing.T) { checkOptionTable(t, "app-options", config.AppOptions()) }

func TestReadmeTCPOptions(t *testing.T) { checkOptionTable(t, "tcp-options", config.TCPOptions()) }

// checkOptionTable compares the README table between the section's
// markers with the real options, names and order.
func checkOptionTable(t *testing.T, section string, options []config.AppOption) {
	t.Helper()
	re := regexp.MustCompile("(?m)^\\| `([a-z0-9_]+)")
	var documented, real []string
	for _, m := range re.FindAllStringSubmatch(readmeSection(t, section), -1) {
		documented = append(documented, m[1])
	}
	for _, o := range options {
		real = append(real, o.Name)
	}
	if strings.Join(real, " ") != strings.Join(documented, " ") {
		t.Errorf("README %s are out of date:\n options: %v\n README:  %v", section, real, documented)
	}
}
