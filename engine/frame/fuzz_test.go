package frame

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzProject feeds Project (and so skipValue) JSON objects of any shape:
// nesting, escapes, odd spacing, duplicate keys. For a valid object the
// projection is valid JSON, holds only members of the object whose keys
// were asked for, and holds every such member; it never panics or loops.
// Its seeds run as an ordinary test in `go test`.
func FuzzProject(f *testing.F) {
	for _, s := range []string{
		`{"last_price":"4000.0", "bid_price":"3999.0","nested":{"a":[1,"}"]},"volume":"10","s":"a\"b"}`,
		`{}`, ` { "volume" : [ {"x":"]"} , "\\" ] } `, `{"volume":"1","volume":"2"}`,
		`{"a":null,"volume":true,"last_price":-1.5e3}`, `{"volume":"\u00e9\\\"","k":{}}`, `[1,2]`, `"str"`,
	} {
		f.Add([]byte(s))
	}
	p := Intern([]string{"last_price", "volume"})
	f.Fuzz(func(t *testing.T, obj []byte) {
		if !json.Valid(obj) {
			return // Project's contract: the engine validates what it accepts
		}
		out := Project(obj, p)
		if !json.Valid(out) {
			t.Fatalf("Project(%q) = %q: not valid JSON", obj, out)
		}
		var in map[string]json.RawMessage
		if json.Unmarshal(obj, &in) != nil {
			if !bytes.Equal(out, obj) {
				t.Fatalf("a non-object %q was changed to %q", obj, out)
			}
			return
		}
		var got map[string]json.RawMessage
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("Project(%q) = %q: %v", obj, out, err)
		}
		// Keys compare as written: the engine's own JSON never escapes a
		// field name, so an escaped spelling is a different key here.
		raw := rawKeys(t, obj)
		for _, k := range raw {
			if bytes.IndexByte([]byte(k), '\\') >= 0 {
				return // an escaped key may decode to a kept one's name
			}
		}
		for k, v := range got {
			if !p.has([]byte(k)) {
				t.Fatalf("Project(%q) kept %q, not asked for", obj, k)
			}
			if !bytes.Equal(compact(v), compact(in[k])) {
				t.Fatalf("Project(%q): %q = %s; the object has %s", obj, k, v, in[k])
			}
		}
		for _, k := range raw {
			if p.has([]byte(k)) {
				if _, ok := got[k]; !ok {
					t.Fatalf("Project(%q) = %q lost %q", obj, out, k)
				}
			}
		}
	})
}

// rawKeys lists the top-level keys of a valid object as they are written
// between their quotes (escapes not decoded).
func rawKeys(t *testing.T, obj []byte) []string {
	var keys []string
	i := skipSpace(obj, 0) + 1
	for {
		i = skipSpace(obj, i)
		if i >= len(obj) || obj[i] == '}' {
			return keys
		}
		if obj[i] == ',' {
			i++
			continue
		}
		end := skipValue(obj, i)
		keys = append(keys, string(obj[i+1:end-1]))
		i = skipSpace(obj, end) + 1
		i = skipValue(obj, skipSpace(obj, i))
	}
}

func compact(b []byte) []byte {
	var buf bytes.Buffer
	_ = json.Compact(&buf, b)
	return buf.Bytes()
}
