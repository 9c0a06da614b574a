package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// InvalidData is a market message that does not fit its channel's shape.
// Reason names the kind of fault for metrics (marketcast_feed_dropped_total
// {reason}): json, type, negative, missing, unknown_field, order, time.
type InvalidData struct {
	reason, msg string
}

func (e *InvalidData) Error() string  { return e.msg }
func (e *InvalidData) Reason() string { return e.reason }

func invalid(reason, format string, args ...any) error {
	return &InvalidData{reason: reason, msg: fmt.Sprintf(format, args...)}
}

// tickKind says how each tick key is checked.
var tickKind = map[string]numberKind{
	"last_price": anySign, "bid_price": anySign, "ask_price": anySign, "change": anySign, "change_percent": anySign,
	"open": anySign, "high": anySign, "low": anySign, "pre_settlement": anySign, "upper_limit": anySign,
	"lower_limit": anySign, "average_price": anySign,
	"bid_volume": nonNegative, "ask_volume": nonNegative, "volume": nonNegative, "turnover": nonNegative,
	"open_interest": nonNegative,
}

type numberKind uint8

const (
	anySign numberKind = iota
	nonNegative
)

// maxDecimalLen bounds one number's text: nothing in a market needs more.
const maxDecimalLen = 40

// decimal normalizes a JSON value that should be a number into a decimal
// string: a JSON string holding a plain decimal, or a JSON number (taken from
// its literal text, exponents expanded exactly, never through a float, so
// 3999.0 stays "3999.0" and never becomes "3999.0000000001").
func decimal(key string, v any, kind numberKind) (string, error) {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case json.Number:
		var ok bool
		if s, ok = plainDecimal(string(x)); !ok {
			return "", invalid("type", "%s: %s is not a decimal number", key, x)
		}
	default:
		return "", invalid("type", "%s must be a decimal string or a number, got %s", key, describe(v))
	}
	if !isDecimal(s) {
		return "", invalid("type", "%s: %q is not a decimal number (want digits with an optional . and sign)", key, s)
	}
	if kind == nonNegative && s[0] == '-' && strings.Trim(s, "-0.") != "" {
		return "", invalid("negative", "%s must not be negative, got %s", key, s)
	}
	return s, nil
}

func describe(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func isDecimal(s string) bool {
	if len(s) == 0 || len(s) > maxDecimalLen {
		return false
	}
	i := 0
	if s[0] == '-' {
		i = 1
	}
	digits, dot := 0, false
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' && !dot && digits > 0 && i < len(s)-1:
			dot = true
		default:
			return false
		}
	}
	return digits > 0
}

// plainDecimal writes a JSON number literal without an exponent, exactly.
func plainDecimal(lit string) (string, bool) {
	if len(lit) > maxDecimalLen {
		return "", false
	}
	mant, exp, hasExp := strings.Cut(strings.ToLower(lit), "e")
	if !hasExp {
		return lit, true
	}
	e := 0
	if _, err := fmt.Sscanf(exp, "%d", &e); err != nil || e > maxDecimalLen || e < -maxDecimalLen {
		return "", false
	}
	neg := strings.HasPrefix(mant, "-")
	mant = strings.TrimPrefix(mant, "-")
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := intPart + frac
	point := len(intPart) + e // position of the decimal point in digits
	switch {
	case point <= 0:
		digits = strings.Repeat("0", 1-point) + digits
		point = 1
	case point > len(digits):
		digits += strings.Repeat("0", point-len(digits))
	}
	out := strings.TrimLeft(digits[:point], "0")
	if out == "" {
		out = "0"
	}
	if rest := digits[point:]; rest != "" {
		out += "." + rest
	}
	if neg {
		out = "-" + out
	}
	return out, len(out) <= maxDecimalLen
}

// exchangeTime reads an RFC 3339 exchange time and writes it in the wire
// layout.
func exchangeTime(key string, v any) (string, time.Time, error) {
	s, ok := v.(string)
	if !ok {
		return "", time.Time{}, invalid("type", "%s must be an RFC 3339 time string, got %s", key, describe(v))
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return "", time.Time{}, invalid("time", "%s: %q is not an RFC 3339 time", key, s)
	}
	return t.UTC().Format(TimeLayout), t, nil
}

// MaxTimeAhead is how far ahead of the server's clock a tick or a book may
// be stamped. Bars close by the market's clock, which follows the exchange
// times it sees; one collector with its clock a day ahead would otherwise
// close every bar of every symbol as soon as it opens. The past is not
// bounded: a replay carries the times it recorded.
const MaxTimeAhead = 5 * time.Minute

