package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/marketcast/marketcast/protocol/decimal"
)

// InvalidData is a market message that does not fit its channel's shape.
// Reason names the kind of fault for metrics (marketcast_feed_dropped_total
// {reason}): json, type, negative, missing, unknown_field, order, time,
// ahead.
type InvalidData struct {
	reason, msg string
}

func (e *InvalidData) Error() string  { return e.msg }
func (e *InvalidData) Reason() string { return e.reason }

func invalid(reason, format string, args ...any) error {
	return &InvalidData{reason: reason, msg: fmt.Sprintf(format, args...)}
}

// Quote is what a tick's values mean to the server beyond their text: the
// bar builder's inputs and the order of a symbol's ticks, parsed once by
// validation from the same text that goes out, so the two never disagree.
type Quote struct {
	Price, Volume, Turnover, OpenInterest decimal.Decimal
	// Open, High and Low are the trading day's (CTP sends them).
	Open, High, Low decimal.Decimal
	// Has says which of the values the tick carries.
	Has QuoteFields
	// Known is how many bytes of the publication's data hold the tick's
	// known keys; a collector's own keys follow. Two copies of one tick
	// from two collectors agree on this prefix.
	Known int
}

// QuoteFields is a set of Quote values.
type QuoteFields uint16

// The values a Quote may have, and what validation did to its time.
const (
	HasPrice QuoteFields = 1 << iota
	HasVolume
	HasTurnover
	HasOpenInterest
	HasOpen
	HasHigh
	HasLow
	// HasTime: the tick carries an exchange time (Publication.Time).
	HasTime
	// TimeCorrected: its date was corrected (CTP's ActionDay on a night
	// session), as Rules.quoteTime says.
	TimeCorrected
	// Zoneless: its time was written without a zone and read in
	// Rules.Zone.
	Zoneless
)

// The tick's keys by their index in TickFields.
const (
	tfLast = iota
	tfBid
	tfAsk
	tfBidVolume
	tfAskVolume
	tfVolume
	tfTurnover
	tfOpenInterest
	tfChange
	tfChangePercent
	tfUpdateTime
	tfOpen
	tfHigh
	tfLow
	tfPreSettlement
	tfUpperLimit
	tfLowerLimit
	tfAveragePrice
	tickFieldCount
)

// tickIndex finds a tick key; alias reports "timestamp", the collectors'
// other name for update_time.
func tickIndex(k []byte) (i int, alias bool) {
	switch string(k) { // no allocation: the compiler compares in place
	case "last_price":
		return tfLast, false
	case "bid_price":
		return tfBid, false
	case "ask_price":
		return tfAsk, false
	case "bid_volume":
		return tfBidVolume, false
	case "ask_volume":
		return tfAskVolume, false
	case "volume":
		return tfVolume, false
	case "turnover":
		return tfTurnover, false
	case "open_interest":
		return tfOpenInterest, false
	case "change":
		return tfChange, false
	case "change_percent":
		return tfChangePercent, false
	case "update_time":
		return tfUpdateTime, false
	case "timestamp":
		return tfUpdateTime, true
	case "open":
		return tfOpen, false
	case "high":
		return tfHigh, false
	case "low":
		return tfLow, false
	case "pre_settlement":
		return tfPreSettlement, false
	case "upper_limit":
		return tfUpperLimit, false
	case "lower_limit":
		return tfLowerLimit, false
	case "average_price":
		return tfAveragePrice, false
	}
	return -1, false
}

// nonNegative are the tick keys that may not be below zero.
func nonNegative(i int) bool {
	switch i {
	case tfBidVolume, tfAskVolume, tfVolume, tfTurnover, tfOpenInterest:
		return true
	}
	return false
}

// noValueExp is the decimal exponent from which a number means "no value":
// CTP fills a field it has nothing for with DBL_MAX (1.7976931348623157e308),
// an empty ask at a limit-up say. Nothing a market quotes comes near.
const noValueExp = 300

