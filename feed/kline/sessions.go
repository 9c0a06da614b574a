package kline

import (
	"fmt"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
)

// Exchange time: China Standard Time, UTC+8, no daylight saving.
var cst = time.FixedZone("CST", 8*3600)

// span is a session in minutes after midnight, exchange time; a night
// session that runs past midnight ends after 1440 (02:30 is 1590).
type span struct{ from, to int }

// auctionWindow is how long before a trading day's open its opening call
// auction runs (20:55-20:59, 08:55-08:59, CFFEX 09:25-09:29): a tick
// stamped then carries the auction's price and volume, and goes in the
// day's first bar.
const auctionWindow = 5 * time.Minute

// closingInstant is how long after a session ends a tick still belongs to
// it: exchanges send the closing snapshot (the closing call's trades)
// stamped at the end itself, 15:00:00 or 23:00:00. It goes in the
// session's last bar.
const closingInstant = time.Second

// Calendar is a product's trading sessions, and so its trading days, with
// the exchanges' holidays. A trading day D holds, in order: the night
// session, which starts on the evening of the weekday before D (Friday
// evening for a Monday), and the day sessions on D. A night session is held
// only when both that evening and D are trading days.
type Calendar struct {
	Name  string
	night *span // nil: no night session
	day   []span
	// always: trading around the clock, a trading day per calendar day
	// (the simulator's demo hours).
	always bool
	table  *Table // holidays; nil: none
}

// Always trades around the clock: each calendar day in Shanghai is a
// trading day, holidays and weekends included.
var Always = &Calendar{Name: "24h", always: true}

// Table is the trading calendar of the exchanges: each product's sessions
// and the holidays, as configs/trading-calendar.yaml writes them.
type Table struct {
	products map[string]*Calendar // by product key (productKey)
	holidays map[date]bool
	noNight  map[date]bool
	until    date
	fallback *Calendar
}

// tableFile is the calendar file's shape.
type tableFile struct {
	Groups []struct {
		Name     string   `yaml:"name"`
		Day      []string `yaml:"day"`
		Night    string   `yaml:"night"`
		Products []string `yaml:"products"`
	} `yaml:"groups"`
	Holidays      []string `yaml:"holidays"`
	HolidaysUntil string   `yaml:"holidays_until"`
	NoNight       []string `yaml:"no_night"`
}

// ParseTable reads a trading calendar file. Products not in it trade by the
// commodity day sessions until WithDefault says otherwise.
func ParseTable(data []byte) (*Table, error) {
	var f tableFile
	if err := yaml.UnmarshalWithOptions(data, &f, yaml.Strict()); err != nil {
		return nil, fmt.Errorf("trading calendar: %s", yaml.FormatError(err, false, true))
	}
	t := &Table{products: make(map[string]*Calendar), holidays: make(map[date]bool), noNight: make(map[date]bool)}
	for _, g := range f.Groups {
		if len(g.Day) == 0 {
			return nil, fmt.Errorf("trading calendar: group %q: no day sessions", g.Name)
		}
		var day []span
		for _, s := range g.Day {
			sp, err := parseSpan(s, false)
			if err != nil {
				return nil, fmt.Errorf("trading calendar: group %q: %w", g.Name, err)
			}
			if len(day) > 0 && sp.from < day[len(day)-1].to {
				return nil, fmt.Errorf("trading calendar: group %q: sessions out of order at %s", g.Name, s)
			}
			day = append(day, sp)
		}
		var night *span
		if g.Night != "" {
			sp, err := parseSpan(g.Night, true)
			if err != nil {
				return nil, fmt.Errorf("trading calendar: group %q: night: %w", g.Name, err)
			}
			night = &sp
		}
		for _, p := range g.Products {
			key, ok := productKey(p)
			if !ok || strings.ContainsAny(p[strings.IndexByte(p, '.')+1:], "0123456789") {
				return nil, fmt.Errorf("trading calendar: group %q: %q is not EXCHANGE.code", g.Name, p)
			}
			if _, dup := t.products[key]; dup {
				return nil, fmt.Errorf("trading calendar: %s is listed twice", p)
			}
			t.products[key] = &Calendar{Name: p, night: night, day: day, table: t}
		}
	}
	for _, h := range f.Holidays {
		d, err := parseDate(h)
		if err != nil {
			return nil, fmt.Errorf("trading calendar: holidays: %w", err)
		}
		if !weekday(d) {
			return nil, fmt.Errorf("trading calendar: holidays: %s is a weekend day: list weekdays without trading", h)
		}
		t.holidays[d] = true
	}
	for _, h := range f.NoNight {
		d, err := parseDate(h)
		if err != nil {
			return nil, fmt.Errorf("trading calendar: no_night: %w", err)
		}
		t.noNight[d] = true
	}
	if f.HolidaysUntil == "" {
		return nil, fmt.Errorf("trading calendar: holidays_until is missing: the last day the holidays are known for")
	}
	var err error
	if t.until, err = parseDate(f.HolidaysUntil); err != nil {
		return nil, fmt.Errorf("trading calendar: holidays_until: %w", err)
	}
	t.fallback = &Calendar{Name: "default (day sessions)", day: []span{{hm(9, 0), hm(10, 15)}, {hm(10, 30), hm(11, 30)}, {hm(13, 30), hm(15, 0)}}, table: t}
	return t, nil
}

