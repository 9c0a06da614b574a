package protocol

import "unicode/utf8"

// A scanner walks one JSON object of market data without decoding it into
// maps: validation is on every tick's path, so it reads keys and values in
// place and allocates nothing (the normalized output is written by the
// caller into one buffer).
type scanner struct {
	b   []byte
	i   int
	err error // the first fault, an *InvalidData
	// keyAt is where the last key read starts, with its quote.
	keyAt int
}

// maxDepth bounds the nesting of a collector's own values.
const maxDepth = 32

func (s *scanner) fail(reason, msg string) {
	if s.err == nil {
		s.err = &InvalidData{reason: reason, msg: msg}
	}
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// expect consumes byte c after any space.
func (s *scanner) expect(c byte) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// peek returns the next byte after any space, or 0 at the end.
func (s *scanner) peek() byte {
	s.space()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// object starts an object: it consumes '{' and reports whether it is empty
// (then '}' too).
func (s *scanner) object() (empty bool) {
	if !s.expect('{') {
		s.fail("json", "data is not a JSON object")
		return true
	}
	if s.peek() == '}' {
		s.i++
		return true
	}
	return false
}

// next moves past ',' to the next member, or past '}' at the end of the
// object; it reports whether a member follows.
func (s *scanner) next() bool {
	switch s.peek() {
	case ',':
		s.i++
		return true
	case '}':
		s.i++
		return false
	}
	s.fail("json", "data is not valid JSON: want , or } between members")
	return false
}

// key reads a member's key and its colon. raw is the key with its quotes as
// written; plain is its text when it has no escapes (else nil).
func (s *scanner) key() (raw, plain []byte) {
	s.space()
	start := s.i
	s.keyAt = start
	plain, escaped := s.str()
	if s.err != nil {
		return nil, nil
	}
	raw = s.b[start:s.i]
	if !s.expect(':') {
		s.fail("json", "data is not valid JSON: want : after a key")
		return nil, nil
	}
	if escaped {
		plain = nil
	}
	return raw, plain
}

// str reads a string at s.i: its content (escapes left as written) and
// whether it has escapes. Control characters and invalid UTF-8 are refused:
// what goes out is a WebSocket text frame.
func (s *scanner) str() (content []byte, escaped bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		s.fail("json", "data is not valid JSON: want a string")
		return nil, false
	}
	s.i++
	start, ascii := s.i, true
	for s.i < len(s.b) {
		c := s.b[s.i]
		if c >= 0x20 && c < 0x80 && c != '"' && c != '\\' { // the common case, first
			s.i++
			continue
		}
		switch {
		case c == '"':
			content = s.b[start:s.i]
			s.i++
			if !ascii && !utf8.Valid(content) {
				s.fail("json", "a string is not valid UTF-8")
			}
			return content, escaped
		case c == '\\':
			escaped = true
			if s.i+1 >= len(s.b) {
				s.i++
				continue
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.b) || !hex4(s.b[s.i+2:s.i+6]) {
					s.fail("json", "data is not valid JSON: a bad \\u escape")
					return nil, false
				}
				s.i += 6
			default:
				s.fail("json", "data is not valid JSON: a bad escape")
				return nil, false
			}
		case c < 0x20:
			s.fail("json", "data is not valid JSON: a control character in a string")
			return nil, false
		default:
			if c >= 0x80 {
				ascii = false
			}
			s.i++
		}
	}
	s.fail("json", "data is not valid JSON: an unterminated string")
	return nil, false
}

// digits skips the digits at b[i:]; ok is false when there are none.
func digits(b []byte, i int) (end int, ok bool) {
	end = i
	for end < len(b) && b[end] >= '0' && b[end] <= '9' {
		end++
	}
	return end, end > i
}

func hex4(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// number reads a JSON number literal at s.i (grammar checked) and returns
// its text.
func (s *scanner) number() []byte {
	b, i := s.b, s.i
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	ok := true
	if i < len(b) && b[i] == '0' {
		i++ // no leading zeros
	} else {
		i, ok = digits(b, i)
	}
	if ok && i < len(b) && b[i] == '.' {
		i, ok = digits(b, i+1)
	}
	if ok && i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		i, ok = digits(b, i)
	}
	if !ok {
		s.fail("json", "data is not valid JSON: a bad number")
		return nil
	}
	s.i = i
	return b[start:i]
}

// valueKind is what a value is, as far as market data cares.
type valueKind uint8

const (
	kindOther valueKind = iota // null, true, false, an object, an array
	kindString
	kindNumber
)

// scalar reads a value that should be a decimal or a time: a string (its
// content) or a number (its literal); anything else is skipped and named
// by its kind.
func (s *scanner) scalar() (text []byte, kind valueKind, escaped bool) {
	switch c := s.peek(); {
	case c == '"':
		text, escaped = s.str()
		return text, kindString, escaped
	case c == '-' || c >= '0' && c <= '9':
		// The literal's extent only: the decimal parser reads it (and
		// refuses what is not a number), so it is scanned once.
		start := s.i
		for s.i < len(s.b) {
			switch c := s.b[s.i]; {
			case c >= '0' && c <= '9' || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E':
				s.i++
				continue
			}
			break
		}
		return s.b[start:s.i], kindNumber, false
	}
	start := s.i
	s.skip(0)
	return s.b[start:s.i], kindOther, false
}

// skip moves past any JSON value, checking it.
func (s *scanner) skip(depth int) {
	if depth > maxDepth {
		s.fail("json", "data nests deeper than 32 levels")
		return
	}
	switch c := s.peek(); c {
	case '"':
		s.str()
	case '{':
		s.i++
		if s.peek() == '}' {
			s.i++
			return
		}
		for s.err == nil {
			s.space()
			s.key()
			s.skip(depth + 1)
			if !s.next() {
				return
			}
		}
	case '[':
		s.i++
		if s.peek() == ']' {
			s.i++
			return
		}
		for s.err == nil {
			s.skip(depth + 1)
			switch s.peek() {
			case ',':
				s.i++
			case ']':
				s.i++
				return
			default:
				s.fail("json", "data is not valid JSON: want , or ] in an array")
			}
		}
	case 't':
		s.literal("true")
	case 'f':
		s.literal("false")
	case 'n':
		s.literal("null")
	default:
		if c == '-' || c >= '0' && c <= '9' {
			s.number()
			return
		}
		s.fail("json", "data is not valid JSON")
	}
}

func (s *scanner) literal(word string) {
	if len(s.b)-s.i >= len(word) && string(s.b[s.i:s.i+len(word)]) == word {
		s.i += len(word)
		return
	}
	s.fail("json", "data is not valid JSON")
}

// end checks nothing but space follows the object.
func (s *scanner) end() {
	s.space()
	if s.err == nil && s.i != len(s.b) {
		s.fail("json", "data has trailing bytes")
	}
}

// appendCompact appends a checked JSON value without the space between
// its tokens.
func appendCompact(dst, v []byte) []byte {
	inString := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case inString:
			dst = append(dst, c)
			if c == '\\' && i+1 < len(v) {
				i++
				dst = append(dst, v[i])
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
			dst = append(dst, c)
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