// isNoValue reports whether a number literal is at least 1e300 in
// magnitude.
func isNoValue(lit []byte) bool {
	i := 0
	if i < len(lit) && lit[i] == '-' {
		i++
	}
	intDigits, lead := 0, true
	for ; i < len(lit) && lit[i] >= '0' && lit[i] <= '9'; i++ {
		if lead && lit[i] == '0' {
			continue
		}
		lead = false
		intDigits++
	}
	for i < len(lit) && (lit[i] == '.' || lit[i] >= '0' && lit[i] <= '9') {
		i++
	}
	if i >= len(lit) || lit[i] != 'e' && lit[i] != 'E' {
		return intDigits > noValueExp
	}
	i++
	neg := false
	if i < len(lit) && (lit[i] == '+' || lit[i] == '-') {
		neg = lit[i] == '-'
		i++
	}
	e := 0
	for ; i < len(lit) && lit[i] >= '0' && lit[i] <= '9' && e < 10000; i++ {
		e = e*10 + int(lit[i]-'0')
	}
	if neg {
		e = -e
	}
	return intDigits > 0 && intDigits-1+e >= noValueExp
}

// decimal reads a value that should be a decimal: a JSON string holding
// one, or a JSON number. absent is true for "no value": an empty string, or
// a number of 1e300 or more (isNoValue).
func (s *scanner) decimal(key string) (d decimal.Decimal, absent bool) {
	text, kind, escaped := s.scalar()
	if s.err != nil {
		return d, false
	}
	if kind == kindOther {
		s.err = invalid("type", "%s must be a decimal string or a number, got %s", key, describeRaw(text))
		return d, false
	}
	if escaped {
		s.err = invalid("type", "%s: %q is not a decimal number (want digits with an optional . and sign)", key, text)
		return d, false
	}
	if kind == kindString && len(text) == 0 {
		return d, true // "": no value, as a collector writes an empty field
	}
	d, err := decimal.Parse(text)
	switch {
	case err == nil:
		return d, false
	case errors.Is(err, decimal.ErrRange) && isNoValue(text):
		return d, true
	case kind == kindNumber:
		s.err = invalid("type", "%s: %s is not a decimal number (%v)", key, text, err)
	default:
		s.err = invalid("type", "%s: %q is not a decimal number (want digits with an optional . and sign)", key, text)
	}
	return d, false
}

func describeRaw(v []byte) string {
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	case '[':
		return "an array"
	case '{':
		return "an object"
	}
	return "something else"
}

// time reads an exchange time. Quotes (ticks, books) are checked against
// the server's clock.
func (s *scanner) time(key string, r *Rules, quote bool) (t time.Time, flags QuoteFields) {
	text, kind, escaped := s.scalar()
	if s.err != nil {
		return t, 0
	}
	if kind != kindString {
		s.err = invalid("type", "%s must be a time string (RFC 3339), got %s", key, describeRaw(text))
		return t, 0
	}
	t, zoneless, ok := parseTime(text, r.zone())
	if !ok || escaped {
		s.err = invalid("time", "%s: %q is not a time (RFC 3339, e.g. 2026-11-25T21:01:30.500+08:00; without a zone it is read in %s)",
			key, text, r.zone())
		return t, 0
	}
	// What goes out has milliseconds: order and compare by them too.
	t = t.Truncate(time.Millisecond)
	if zoneless {
		flags |= Zoneless
	}
	if quote {
		checked, corrected, ok := r.quoteTime(t)
		if !ok {
			s.err = invalid("ahead", "%s %s is more than %s ahead of this server's clock (feed.max_time_ahead)",
				key, t.UTC().Format(TimeLayout), r.maxAhead())
			return t, 0
		}
		if corrected {
			flags |= TimeCorrected
		}
		t = checked
	}
	return t, flags | HasTime
}

// span is a member of the object kept as written: a collector's own key.
type span struct{ key, val [2]int }

// extras collects a collector's own keys, to write after the known ones,
// sorted. The first few stay in place (no allocation).
type extras struct {
	fixed [12]span
	n     int
	more  []span
}

func (e *extras) add(sp span) {
	if e.n < len(e.fixed) {
		e.fixed[e.n] = sp
		e.n++
		return
	}
	if e.more == nil {
		e.more = append(make([]span, 0, 2*len(e.fixed)), e.fixed[:]...)
	}
	e.more = append(e.more, sp)
}

