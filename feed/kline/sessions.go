package kline

import (
	"strings"
	"time"
)

// Exchange time: China Standard Time, UTC+8, no daylight saving.
var cst = time.FixedZone("CST", 8*3600)

// span is a session in minutes after midnight, exchange time; a night
// session that runs past midnight ends after 1440 (02:30 is 1590).
type span struct{ from, to int }

func hm(h, m int) int { return 60*h + m }

// Calendar is a product's trading sessions and so its trading days. A
// trading day D holds, in order: the night session, which starts at 21:00
// on the evening of the weekday before D (Friday evening for a Monday), and
// the day sessions on D. Holidays are not modelled.
type Calendar struct {
	Name  string
	night *span // nil: no night session
	day   []span
	// always: trading around the clock, a trading day per calendar day
	// (the simulator's demo hours, and products not in the table).
	always bool
}

// Day sessions of Chinese futures.
var (
	commodityDay = []span{{hm(9, 0), hm(10, 15)}, {hm(10, 30), hm(11, 30)}, {hm(13, 30), hm(15, 0)}}
	indexDay     = []span{{hm(9, 30), hm(11, 30)}, {hm(13, 0), hm(15, 0)}}
	bondDay      = []span{{hm(9, 30), hm(11, 30)}, {hm(13, 0), hm(15, 15)}}
)

func night(until int) *span { return &span{hm(21, 0), until} }

// Night sessions end at 23:00, 01:00 or 02:30.
var (
	night2300 = night(hm(23, 0))
	night0100 = night(24*60 + hm(1, 0))
	night0230 = night(24*60 + hm(2, 30))
)

// calendars holds each product's sessions, by "EXCHANGE.code"
// (docs/FEED.md has the same table). A product missing here trades
// around the clock (Always).
var calendars = map[string]*Calendar{}

func init() {
	add := func(n *span, day []span, products ...string) {
		for _, p := range products {
			calendars[p] = &Calendar{Name: p, night: n, day: day}
		}
	}
	add(night2300, commodityDay, "SHFE.rb", "SHFE.hc", "SHFE.ru", "SHFE.fu", "SHFE.bu", "SHFE.sp",
		"DCE.m", "DCE.y", "DCE.p", "DCE.c", "DCE.cs", "DCE.a", "DCE.b", "DCE.j", "DCE.jm", "DCE.i", "DCE.l", "DCE.v",
		"DCE.pp", "DCE.eg", "DCE.eb", "DCE.pg",
		"CZCE.TA", "CZCE.MA", "CZCE.SR", "CZCE.CF", "CZCE.FG", "CZCE.RM", "CZCE.OI", "CZCE.SA", "CZCE.PF")
	add(night0100, commodityDay, "SHFE.cu", "SHFE.al", "SHFE.zn", "SHFE.pb", "SHFE.ni", "SHFE.sn", "SHFE.ss", "INE.bc")
	add(night0230, commodityDay, "SHFE.au", "SHFE.ag", "INE.sc")
	add(nil, indexDay, "CFFEX.IF", "CFFEX.IC", "CFFEX.IH", "CFFEX.IM")
	add(nil, bondDay, "CFFEX.T", "CFFEX.TF", "CFFEX.TS", "CFFEX.TL")
}

// Always trades around the clock: each calendar day in Shanghai is a
// trading day.
var Always = &Calendar{Name: "24h", always: true}

// CalendarOf finds a symbol's product calendar ("SHFE.rb2405" →
// SHFE.rb); a product not in the table trades around the clock.
func CalendarOf(symbol string) *Calendar {
	ex, contract, ok := strings.Cut(symbol, ".")
	if !ok {
		return Always
	}
	code := strings.TrimRight(contract, "0123456789")
	if c := calendars[ex+"."+code]; c != nil {
		return c
	}
	return Always
}

// date is a calendar day in exchange time.
type date struct {
	y int
	m time.Month
	d int
}

// String writes the date as 2006-01-02.
func (d date) String() string { return d.at(0).Format("2006-01-02") }

func dateOf(t time.Time) date {
	y, m, d := t.Date()
	return date{y, m, d}
}

func (d date) at(minutes int) time.Time {
	return time.Date(d.y, d.m, d.d, 0, 0, 0, 0, cst).Add(time.Duration(minutes) * time.Minute)
}

func (d date) add(days int) date { return dateOf(d.at(0).AddDate(0, 0, days)) }

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

// Locate says which trading day t belongs to and whether t is inside one
// of its sessions. Outside every session no bar is built.
func (c *Calendar) Locate(t time.Time) (date, bool) {
	lt := t.In(cst)
	today := dateOf(lt)
	m := lt.Hour()*60 + lt.Minute()
	if c.always {
		return today, true
	}
	if weekday(today) {
		for _, s := range c.day {
			if m >= s.from && m < s.to {
				return today, true
			}
		}
	}
	if n := c.night; n != nil {
		if weekday(today) && m >= n.from && m < min(n.to, 24*60) { // the evening: tomorrow's trading day
			return nextWeekday(today), true
		}
		if yesterday := today.add(-1); n.to > 24*60 && m < n.to-24*60 && weekday(yesterday) { // past midnight
			return nextWeekday(yesterday), true
		}
	}
	return today, false
}

// Open is when trading day d begins: its night session on the weekday
// evening before, else its first day session.
func (c *Calendar) Open(d date) time.Time {
	switch {
	case c.always:
		return d.at(0)
	case c.night != nil:
		return prevWeekday(d).at(c.night.from)
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
