package configs

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// checkTypes reads a configuration file beside Config and reports the
// first value whose type is wrong by its key, as the file spells it:
// `limits.rate_per_minute: want an integer, got "abc"`. The YAML decoder
// would name Go's struct fields instead, and quietly truncates 1.5 into an
// integer. Syntax errors and unknown keys are left to the strict decoder,
// which shows them with line and caret.
func checkTypes(b []byte) error {
	f, err := parser.ParseBytes(b, 0)
	if err != nil {
		return nil
	}
	for _, doc := range f.Docs {
		if doc.Body != nil {
			if err := checkNode(doc.Body, reflect.TypeFor[Config](), ""); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkNode(n ast.Node, t reflect.Type, path string) error {
	for {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
			continue
		case *ast.TagNode:
			n = v.Value
			continue
		case *ast.AliasNode:
			return nil // the anchor's own value was checked where it stands
		}
		break
	}
	if n == nil || n.Type() == ast.NullType {
		return nil
	}
	want := ""
	switch {
	case t == durationType:
		if !isScalarNode(n) {
			want = "want a duration such as 5s or 250ms"
		}
	case t.Kind() == reflect.Struct:
		m, ok := n.(ast.MapNode)
		if !ok {
			want = "want a mapping of keys"
			break
		}
		for it := m.MapRange(); it.Next(); {
			if it.Key().IsMergeKey() {
				continue
			}
			name := it.Key().GetToken().Value
			f, ok := fieldByTag(t, name)
			if !ok {
				continue // unknown: the strict decoder says so, with a caret
			}
			if err := checkNode(it.Value(), f.Type, joinPath(path, name)); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Slice:
		seq, ok := n.(*ast.SequenceNode)
		if !ok {
			want = "want a list"
			if t.Elem().Kind() == reflect.String {
				want = `want a list such as ["a", "b"]`
			}
			break
		}
		for i, item := range seq.Values {
			if err := checkNode(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Map:
		if _, ok := n.(ast.MapNode); !ok {
			want = "want a mapping"
		}
	case t.Kind() == reflect.Bool:
		if n.Type() != ast.BoolType {
			want = "want true or false"
		}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		if n.Type() != ast.IntegerType {
			want = "want an integer"
		}
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64:
		if n.Type() != ast.IntegerType || strings.HasPrefix(n.GetToken().Value, "-") {
			want = "want a non-negative integer"
		}
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		if n.Type() != ast.IntegerType && n.Type() != ast.FloatType {
			want = "want a number"
		}
	case t.Kind() == reflect.String:
		if !isScalarNode(n) {
			want = "want a string"
		}
	}
	if want == "" {
		return nil
	}
	pos := n.GetToken().Position
	return fmt.Errorf("%d:%d: %s: %s, got %s", pos.Line, pos.Column, path, want, describeNode(n))
}

func isScalarNode(n ast.Node) bool {
	switch n.Type() {
	case ast.MappingType, ast.MappingValueType, ast.SequenceType:
		return false
	}
	return true
}

// describeNode shows a wrong value the way the file has it.
func describeNode(n ast.Node) string {
	switch n.Type() {
	case ast.StringType, ast.LiteralType:
		return fmt.Sprintf("%q", n.GetToken().Value)
	case ast.MappingType, ast.MappingValueType:
		return "a mapping"
	case ast.SequenceType:
		return "a list"
	}
	return n.GetToken().Value
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); tag == name && f.IsExported() {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func joinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}
