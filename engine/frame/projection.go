package frame

import (
	"slices"
	"strings"
	"sync"
)

// Projection is an interned set of top-level data keys a subscriber asked
// for (the "fields" of a tick subscription). Interning gives every distinct
// set one small id, so an event caches one frame per projection in use,
// not one per subscriber. The zero id means "all fields".
type Projection struct {
	ID   uint32
	Keys []string // sorted, unique
}

var projections = struct {
	sync.Mutex
	byKey map[string]*Projection
	next  uint32
}{byKey: make(map[string]*Projection)}

// Intern returns the projection for keys, creating it on first use. A nil
// or empty keys gives nil, the full projection.
func Intern(keys []string) *Projection {
	if len(keys) == 0 {
		return nil
	}
	sorted := slices.Clone(keys)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	canon := strings.Join(sorted, ",")

	projections.Lock()
	defer projections.Unlock()
	if p, ok := projections.byKey[canon]; ok {
		return p
	}
	projections.next++
	p := &Projection{ID: projections.next, Keys: sorted}
	projections.byKey[canon] = p
	return p
}

func (p *Projection) has(key []byte) bool {
	_, found := slices.BinarySearch(p.Keys, string(key))
	return found
}

// Project returns the members of the JSON object obj whose keys are in p,
// in their original order. obj must be valid JSON (the engine validates what
// it accepts); anything that is not an object is returned as it is.
func Project(obj []byte, p *Projection) []byte {
	if p == nil {
		return obj
	}
	out := make([]byte, 0, len(obj))
	out = append(out, '{')
	first := true
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return obj
	}
	i++
	for {
		i = skipSpace(obj, i)
		if i >= len(obj) || obj[i] == '}' {
			break
		}
		if obj[i] == ',' {
			i++
			continue
		}
		keyStart := i
		keyEnd := skipValue(obj, i) // the key is a string value
		key := obj[keyStart+1 : keyEnd-1]
		i = skipSpace(obj, keyEnd)
		i++ // ':'
		i = skipSpace(obj, i)
		valStart := i
		i = skipValue(obj, i)
		if p.has(key) {
			if !first {
				out = append(out, ',')
			}
			first = false
			out = append(out, obj[keyStart:keyEnd]...)
			out = append(out, ':')
			out = append(out, obj[valStart:i]...)
		}
	}
	return append(out, '}')
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the index just past the JSON value starting at i.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		i++
		for i < len(b) {
			switch b[i] {
			case '\\':
				i += 2
			case '"':
				return i + 1
			default:
				i++
			}
		}
		return i
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '{', '[':
				depth++
				i++
			case '}', ']':
				depth--
				i++
				if depth == 0 {
					return i
				}
			case '"':
				i = skipValue(b, i)
			default:
				i++
			}
		}
		return i
	default: // number, true, false, null
		for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\n' && b[i] != '\r' && b[i] != '\t' {
			i++
		}
		return i
	}
}