// quoteTime reads the exchange time of a tick or a book.
func quoteTime(key string, v any) (string, time.Time, error) {
	s, t, err := exchangeTime(key, v)
	if err == nil && time.Until(t) > MaxTimeAhead {
		err = invalid("time", "%s %s is more than %s ahead of this server's clock", key, s, MaxTimeAhead)
	}
	return s, t, err
}

// decodeObject decodes a data object keeping numbers as their literal text.
func decodeObject(data []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil || m == nil {
		return nil, invalid("json", "data is not a JSON object")
	}
	if d.More() {
		return nil, invalid("json", "data has trailing bytes")
	}
	return m, nil
}

// object writes keys in order as a compact JSON object.
type object struct{ b []byte }

func (o *object) put(key string, v any) {
	if len(o.b) == 0 {
		o.b = append(o.b, '{')
	} else {
		o.b = append(o.b, ',')
	}
	kb, _ := json.Marshal(key)
	vb, _ := json.Marshal(v)
	o.b = append(append(append(o.b, kb...), ':'), vb...)
}

func (o *object) bytes() []byte {
	if len(o.b) == 0 {
		return []byte("{}")
	}
	return append(o.b, '}')
}

// marketData checks and normalizes a market message's data for its
// channel. It returns the normalized object and the exchange time the data
// carries (zero if none).
func marketData(c *Channel, data []byte) ([]byte, time.Time, error) {
	m, err := decodeObject(data)
	if err != nil {
		return nil, time.Time{}, err
	}
	switch {
	case c == Tick:
		return tickData(m)
	case c == Depth:
		return depthData(m)
	case c.Kline():
		return barData(m)
	}
	return nil, time.Time{}, invalid("type", "no market shape for channel %s", c.Push)
}