// appendSorted writes the members sorted by key (insertion sort: there are
// few); a key given twice is an error.
func (e *extras) appendSorted(dst, src []byte) ([]byte, error) {
	l := e.fixed[:e.n]
	if e.more != nil {
		l = e.more
	}
	for i := 1; i < len(l); i++ {
		for j := i; j > 0 && bytes.Compare(src[l[j-1].key[0]:l[j-1].key[1]], src[l[j].key[0]:l[j].key[1]]) > 0; j-- {
			l[j-1], l[j] = l[j], l[j-1]
		}
	}
	for i := range l {
		k := src[l[i].key[0]:l[i].key[1]]
		if i > 0 && bytes.Equal(src[l[i-1].key[0]:l[i-1].key[1]], k) {
			return dst, invalid("json", "key %s given twice", k)
		}
		dst = append(dst, ',')
		dst = append(dst, k...)
		dst = append(dst, ':')
		dst = appendCompact(dst, src[l[i].val[0]:l[i].val[1]])
	}
	return dst, nil
}

// marketData checks and normalizes a market message's data for its
// channel, filling p's Data, Time, Final and Quote.
func marketData(c *Channel, data []byte, r *Rules, p *Publication) error {
	switch {
	case c == Tick:
		return tickData(data, r, p)
	case c == Depth:
		return depthData(data, r, p)
	case c.Kline():
		return barData(data, p)
	}
	return invalid("type", "no market shape for channel %s", c.Push)
}