// WithDefault sets the sessions of products the table does not list
// (feed.default_sessions): "day" (the commodity day sessions, 09:00-10:15,
// 10:30-11:30, 13:30-15:00, no night), "always" (around the clock), or a
// listed product whose sessions they take ("SHFE.rb").
func (t *Table) WithDefault(spec string) error {
	switch spec {
	case "day":
		return nil
	case "always":
		t.fallback = Always
		return nil
	}
	key, ok := productKey(spec)
	if c := t.products[key]; ok && c != nil {
		t.fallback = &Calendar{Name: "default (as " + c.Name + ")", night: c.night, day: c.day, table: t}
		return nil
	}
	return fmt.Errorf("feed.default_sessions: %q is not day, always or a product of the trading calendar (e.g. SHFE.rb)", spec)
}

// HolidaysUntil is the last day the table's holidays are known for, at
// midnight exchange time.
func (t *Table) HolidaysUntil() time.Time { return t.until.at(0) }

// Products is how many products the table lists.
func (t *Table) Products() int { return len(t.products) }

// Lookup finds a symbol's calendar ("SHFE.rb2405" is SHFE.rb, in any
// case); known is false for a product the table does not list, which gets
// the default sessions. product is the product's key, for the caller's log.
func (t *Table) Lookup(symbol string) (c *Calendar, product string, known bool) {
	key, ok := productKey(symbol)
	if ok {
		if c := t.products[key]; c != nil {
			return c, key, true
		}
	}
	return t.fallback, key, false
}

// productKey is a symbol's product: its exchange, upper case, and the
// letters its contract starts with, lower case ("SHFE.rb", "CZCE.ta").
func productKey(symbol string) (string, bool) {
	ex, contract, ok := strings.Cut(symbol, ".")
	if !ok || ex == "" {
		return "", false
	}
	n := 0
	for n < len(contract) && ('a' <= contract[n]|0x20 && contract[n]|0x20 <= 'z') {
		n++
	}
	if n == 0 {
		return "", false
	}
	return strings.ToUpper(ex) + "." + strings.ToLower(contract[:n]), true
}

func hm(h, m int) int { return 60*h + m }

// parseSpan reads HH:MM-HH:MM; a night session may end after midnight.
func parseSpan(s string, night bool) (span, error) {
	from, to, ok := strings.Cut(s, "-")
	a, errA := parseClock(from)
	b, errB := parseClock(to)
	if !ok || errA != nil || errB != nil {
		return span{}, fmt.Errorf("%q is not HH:MM-HH:MM", s)
	}
	if night && b <= a {
		b += 24 * 60
	}
	if b <= a || b-a > 12*60 {
		return span{}, fmt.Errorf("%q ends before it starts", s)
	}
	return span{a, b}, nil
}