func tickData(m map[string]any) ([]byte, time.Time, error) {
	var at time.Time
	if v, ok := m["timestamp"]; ok { // a collector's name for the exchange time
		if _, dup := m["update_time"]; dup {
			return nil, at, invalid("unknown_field", "send the exchange time as update_time or timestamp, not both")
		}
		m["update_time"] = v
		delete(m, "timestamp")
	}
	if _, ok := m["last_price"]; !ok {
		return nil, at, invalid("missing", "a tick needs last_price")
	}
	var o object
	for _, k := range TickFields {
		v, ok := m[k]
		if !ok {
			continue
		}
		if k == "update_time" {
			s, t, err := quoteTime(k, v)
			if err != nil {
				return nil, at, err
			}
			at = t
			o.put(k, s)
			continue
		}
		s, err := decimal(k, v, tickKind[k])
		if err != nil {
			return nil, at, err
		}
		o.put(k, s)
	}
	// Keys beyond the tick's are kept as sent, after them: a collector may
	// carry its own (a trading day, an exchange sequence).
	var extra []string
	for k := range m {
		if !slices.Contains(TickFields, k) {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra)
	for _, k := range extra {
		o.put(k, m[k])
	}
	return o.bytes(), at, nil
}

func depthData(m map[string]any) ([]byte, time.Time, error) {
	var at time.Time
	for k := range m {
		switch k {
		case "bids", "asks", "levels", "update_time", "timestamp":
		default:
			return nil, at, invalid("unknown_field", "unknown depth key %q; keys: bids, asks, levels, update_time", k)
		}
	}
	side := func(name string, better func(a, b string) bool) ([][2]string, error) {
		raw, ok := m[name]
		if !ok {
			return [][2]string{}, nil
		}
		levels, ok := raw.([]any)
		if !ok {
			return nil, invalid("type", "%s must be an array of [price, volume], got %s", name, describe(raw))
		}
		out := make([][2]string, 0, len(levels))
		for i, l := range levels {
			pair, ok := l.([]any)
			if !ok || len(pair) != 2 {
				return nil, invalid("type", "%s[%d] must be [price, volume]", name, i)
			}
			p, err := decimal(fmt.Sprintf("%s[%d] price", name, i), pair[0], anySign)
			if err != nil {
				return nil, err
			}
			v, err := decimal(fmt.Sprintf("%s[%d] volume", name, i), pair[1], nonNegative)
			if err != nil {
				return nil, err
			}
			if i > 0 && !better(out[i-1][0], p) {
				return nil, invalid("order", "%s must be best first with distinct prices: %s then %s", name, out[i-1][0], p)
			}
			out = append(out, [2]string{p, v})
		}
		return out, nil
	}
	bids, err := side("bids", func(a, b string) bool { return compareDecimal(a, b) > 0 })
	if err != nil {
		return nil, at, err
	}
	asks, err := side("asks", func(a, b string) bool { return compareDecimal(a, b) < 0 })
	if err != nil {
		return nil, at, err
	}
	if len(bids) > 0 && len(asks) > 0 && compareDecimal(bids[0][0], asks[0][0]) >= 0 {
		return nil, at, invalid("order", "crossed book: best bid %s >= best ask %s", bids[0][0], asks[0][0])
	}
	var o object
	o.put("bids", bids)
	o.put("asks", asks)
	o.put("levels", max(len(bids), len(asks))) // what is sent, whatever the collector said
	for _, k := range []string{"update_time", "timestamp"} {
		if v, ok := m[k]; ok {
			s, t, err := quoteTime(k, v)
			if err != nil {
				return nil, at, err
			}
			at = t
			o.put("update_time", s)
			break
		}
	}
	return o.bytes(), at, nil
}

// barKeys are a bar's keys in wire order.
var barKeys = []string{"open", "high", "low", "close", "volume", "turnover", "start_time", "end_time", "partial", "closed"}

func barData(m map[string]any) ([]byte, time.Time, error) {
	for k := range m {
		if !slices.Contains(barKeys, k) {
			return nil, time.Time{}, invalid("unknown_field", "unknown kline key %q; keys: %s", k, strings.Join(barKeys, ", "))
		}
	}
	var o object
	vals := map[string]string{}
	for _, k := range barKeys[:6] {
		v, ok := m[k]
		if !ok {
			return nil, time.Time{}, invalid("missing", "a bar needs %s", k)
		}
		kind := anySign
		if k == "volume" || k == "turnover" {
			kind = nonNegative
		}
		s, err := decimal(k, v, kind)
		if err != nil {
			return nil, time.Time{}, err
		}
		vals[k] = s
		o.put(k, s)
	}
	if compareDecimal(vals["high"], vals["low"]) < 0 ||
		compareDecimal(vals["high"], vals["open"]) < 0 || compareDecimal(vals["high"], vals["close"]) < 0 ||
		compareDecimal(vals["low"], vals["open"]) > 0 || compareDecimal(vals["low"], vals["close"]) > 0 {
		return nil, time.Time{}, invalid("order", "bar prices out of order: open %s high %s low %s close %s", vals["open"], vals["high"], vals["low"], vals["close"])
	}
	var times [2]time.Time
	for i, k := range []string{"start_time", "end_time"} {
		v, ok := m[k]
		if !ok {
			return nil, time.Time{}, invalid("missing", "a bar needs %s", k)
		}
		s, t, err := exchangeTime(k, v)
		if err != nil {
			return nil, time.Time{}, err
		}
		times[i] = t
		o.put(k, s)
	}
	if !times[1].After(times[0]) {
		return nil, time.Time{}, invalid("time", "end_time must be after start_time")
	}
	for _, k := range []string{"partial", "closed"} {
		b := false
		if v, ok := m[k]; ok {
			isBool := false
			if b, isBool = v.(bool); !isBool {
				return nil, time.Time{}, invalid("type", "%s must be true or false, got %s", k, describe(v))
			}
		}
		if b || k == "closed" { // partial only when true
			o.put(k, b)
		}
	}
	return o.bytes(), times[0], nil
}

// compareDecimal compares two decimal strings by value.
func compareDecimal(a, b string) int {
	na, nb := strings.HasPrefix(a, "-"), strings.HasPrefix(b, "-")
	if na != nb {
		if isZero(a) && isZero(b) {
			return 0
		}
		if na {
			return -1
		}
		return 1
	}
	c := compareMagnitude(strings.TrimPrefix(a, "-"), strings.TrimPrefix(b, "-"))
	if na {
		return -c
	}
	return c
}

func isZero(s string) bool { return strings.Trim(s, "-0.") == "" }

func compareMagnitude(a, b string) int {
	ai, af, _ := strings.Cut(a, ".")
	bi, bf, _ := strings.Cut(b, ".")
	ai, bi = strings.TrimLeft(ai, "0"), strings.TrimLeft(bi, "0")
	if len(ai) != len(bi) {
		if len(ai) < len(bi) {
			return -1
		}
		return 1
	}
	if c := strings.Compare(ai, bi); c != 0 {
		return c
	}
	for len(af) < len(bf) {
		af += "0"
	}
	for len(bf) < len(af) {
		bf += "0"
	}
	return strings.Compare(af, bf)
}
