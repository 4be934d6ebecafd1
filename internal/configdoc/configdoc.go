// Package configdoc writes the configuration file reference
// (docs/config.md) from the config package's own structs and their doc
// comments, so the reference cannot drift from the code: a test compares
// the file with what Generate writes.
package configdoc

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"strings"
)

// field is one key of the file.
type field struct {
	key, typ, doc string
	sub           string // the struct type of a nested section, "" for a leaf
	list          bool
}

// Generate parses the Go files of the config package in dir and returns
// the Markdown reference.
func Generate(dir string) ([]byte, error) {
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	structs := map[string]*ast.StructType{}
	typeDocs := map[string]string{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		for _, d := range af.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok {
				continue
			}
			for _, sp := range gd.Specs {
				ts, ok := sp.(*ast.TypeSpec)
				if !ok {
					continue
				}
				if st, ok := ts.Type.(*ast.StructType); ok {
					structs[ts.Name.Name] = st
					doc := ts.Doc.Text()
					if doc == "" {
						doc = gd.Doc.Text()
					}
					typeDocs[ts.Name.Name] = oneLine(doc)
				}
			}
		}
	}
	var out bytes.Buffer
	out.WriteString("# Configuration file reference\n\n" +
		"Every key of the YAML file (`tlsedge --config FILE`; `tlsedge check --config FILE` validates it and\n" +
		"prints the effective configuration). Flags override the file; `--app` and `--tcp` options have the\n" +
		"names of the `apps` and `tcp` keys. Durations are written `30s`, `15m`, `24h`; sizes `512K`, `10M`.\n" +
		"Generated from the code (`go run ./internal/configdoc/cmd`); a test keeps it current.\n")
	seen := map[string]bool{}
	var section func(title, typ string) error
	section = func(title, typ string) error {
		if seen[title] {
			return nil
		}
		seen[title] = true
		st, ok := structs[typ]
		if !ok {
			return fmt.Errorf("configdoc: no struct %s", typ)
		}
		fields := collect(st, structs, typeDocs)
		fmt.Fprintf(&out, "\n## %s\n\n| key | type | meaning |\n|---|---|---|\n", title)
		for _, f := range fields {
			fmt.Fprintf(&out, "| `%s` | %s | %s |\n", f.key, f.typ, f.doc)
		}
		for _, f := range fields {
			if f.sub == "" {
				continue
			}
			name := f.key
			if title != "top level" {
				name = title + "." + f.key
			}
			if f.list {
				name += "[]"
			}
			if err := section(name, f.sub); err != nil {
				return err
			}
		}
		return nil
	}
	if err := section("top level", "Config"); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// collect lists a struct's keys, inlined structs included.
// A field without a comment of its own shares the comment of the group
// it follows (Go's habit for related fields); a section without one has
// its type's.
func collect(st *ast.StructType, structs map[string]*ast.StructType, typeDocs map[string]string) []field {
	var out []field
	prev := ""
	for _, f := range st.Fields.List {
		tag := ""
		if f.Tag != nil {
			tag = reflect.StructTag(strings.Trim(f.Tag.Value, "`")).Get("yaml")
		}
		name := strings.Split(tag, ",")[0]
		if strings.Contains(tag, "inline") {
			if id, ok := f.Type.(*ast.Ident); ok && structs[id.Name] != nil {
				out = append(out, collect(structs[id.Name], structs, typeDocs)...)
			}
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		doc := oneLine(f.Doc.Text())
		fd := field{key: name}
		fd.typ, fd.sub, fd.list = typeName(f.Type, structs)
		switch {
		case doc != "":
			prev = doc
		case fd.sub != "" && typeDocs[fd.sub] != "":
			doc = typeDocs[fd.sub]
		case f.Doc == nil && prev != "":
			doc = "(with the field above) " + prev
		}
		fd.doc = doc
		out = append(out, fd)
	}
	return out
}

// oneLine joins a comment's lines for a table cell.
func oneLine(s string) string {
	return strings.ReplaceAll(strings.Join(strings.Fields(s), " "), "|", "\\|")
}

// typeName describes a field's type for the table, and names the struct
// of a nested section.
func typeName(e ast.Expr, structs map[string]*ast.StructType) (typ, sub string, list bool) {
	switch t := e.(type) {
	case *ast.Ident:
		switch t.Name {
		case "string":
			return "string", "", false
		case "int":
			return "integer", "", false
		case "bool":
			return "true/false", "", false
		case "float64":
			return "number", "", false
		case "Duration":
			return "duration", "", false
		case "Rate":
			return "rate `N/DURATION`", "", false
		}
		if structs[t.Name] != nil {
			return "section", t.Name, false
		}
		return t.Name, "", false
	case *ast.StarExpr:
		typ, sub, list = typeName(t.X, structs)
		return typ, sub, list
	case *ast.ArrayType:
		typ, sub, _ = typeName(t.Elt, structs)
		if sub != "" {
			return "list of sections", sub, true
		}
		return "list of " + typ, "", false
	case *ast.MapType:
		k, _, _ := typeName(t.Key, structs)
		v, _, _ := typeName(t.Value, structs)
		return "map " + k + " → " + v, "", false
	}
	return "value", "", false
}