// tickData checks a tick and writes it normalized: the known keys in
// TickFields order, numbers as decimal strings, the exchange time in UTC,
// then the collector's own keys, sorted.
func tickData(data []byte, r *Rules, p *Publication) error {
	s := scanner{b: data}
	var (
		vals    [tickFieldCount]decimal.Decimal
		present uint32 // known keys seen
		given   uint32 // known keys with a value (not "no value")
		alias   bool
		at      time.Time
		flags   QuoteFields
		own     extras
	)
	for more := !s.object(); more && s.err == nil; more = s.next() {
		rawKey, k := s.key()
		if s.err != nil {
			break
		}
		keyAt := s.keyAt // skipping a nested value reads other keys
		i, isAlias := -1, false
		if k != nil {
			i, isAlias = tickIndex(k)
		}
		if i < 0 {
			s.space()
			start := s.i
			s.skip(0)
			own.add(span{key: [2]int{keyAt, keyAt + len(rawKey)}, val: [2]int{start, s.i}})
			continue
		}
		if present&(1<<i) != 0 {
			if isAlias || alias || i == tfUpdateTime {
				return invalid("unknown_field", "send the exchange time as update_time or timestamp, not both")
			}
			return invalid("json", "key %s given twice", k)
		}
		present |= 1 << i
		alias = alias || isAlias
		if i == tfUpdateTime {
			var f QuoteFields
			at, f = s.time(TickFields[i], r, true)
			flags |= f
			given |= 1 << i
			continue
		}
		d, absent := s.decimal(TickFields[i])
		if s.err != nil || absent {
			continue
		}
		if nonNegative(i) && d.Sign() < 0 {
			return invalid("negative", "%s must not be negative, got %s", TickFields[i], d)
		}
		vals[i] = d
		given |= 1 << i
	}
	s.end()
	if s.err != nil {
		return s.err
	}
	if given&(1<<tfLast) == 0 {
		if present&(1<<tfLast) != 0 {
			return invalid("missing", "last_price has no value (%s)", "1.7976931348623157e+308, CTP's DBL_MAX")
		}
		return invalid("missing", "a tick needs last_price")
	}
	out := make([]byte, 0, len(data)+64)
	out = append(out, '{')
	for i := range tickFieldCount {
		if given&(1<<i) == 0 {
			continue
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(out, '"')
		out = append(out, TickFields[i]...)
		out = append(out, '"', ':', '"')
		if i == tfUpdateTime {
			out = appendTime(out, at)
		} else {
			out = vals[i].Append(out)
		}
		out = append(out, '"')
	}
	known := len(out)
	out, err := own.appendSorted(out, data)
	if err != nil {
		return err
	}
	p.Data, p.Time = append(out, '}'), at
	q := &p.Quote
	*q = Quote{Price: vals[tfLast], Volume: vals[tfVolume], Turnover: vals[tfTurnover], OpenInterest: vals[tfOpenInterest],
		Open: vals[tfOpen], High: vals[tfHigh], Low: vals[tfLow], Has: flags | HasPrice, Known: known}
	for _, f := range [...]struct {
		i   int
		has QuoteFields
	}{{tfVolume, HasVolume}, {tfTurnover, HasTurnover}, {tfOpenInterest, HasOpenInterest}, {tfOpen, HasOpen}, {tfHigh, HasHigh}, {tfLow, HasLow}} {
		if given&(1<<f.i) != 0 {
			q.Has |= f.has
		}
	}
	return nil
}

// depthData checks a book: bids falling and asks rising, distinct prices,
// not crossed; levels is recomputed from what is sent.
func depthData(data []byte, r *Rules, p *Publication) error {
	s := scanner{b: data}
	var (
		sides   [2][2]int // bids, asks: where each array is in data
		seen    uint8
		at      time.Time
		hasTime bool
	)
	for more := !s.object(); more && s.err == nil; more = s.next() {
		_, k := s.key()
		if s.err != nil {
			break
		}
		var bit uint8
		switch string(k) {
		case "bids":
			bit = 1
		case "asks":
			bit = 2
		case "levels":
			bit = 4
		case "update_time", "timestamp":
			bit = 8
		default:
			return invalid("unknown_field", "unknown depth key %q; keys: bids, asks, levels, update_time", k)
		}
		if seen&bit != 0 {
			if bit == 8 {
				return invalid("unknown_field", "send the exchange time as update_time or timestamp, not both")
			}
			return invalid("json", "key %s given twice", k)
		}
		seen |= bit
		switch bit {
		case 1, 2:
			s.space()
			start := s.i
			s.skip(0)
			sides[bit-1] = [2]int{start, s.i}
		case 4:
			s.skip(0) // recomputed
		case 8:
			at, p.Quote.Has = s.time(string(k), r, true)
			hasTime = s.err == nil
		}
	}
	s.end()
	if s.err != nil {
		return s.err
	}
	if !hasTime {
		p.Quote.Has = 0
	}
	out := make([]byte, 0, len(data)+64)
	var best [2]decimal.Decimal
	var count [2]int
	for side, name := range [2]string{"bids", "asks"} {
		if side == 0 {
			out = append(out, `{"bids":[`...)
		} else {
			out = append(out, `],"asks":[`...)
		}
		if seen&(1<<side) == 0 {
			continue
		}
		var err error
		out, best[side], count[side], err = bookSide(out, data[sides[side][0]:sides[side][1]], name, side == 0)
		if err != nil {
			return err
		}
	}
	if count[0] > 0 && count[1] > 0 && best[0].Cmp(best[1]) >= 0 {
		return invalid("order", "crossed book: best bid %s >= best ask %s", best[0], best[1])
	}
	out = append(out, `],"levels":`...)
	out = appendInt(out, max(count[0], count[1])) // what is sent, whatever the collector said
	if hasTime {
		out = append(out, `,"update_time":"`...)
		out = appendTime(out, at)
		out = append(out, '"')
	}
	p.Data, p.Time = append(out, '}'), at
	return nil
}

// bookSide checks one side's levels and appends them as [["price","volume"],…].
func bookSide(out, arr []byte, name string, bids bool) ([]byte, decimal.Decimal, int, error) {
	priceKey, volumeKey := "asks price", "asks volume" // constants: no string built per level
	if bids {
		priceKey, volumeKey = "bids price", "bids volume"
	}
	s := scanner{b: arr}
	var best, prev decimal.Decimal
	n := 0
	if s.peek() != '[' {
		_, kind, _ := s.scalar()
		if kind != kindOther || s.err != nil {
			return out, best, 0, invalid("type", "%s must be an array of [price, volume]", name)
		}
		return out, best, 0, invalid("type", "%s must be an array of [price, volume], got %s", name, describeRaw(arr))
	}
	s.i++
	if s.peek() == ']' {
		return out, best, 0, nil
	}
	for level := 0; ; level++ {
		if !s.expect('[') {
			return out, best, 0, invalid("type", "%s[%d] must be [price, volume]", name, level)
		}
		price, noPrice := s.decimal(priceKey)
		if s.err == nil && !s.expect(',') {
			return out, best, 0, invalid("type", "%s[%d] must be [price, volume]", name, level)
		}
		vol, noVol := s.decimal(volumeKey)
		if s.err == nil && !s.expect(']') {
			return out, best, 0, invalid("type", "%s[%d] must be [price, volume]", name, level)
		}
		if s.err != nil {
			return out, best, 0, s.err
		}
		if !noVol && vol.Sign() < 0 {
			return out, best, 0, invalid("negative", "%s[%d] volume must not be negative, got %s", name, level, vol)
		}
		if !noPrice && !noVol { // an empty level (CTP's DBL_MAX) is left out
			if n > 0 {
				if c := prev.Cmp(price); bids && c <= 0 || !bids && c >= 0 {
					return out, best, 0, invalid("order", "%s must be best first with distinct prices: %s then %s", name, prev, price)
				}
				out = append(out, ',')
			} else {
				best = price
			}
			out = append(out, '[', '"')
			out = price.Append(out)
			out = append(out, '"', ',', '"')
			out = vol.Append(out)
			out = append(out, '"', ']')
			prev = price
			n++
		}
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			s.end()
			if s.err != nil {
				return out, best, 0, s.err
			}
			return out, best, n, nil
		default:
			return out, best, 0, invalid("type", "%s must be an array of [price, volume]", name)
		}
	}
}