func parseClock(s string) (int, error) {
	t, err := time.Parse("15:04", strings.TrimSpace(s))
	if err != nil {
		return 0, err
	}
	return hm(t.Hour(), t.Minute()), nil
}

func parseDate(s string) (date, error) {
	t, err := time.Parse("2006-01-02", strings.TrimSpace(s))
	if err != nil {
		return date{}, fmt.Errorf("%q is not a date such as 2026-10-01", s)
	}
	return dateOf(t), nil
}

// date is a calendar day in exchange time.
type date struct {
	y int
	m time.Month
	d int
}

// String writes the date as 2006-01-02.
func (d date) String() string {
	var b [10]byte
	y, m := d.y, int(d.m)
	b[0], b[1], b[2], b[3] = byte('0'+y/1000%10), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10)
	b[4], b[5], b[6], b[7] = '-', byte('0'+m/10), byte('0'+m%10), '-'
	b[8], b[9] = byte('0'+d.d/10), byte('0'+d.d%10)
	return string(b[:])
}

func dateOf(t time.Time) date {
	y, m, d := t.Date()
	return date{y, m, d}
}

func (d date) at(minutes int) time.Time {
	return time.Date(d.y, d.m, d.d, 0, 0, 0, 0, cst).Add(time.Duration(minutes) * time.Minute)
}

func (d date) add(days int) date { return dateOf(d.at(0).AddDate(0, 0, days)) }

func (d date) before(e date) bool {
	if d.y != e.y {
		return d.y < e.y
	}
	if d.m != e.m {
		return d.m < e.m
	}
	return d.d < e.d
}

func weekday(d date) bool {
	wd := d.at(0).Weekday()
	return wd != time.Saturday && wd != time.Sunday
}

// nextWeekday is the first weekday after d.
func nextWeekday(d date) date {
	for d = d.add(1); !weekday(d); d = d.add(1) {
	}
	return d
}

// prevWeekday is the last weekday before d.
func prevWeekday(d date) date {
	for d = d.add(-1); !weekday(d); d = d.add(-1) {
	}
	return d
}

// trading reports whether d is a trading day: a weekday, not a holiday.
func (c *Calendar) trading(d date) bool {
	return weekday(d) && (c.table == nil || !c.table.holidays[d])
}

// nightOf reports whether a night session is held on the evening of e,
// and for which trading day: the next weekday, when e and it both trade.
func (c *Calendar) nightOf(e date) (date, bool) {
	if c.night == nil || !c.trading(e) || c.table != nil && c.table.noNight[e] {
		return date{}, false
	}
	d := nextWeekday(e)
	return d, c.trading(d)
}

// Locate says which trading day t belongs to and whether t is inside one
// of its sessions. Outside every session no bar is built.
func (c *Calendar) Locate(t time.Time) (date, bool) {
	lt := t.In(cst)
	today := dateOf(lt)
	if c.always {
		return today, true
	}
	m := lt.Hour()*60 + lt.Minute()
	if c.trading(today) {
		for _, s := range c.day {
			if m >= s.from && m < s.to {
				return today, true
			}
		}
	}
	if n := c.night; n != nil {
		if m >= n.from && m < min(n.to, 24*60) { // the evening: the next trading day's
			if d, ok := c.nightOf(today); ok {
				return d, true
			}
		}
		if n.to > 24*60 && m < n.to-24*60 { // past midnight: the evening before's
			if d, ok := c.nightOf(today.add(-1)); ok {
				return d, true
			}
		}
	}
	return today, false
}

