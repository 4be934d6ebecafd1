package configdoc

import (
	"bytes"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/tlsedge/tlsedge/config"
)

// docs/config.md is what Generate writes from the code now.
func TestReferenceIsCurrent(t *testing.T) {
	want, err := Generate("../../config")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("docs/config.md is out of date: run go run ./internal/configdoc/cmd")
	}
}

// Every key the YAML decoder knows (reflection over config.Config) is in
// the reference, and every documented key has a doc comment.
func TestEveryKeyDocumented(t *testing.T) {
	doc, err := Generate("../../config")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	walk(reflect.TypeOf(config.Config{}), &keys)
	for _, k := range keys {
		if !bytes.Contains(doc, []byte("| `"+k+"` |")) {
			t.Errorf("key %q is not in the reference", k)
		}
	}
	for _, line := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(line, "| `") && strings.HasSuffix(line, "|  |") {
			t.Errorf("no doc comment: %s", line)
		}
	}
}

func walk(t reflect.Type, out *[]string) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t.PkgPath() != "github.com/tlsedge/tlsedge/config" {
		return
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if strings.Contains(tag, "inline") {
			walk(f.Type, out)
			continue
		}
		name := strings.Split(tag, ",")[0]
		if name == "" || name == "-" {
			continue
		}
		*out = append(*out, name)
		walk(f.Type, out)
	}
}
