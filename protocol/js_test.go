package protocol

import (
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite clients/js/protocol.js from this package")

const jsFile = "../clients/js/protocol.js"

// TestJSProtocolFile keeps the JavaScript client's constants generated from
// this package: the channel table and every named constant of codes.go.
// Regenerate with: go test ./protocol -run TestJSProtocolFile -update
func TestJSProtocolFile(t *testing.T) {
	want := renderJS(t)
	if *update {
		if err := os.WriteFile(jsFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(jsFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: run go test ./protocol -run TestJSProtocolFile -update", jsFile)
	}
}

// constGroups reads codes.go's constants by name prefix, in source order.
func constGroups(t *testing.T) map[string][][2]string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "codes.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	conf := types.Config{}
	pkg, err := conf.Check("protocol", fset, []*ast.File{f}, nil)
	if err != nil {
		t.Fatal(err)
	}
	groups := map[string][][2]string{}
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			for _, name := range spec.(*ast.ValueSpec).Names {
				c := pkg.Scope().Lookup(name.Name).(*types.Const)
				for _, prefix := range []string{"Request", "Answer", "Type", "Perm", "Code", "Close", "Flow"} {
					if rest, ok := strings.CutPrefix(name.Name, prefix); ok {
						groups[prefix] = append(groups[prefix], [2]string{screaming(rest), c.Val().ExactString()})
					}
				}
			}
		}
	}
	return groups
}

var wordStart = regexp.MustCompile(`([a-z0-9])([A-Z])`)

// screaming turns ResumeRequired into RESUME_REQUIRED.
func screaming(s string) string { return strings.ToUpper(wordStart.ReplaceAllString(s, "${1}_${2}")) }

func renderJS(t *testing.T) []byte {
	var b bytes.Buffer
	b.WriteString("// Generated from the Go package protocol by protocol/js_test.go: do not edit.\n")
	b.WriteString("// Regenerate with: go test ./protocol -run TestJSProtocolFile -update\n\n")
	kinds := map[Kind]string{KindMarket: "market", KindPrivate: "private", KindSignals: "signals"}
	b.WriteString("/** Every channel name a request may use, with what it pushes. */\nexport const CHANNELS = Object.freeze({\n")
	names := ChannelNames()
	for _, n := range names {
		c, _ := Lookup(n)
		fmt.Fprintf(&b, "  %s: Object.freeze({ push: '%s', type: '%s', kind: '%s', snapshot: %v, reliable: %v }),\n",
			n, c.Push, c.Type, kinds[c.Kind], c.Snapshot, c.Reliable())
	}
	b.WriteString("});\n\n")
	var reliable []string
	for _, n := range names {
		if c, _ := Lookup(n); c.Reliable() {
			reliable = append(reliable, "'"+n+"'")
		}
	}
	fmt.Fprintf(&b, "/** Channels whose messages are never conflated: resumable with since and epoch. */\nexport const RELIABLE_CHANNELS = new Set([%s]);\n\n", strings.Join(reliable, ", "))
	groups := constGroups(t)
	for _, g := range []struct{ prefix, js, doc string }{
		{"Request", "REQUEST", "Request types."},
		{"Answer", "ANSWER", "Answer types."},
		{"Type", "TYPE", "Push types."},
		{"Perm", "PERMISSION", "Token permissions."},
		{"Code", "ERROR", "Error codes."},
		{"Close", "CLOSE", "Close codes."},
		{"Flow", "FLOW", "Flow control: the server's limits and the clients' grant policy (docs/PROTOCOL.md)."},
	} {
		fmt.Fprintf(&b, "/** %s */\nexport const %s = Object.freeze({\n", g.doc, g.js)
		for _, kv := range groups[g.prefix] {
			fmt.Fprintf(&b, "  %s: %s,\n", kv[0], strings.ReplaceAll(kv[1], `"`, "'"))
		}
		b.WriteString("});\n\n")
	}
	quoted := func(ss []string) string {
		q := slices.Clone(ss)
		for i := range q {
			q[i] = "'" + q[i] + "'"
		}
		return strings.Join(q, ", ")
	}
	fmt.Fprintf(&b, "/** Tick data keys a subscription's fields may select. */\nexport const TICK_FIELDS = Object.freeze([%s]);\n\n", quoted(TickFields))
	aliases := make([]string, 0, len(FieldAliases))
	for k, v := range FieldAliases {
		aliases = append(aliases, fmt.Sprintf("%s: '%s'", k, v))
	}
	slices.Sort(aliases)
	fmt.Fprintf(&b, "/** Short names of tick keys. */\nexport const FIELD_ALIASES = Object.freeze({ %s });\n\n", strings.Join(aliases, ", "))
	fmt.Fprintf(&b, "/** The identity of the broadcast notifications topic. */\nexport const BROADCAST_ID = '%s';\n", BroadcastID)
	return b.Bytes()
}