// Place says where a tick stamped t goes: its trading day and the time its
// bars are chosen by. Inside a session that is t itself. The closing
// snapshot, up to closingInstant after a session ends, goes in the
// session's last bar; the opening call auction, in the auctionWindow
// before a trading day opens, in the day's first bar. Anything else is
// outside (ok false).
func (c *Calendar) Place(t time.Time) (day date, at time.Time, ok bool) {
	if day, ok = c.Locate(t); ok {
		return day, t, true
	}
	if day, ok = c.Locate(t.Add(-closingInstant)); ok {
		return day, t.Truncate(time.Minute).Add(-time.Nanosecond), true
	}
	if day, ok = c.Locate(t.Add(auctionWindow)); ok {
		if open := c.Open(day); open.After(t) && !open.After(t.Add(auctionWindow)) {
			return day, open, true
		}
	}
	return day, t, false
}

// Open is when trading day d begins: its night session on the weekday
// evening before, when one is held, else its first day session.
func (c *Calendar) Open(d date) time.Time {
	if c.always {
		return d.at(0)
	}
	if e := prevWeekday(d); c.night != nil {
		if nd, ok := c.nightOf(e); ok && nd == d {
			return e.at(c.night.from)
		}
	}
	return d.at(c.day[0].from)
}

// Close is when trading day d ends: its last day session's end.
func (c *Calendar) Close(d date) time.Time {
	if c.always {
		return d.at(24 * 60)
	}
	return d.at(c.day[len(c.day)-1].to)
}

// trades reports whether any session runs between from and to (within a
// week after from; a longer stretch always holds one).
func (c *Calendar) trades(from, to time.Time) bool {
	if !to.After(from) {
		return false
	}
	if to.Sub(from) > 7*24*time.Hour {
		return true
	}
	for t := from; t.Before(to); t = t.Add(time.Minute) {
		if _, in := c.Locate(t); in {
			return true
		}
	}
	if _, in := c.Locate(to.Add(-time.Nanosecond)); in {
		return true
	}
	return false
}

// Sessions finds a symbol's calendar; known is false for a product the
// calendar does not list, which gets the default sessions (product names
// it, for the caller's log). A Table's Lookup is one.
type Sessions func(symbol string) (cal *Calendar, product string, known bool)

// AlwaysOpen is Sessions around the clock for every symbol (the
// simulator's demo hours).
func AlwaysOpen(string) (*Calendar, string, bool) { return Always, "", true }

// TradingDay is the trading day t belongs to, as midnight of its date in
// exchange time, and whether t is in one of its sessions.
func (c *Calendar) TradingDay(t time.Time) (time.Time, bool) {
	d, in := c.Locate(t)
	return d.at(0), in
}

// OpenOf is when the trading day (TradingDay's) opens.
func (c *Calendar) OpenOf(day time.Time) time.Time { return c.Open(dateOf(day.In(cst))) }

// CloseOf is when the trading day closes.
func (c *Calendar) CloseOf(day time.Time) time.Time { return c.Close(dateOf(day.In(cst))) }

// PrevTradingDay is the trading day before day.
func (c *Calendar) PrevTradingDay(day time.Time) time.Time {
	d := dateOf(day.In(cst)).add(-1)
	for !c.always && !c.trading(d) {
		d = d.add(-1)
	}
	return d.at(0)
}

// Span says which trading day t belongs to and whether t is in a session,
// like TradingDay, and until when that answer holds: the next session
// boundary (or a day boundary) after t. A caller stepping through time
// asks again only then.
func (c *Calendar) Span(t time.Time) (day time.Time, in bool, until time.Time) {
	d, in := c.Locate(t)
	next := t.Truncate(time.Minute).Add(time.Minute)
	if c.always {
		tomorrow := dateOf(t.In(cst)).add(1).at(0)
		return d.at(0), in, tomorrow
	}
	// Sessions start and end on whole minutes: walk minutes to the first
	// that answers otherwise (a day at most: there is always a boundary).
	for limit := next.Add(24 * time.Hour); next.Before(limit); next = next.Add(time.Minute) {
		if nd, nin := c.Locate(next); nin != in || in && nd != d {
			break
		}
	}
	return d.at(0), in, next
}