func appendInt(dst []byte, n int) []byte {
	return decimal.New(int64(n), 0).Append(dst)
}

// BarKeys are a bar's data keys in wire order; open_interest (the last
// tick's in the bar), trading_day and partial are optional.
var BarKeys = []string{"open", "high", "low", "close", "volume", "turnover", "open_interest", "start_time", "end_time",
	"trading_day", "partial", "closed"}

// barData checks a bar a feed built itself.
func barData(data []byte, p *Publication) error {
	s := scanner{b: data}
	var (
		vals  [7]decimal.Decimal // open … open_interest
		times [2]time.Time
		day   [10]byte
		flags [2]bool // partial, closed
		seen  uint16
	)
	for more := !s.object(); more && s.err == nil; more = s.next() {
		_, k := s.key()
		if s.err != nil {
			break
		}
		i := -1
		for j, name := range BarKeys {
			if string(k) == name {
				i = j
				break
			}
		}
		if i < 0 {
			return invalid("unknown_field", "unknown kline key %q; keys: open, high, low, close, volume, turnover, open_interest, "+
				"start_time, end_time, trading_day, partial, closed", k)
		}
		if seen&(1<<i) != 0 {
			return invalid("json", "key %s given twice", k)
		}
		seen |= 1 << i
		switch {
		case i < 7:
			d, absent := s.decimal(BarKeys[i])
			if s.err != nil {
				break
			}
			if absent {
				return invalid("type", "%s has no value", BarKeys[i])
			}
			if i >= 4 && d.Sign() < 0 {
				return invalid("negative", "%s must not be negative, got %s", BarKeys[i], d)
			}
			vals[i] = d
		case i == 7 || i == 8:
			times[i-7], _ = s.time(BarKeys[i], nil, false)
		case i == 9:
			text, kind, _ := s.scalar()
			if s.err == nil && (kind != kindString || !tradingDay(text, day[:])) {
				return invalid("type", "trading_day must be a date such as 2026-11-25, got %s", text)
			}
		default:
			v := s.peek()
			s.skip(0)
			if s.err == nil && v != 't' && v != 'f' {
				return invalid("type", "%s must be true or false", BarKeys[i])
			}
			flags[i-10] = v == 't'
		}
	}
	s.end()
	if s.err != nil {
		return s.err
	}
	for i, k := range BarKeys[:9] {
		if i != 6 && seen&(1<<i) == 0 {
			return invalid("missing", "a bar needs %s", k)
		}
	}
	o, h, l, c := vals[0], vals[1], vals[2], vals[3]
	if h.Cmp(l) < 0 || h.Cmp(o) < 0 || h.Cmp(c) < 0 || l.Cmp(o) > 0 || l.Cmp(c) > 0 {
		return invalid("order", "bar prices out of order: open %s high %s low %s close %s", o, h, l, c)
	}
	if !times[1].After(times[0]) {
		return invalid("time", "end_time must be after start_time")
	}
	b := Bar{Open: o, High: h, Low: l, Close: c, Volume: vals[4], Turnover: vals[5], Start: times[0], End: times[1],
		Partial: flags[0], Closed: flags[1]}
	if seen&(1<<6) != 0 {
		b.OpenInterest, b.HasOpenInterest = vals[6], true
	}
	if seen&(1<<9) != 0 {
		b.TradingDay = string(day[:])
	}
	p.Data, p.Time, p.Final = b.AppendJSON(make([]byte, 0, 256)), times[0], b.Closed
	return nil
}

