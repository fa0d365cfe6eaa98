// Package ilt holds Mixer's expression test table (tests.go, copied in by gen.sh and
// never committed) and this file, which writes the table out as JSON data.
package ilt

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"sort"
	"time"

	descriptor "istio.io/api/policy/v1beta1"
)

// Value is one Go value of the table, tagged with the Go type it had.
type Value struct {
	Type  string      `json:"type"`
	Value interface{} `json:"value"`
}

// Case is one TestInfo entry, keeping every field a port may need.
type Case struct {
	Index         int               `json:"index"`
	Line          int               `json:"line"`
	Name          string            `json:"name"`
	E             string            `json:"expression"`
	Type          string            `json:"type,omitempty"`
	Conf          string            `json:"conf"`
	I             map[string]*Value `json:"input"`
	R             *Value            `json:"result"`
	CEL           *Value            `json:"cel_result,omitempty"`
	Referenced    []string          `json:"referenced"`
	ReferencedCEL []string          `json:"referenced_cel,omitempty"`
	Err           string            `json:"error,omitempty"`
	AstErr        string            `json:"ast_error,omitempty"`
	CompileErr    string            `json:"compile_error,omitempty"`
	IL            string            `json:"il,omitempty"`
	Fns           interface{}       `json:"extra_functions,omitempty"`
	Externs       []string          `json:"extra_externs,omitempty"`
	SkipAst       bool              `json:"skip_ast,omitempty"`
	Bench         bool              `json:"bench,omitempty"`
}

// Table is the whole dump: the attribute sets by name, then the cases.
type Table struct {
	Source     string                       `json:"source"`
	Attributes map[string]map[string]string `json:"attributes"`
	Cases      []Case                       `json:"cases"`
}

func confName(c map[string]*descriptor.AttributeManifest_AttributeInfo) string {
	switch {
	case c == nil:
		return "defaultAttrs"
	case fmt.Sprintf("%p", c) == fmt.Sprintf("%p", exprEvalAttrs):
		return "exprEvalAttrs"
	case fmt.Sprintf("%p", c) == fmt.Sprintf("%p", istio06AttributeSet):
		return "istio06AttributeSet"
	case fmt.Sprintf("%p", c) == fmt.Sprintf("%p", defaultAttrs):
		return "defaultAttrs"
	}
	panic("unknown attribute set")
}

func attrs(c map[string]*descriptor.AttributeManifest_AttributeInfo) map[string]string {
	out := map[string]string{}
	for k, v := range c {
		out[k] = string(v.ValueType)
	}
	return out
}

func encode(v interface{}) *Value {
	switch x := v.(type) {
	case nil:
		return nil
	case bool:
		return &Value{"bool", x}
	case string:
		return &Value{"string", x}
	case int64:
		return &Value{"int64", fmt.Sprint(x)}
	case int:
		return &Value{"int", fmt.Sprint(x)}
	case float64:
		return &Value{"float64", x}
	case time.Time:
		return &Value{"time", x.UTC().Format(time.RFC3339Nano)}
	case time.Duration:
		return &Value{"duration_ns", fmt.Sprint(int64(x))}
	case net.IP:
		return &Value{"bytes", fmt.Sprintf("%x", []byte(x))}
	case []byte:
		return &Value{"bytes", fmt.Sprintf("%x", x)}
	case map[string]string:
		if x == nil {
			return &Value{"string_map", map[string]string{}}
		}
		return &Value{"string_map", x}
	case error:
		return &Value{"error", x.Error()}
	}
	panic(fmt.Sprintf("cannot encode %T", v))
}

// caseLines finds the line of every element of TestData in the table's source.
func caseLines(path string) ([]int, error) {
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		return nil, err
	}
	for _, decl := range file.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok {
			continue
		}
		for _, spec := range gen.Specs {
			vs, ok := spec.(*ast.ValueSpec)
			if !ok || len(vs.Names) != 1 || vs.Names[0].Name != "TestData" {
				continue
			}
			lit := vs.Values[0].(*ast.CompositeLit)
			lines := make([]int, len(lit.Elts))
			for i, e := range lit.Elts {
				lines[i] = fset.Position(e.Pos()).Line
			}
			return lines, nil
		}
	}
	return nil, errors.New("TestData not found")
}

// Dump returns the table read from tests.go at path (for line numbers) and compiled in.
func Dump(path, source string) (*Table, error) {
	lines, err := caseLines(path)
	if err != nil {
		return nil, err
	}
	if len(lines) != len(TestData) {
		return nil, fmt.Errorf("parsed %d cases, compiled %d", len(lines), len(TestData))
	}
	table := &Table{
		Source: source,
		Attributes: map[string]map[string]string{
			"defaultAttrs":        attrs(defaultAttrs),
			"exprEvalAttrs":       attrs(exprEvalAttrs),
			"istio06AttributeSet": attrs(istio06AttributeSet),
		},
	}
	for i, tc := range TestData {
		c := Case{
			Index: i, Line: lines[i], Name: tc.TestName(), E: tc.E, Type: string(tc.Type),
			Conf: confName(tc.conf), I: map[string]*Value{}, R: encode(tc.R), CEL: encode(tc.CEL),
			Referenced: tc.Referenced, ReferencedCEL: tc.ReferencedCEL, Err: tc.Err,
			AstErr: tc.AstErr, CompileErr: tc.CompileErr, IL: tc.IL, SkipAst: tc.Skipast,
			Bench: tc.Bench,
		}
		for k, v := range tc.I {
			c.I[k] = encode(v)
		}
		if tc.Fns != nil {
			c.Fns = tc.Fns
		}
		for k := range tc.Externs {
			c.Externs = append(c.Externs, k)
		}
		sort.Strings(c.Externs)
		table.Cases = append(table.Cases, c)
	}
	return table, nil
}

// FakeBag stands in for the table's companion fakebag.go, which the dump does not need:
// only the table's own checking helper names it.
type FakeBag struct{}

// ReferencedList is never called by the dump.
func (b *FakeBag) ReferencedList() []string { return nil }