// tradingDay reads a date (2026-11-25 or 20261125) into out as 2026-11-25.
func tradingDay(text []byte, out []byte) bool {
	var digits [8]byte
	n := 0
	for i, c := range text {
		switch {
		case c >= '0' && c <= '9' && n < 8:
			digits[n] = c
			n++
		case c == '-' && len(text) == 10 && (i == 4 || i == 7):
		default:
			return false
		}
	}
	if n != 8 || len(text) != 8 && len(text) != 10 {
		return false
	}
	copy(out, digits[:4])
	out[4] = '-'
	copy(out[5:], digits[4:6])
	out[7] = '-'
	copy(out[8:], digits[6:8])
	t, err := time.Parse("2006-01-02", string(out))
	return err == nil && !t.IsZero()
}

// Bar is a kline bar's values: what the bar builder makes and what a feed's
// own bars are checked into, rendered by AppendJSON.
type Bar struct {
	Open, High, Low, Close decimal.Decimal
	Volume, Turnover       decimal.Decimal
	// OpenInterest is the last tick's in the bar, when ticks carry it.
	OpenInterest    decimal.Decimal
	HasOpenInterest bool
	Start, End      time.Time
	// TradingDay is the trading day the bar belongs to, 2026-11-25 ("" when
	// a feed's own bar does not say).
	TradingDay string
	// Partial marks a bar its builder did not see from its start.
	Partial bool
	// Closed marks the bar's final message.
	Closed bool
}

// AppendJSON appends the bar's data object, keys in BarKeys order. Bars are
// the most frequent messages a node makes itself (six per tick), so they
// are written by hand.
func (b *Bar) AppendJSON(dst []byte) []byte {
	dst = appendDecimalField(dst, '{', "open", b.Open)
	dst = appendDecimalField(dst, ',', "high", b.High)
	dst = appendDecimalField(dst, ',', "low", b.Low)
	dst = appendDecimalField(dst, ',', "close", b.Close)
	dst = appendDecimalField(dst, ',', "volume", b.Volume)
	dst = appendDecimalField(dst, ',', "turnover", b.Turnover)
	if b.HasOpenInterest {
		dst = appendDecimalField(dst, ',', "open_interest", b.OpenInterest)
	}
	dst = append(dst, `,"start_time":"`...)
	dst = appendTime(dst, b.Start)
	dst = append(dst, `","end_time":"`...)
	dst = appendTime(dst, b.End)
	dst = append(dst, '"')
	if b.TradingDay != "" {
		dst = append(dst, `,"trading_day":"`...)
		dst = append(dst, b.TradingDay...)
		dst = append(dst, '"')
	}
	if b.Partial {
		dst = append(dst, `,"partial":true`...)
	}
	if b.Closed {
		return append(dst, `,"closed":true}`...)
	}
	return append(dst, `,"closed":false}`...)
}

// appendDecimalField appends sep"key":"value".
func appendDecimalField(dst []byte, sep byte, key string, d decimal.Decimal) []byte {
	dst = append(dst, sep, '"')
	dst = append(dst, key...)
	dst = append(dst, '"', ':', '"')
	dst = d.Append(dst)
	return append(dst, '"')
}

// QuoteOf returns a tick publication's Quote: the one validation filled,
// or, for a tick built in process (the simulator's, a test's), read from
// its data. ok is false when the data is not a tick.
func QuoteOf(p *Publication) (q Quote, ok bool) {
	if p.Quote.Has&HasPrice != 0 {
		return p.Quote, true
	}
	var scratch Publication
	// Built in process: its time is the source's to choose.
	if err := tickData(p.Data, &Rules{MaxAhead: 1 << 62}, &scratch); err != nil {
		return q, false
	}
	return scratch.Quote, true
}
