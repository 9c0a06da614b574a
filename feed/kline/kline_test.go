package kline

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/marketcast/marketcast/protocol"
	"github.com/marketcast/marketcast/protocol/decimal"
)

// table is the built-in trading calendar (configs/trading-calendar.yaml).
var table = func() *Table {
	b, err := os.ReadFile("../../configs/trading-calendar.yaml")
	if err != nil {
		panic(err)
	}
	t, err := ParseTable(b)
	if err != nil {
		panic(err)
	}
	return t
}()

// calendarOf is the table's calendar of a symbol.
func calendarOf(symbol string) *Calendar {
	c, _, _ := table.Lookup(symbol)
	return c
}

// at is an exchange (CST) time.
func at(s string) time.Time {
	layout := "2006-01-02 15:04:05"
	if strings.Contains(s, ".") {
		layout += ".000"
		if len(s) == len("2006-01-02 15:04:05.0") {
			layout = "2006-01-02 15:04:05.0"
		}
	}
	t, err := time.ParseInLocation(layout, s, cst)
	if err != nil {
		panic(err)
	}
	return t
}

func dec(s string) decimal.Decimal { return decimal.MustParse(s) }

// 2026-11-23 is a Monday.
func TestTradingDays(t *testing.T) {
	f := func(symbol, when string, wantDay string, wantIn bool) {
		t.Helper()
		d, in := calendarOf(symbol).Locate(at(when))
		got := d.String()
		if in != wantIn || (in && got != wantDay) {
			t.Fatalf("%s at %s: day %s in-session %v; want %s %v", symbol, when, got, in, wantDay, wantIn)
		}
	}
	f("SHFE.rb2601", "2026-11-24 09:00:00", "2026-11-24", true)
	f("SHFE.rb2601", "2026-11-24 10:20:00", "", false) // the 10:15-10:30 break
	f("SHFE.rb2601", "2026-11-24 12:00:00", "", false) // lunch
	f("SHFE.rb2601", "2026-11-24 14:59:59", "2026-11-24", true)
	f("SHFE.rb2601", "2026-11-24 15:00:00", "", false)
	f("SHFE.rb2601", "2026-11-24 21:30:00", "2026-11-25", true) // night: the next trading day
	f("SHFE.rb2601", "2026-11-24 23:30:00", "", false)          // rb's night ends at 23:00
	f("SHFE.cu2601", "2026-11-25 00:30:00", "2026-11-25", true) // cu's runs to 01:00
	f("SHFE.au2602", "2026-11-25 02:00:00", "2026-11-25", true) // au's to 02:30, across midnight
	f("SHFE.au2602", "2026-11-25 02:30:00", "", false)
	f("SHFE.rb2601", "2026-11-27 21:30:00", "2026-11-30", true) // Friday night belongs to Monday
	f("SHFE.au2602", "2026-11-28 01:30:00", "2026-11-30", true) // and so does its part past midnight on Saturday
	f("SHFE.rb2601", "2026-11-28 10:00:00", "", false)          // Saturday
	f("SHFE.rb2601", "2026-11-29 21:30:00", "", false)          // Sunday evening: no night session
	f("CFFEX.IF2512", "2026-11-24 09:15:00", "", false)         // index futures open at 09:30
	f("CFFEX.T2603", "2026-11-24 15:10:00", "2026-11-24", true) // bonds close at 15:15
	f("NOPE.x1", "2026-11-28 03:00:00", "", false)              // not in the table: the default day sessions
	f("NOPE.x1", "2026-11-24 10:00:00", "2026-11-24", true)
	if c := calendarOf("SHFE.rb2601"); !c.Open(dateOf(at("2026-11-30 00:00:00"))).Equal(at("2026-11-27 21:00:00")) {
		t.Fatal("Monday's trading day opens with Friday's night session")
	}
}

// TestEveryListedProduct: the 22 products the audit found missing have
// their exchange's hours, codes in any case, options with their
// underlying's; a product not listed gets the configured default.
func TestEveryListedProduct(t *testing.T) {
	night := func(symbol string) string { // the night session's end on a Tuesday, or "none"
		c, _, known := table.Lookup(symbol)
		if !known {
			return "unknown"
		}
		for _, end := range []string{"02:29", "00:59", "22:59"} {
			day := "2026-11-25 "
			if end == "22:59" {
				day = "2026-11-24 "
			}
			if _, in := c.Locate(at(day + end + ":00")); in {
				return end
			}
		}
		if _, in := c.Locate(at("2026-11-24 21:30:00")); in {
			return "?"
		}
		return "none"
	}
	for want, symbols := range map[string][]string{
		"22:59": {"SHFE.br2701", "INE.lu2703", "INE.nr2701", "DCE.rr2701", "CZCE.CY701", "CZCE.PX701", "CZCE.SH701",
			"SHFE.rb2701", "DCE.m2701", "CZCE.TA701", "CZCE.TA2701", "shfe.RB2701", "DCE.m2701-C-3000", "CZCE.SR701C5000"},
		"00:59": {"SHFE.ao2701", "SHFE.cu2701", "INE.bc2701", "SHFE.cu2701C68000"},
		"02:29": {"SHFE.au2706", "INE.sc2701"},
		"none": {"SHFE.wr2701", "INE.ec2702", "DCE.jd2701", "DCE.lh2701", "DCE.bb2701", "CZCE.AP705", "CZCE.CJ701",
			"CZCE.UR701", "CZCE.SF701", "CZCE.SM701", "CZCE.PK701", "GFEX.si2701", "GFEX.lc2701", "GFEX.ps2701",
			"CFFEX.IF2612", "CFFEX.IO2612-C-4000", "CFFEX.T2703"},
		"unknown": {"NOPE.x1", "SHFE.zz2701", "SHFE", "SHFE.2701"},
	} {
		for _, s := range symbols {
			if got := night(s); got != want {
				t.Errorf("%s: night session %s; want %s", s, got, want)
			}
		}
	}
	// Day sessions: GFEX and the commodity day; CFFEX at 09:30.
	if _, in := calendarOf("GFEX.si2701").Locate(at("2026-11-24 10:20:00")); in {
		t.Error("GFEX.si trades in the 10:15 break")
	}
	if _, in := calendarOf("GFEX.si2701").Locate(at("2026-11-24 13:45:00")); !in {
		t.Error("GFEX.si does not trade at 13:45")
	}
	// The default for products not listed.
	if c, product, known := table.Lookup("nope.X1"); known || product != "NOPE.x" || c == Always {
		t.Fatalf("unknown product: %v %s %v", c.Name, product, known)
	}
	t2, _ := ParseTable(mustRead(t))
	if err := t2.WithDefault("SHFE.rb"); err != nil {
		t.Fatal(err)
	}
	if c, _, _ := t2.Lookup("NOPE.x1"); c.night == nil {
		t.Fatal("default as SHFE.rb has no night session")
	}
	if err := t2.WithDefault("always"); err != nil {
		t.Fatal(err)
	}
	if c, _, _ := t2.Lookup("NOPE.x1"); c != Always {
		t.Fatal("default always")
	}
	if err := t2.WithDefault("NYMEX.cl"); err == nil {
		t.Fatal("a default product not in the table was accepted")
	}
}

func mustRead(t *testing.T) []byte {
	b, err := os.ReadFile("../../configs/trading-calendar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHolidays: no session on a holiday, no night session on the evening
// before one or on its last evening; the first trading day after opens
// with its day session.
func TestHolidays(t *testing.T) {
	rb := calendarOf("SHFE.rb2701")
	// National Day 2026: 1-7 October (Thu-Wed); 30 September is a Wednesday.
	for _, when := range []string{
		"2026-09-30 21:30:00", // the evening before the holiday
		"2026-10-01 10:00:00", "2026-10-05 10:00:00",
		"2026-10-07 21:30:00", // the holiday's last evening
	} {
		if d, in := rb.Locate(at(when)); in {
			t.Errorf("rb trades at %s (day %s), a holiday", when, d)
		}
	}
	if d, in := rb.Locate(at("2026-09-30 14:00:00")); !in || d.String() != "2026-09-30" {
		t.Error("the last day before the holiday trades")
	}
	if open := rb.Open(dateOf(at("2026-10-08 00:00:00"))); !open.Equal(at("2026-10-08 09:00:00")) {
		t.Fatalf("8 October opens at %v; want 09:00 (no night session before it)", open)
	}
	if d, in := rb.Locate(at("2026-10-08 21:30:00")); !in || d.String() != "2026-10-09" {
		t.Fatal("the first evening after the holiday has its night session")
	}
	// Qingming: Monday 6 April; Friday 3 April has no night session.
	if _, in := rb.Locate(at("2026-04-03 21:30:00")); in {
		t.Error("a night session on the Friday before a Monday holiday")
	}
	// Around the clock knows no holidays.
	if _, in := Always.Locate(at("2026-10-01 10:00:00")); !in {
		t.Error("the always calendar closed on a holiday")
	}
	if u := table.HolidaysUntil(); u.Year() != 2026 || u.Month() != 12 {
		t.Fatalf("holidays until %v", u)
	}
	for _, bad := range []string{
		"groups: []\nholidays: [2026-10-03]\nholidays_until: 2026-12-31\n", // a Saturday
		"groups: []\nholidays: []\n",                                       // no holidays_until
		"groups: [{name: x, day: ['25:00-26:00'], products: [A.b]}]\nholidays_until: 2026-12-31\n",
		"groups: [{name: x, day: ['09:00-10:00'], products: [A.b1]}]\nholidays_until: 2026-12-31\n",
		"groups: [{name: x, day: ['09:00-10:00'], products: [A.b, a.B]}]\nholidays_until: 2026-12-31\n",
		"grups: []\n",
	} {
		if _, err := ParseTable([]byte(bad)); err == nil {
			t.Errorf("accepted:\n%s", bad)
		}
	}
}

// collect builds bars and keeps every emitted update.
type collect struct{ bars []emitted }

type emitted struct {
	symbol, channel string
	protocol.Bar
}

func (c *collect) emit(symbol string, i int, b *protocol.Bar) {
	c.bars = append(c.bars, emitted{symbol, Intervals[i].Channel.Push, *b})
}

func (c *collect) last(channel string, closed bool) *emitted {
	for i := len(c.bars) - 1; i >= 0; i-- {
		if b := &c.bars[i]; b.channel == channel && b.Closed == closed {
			return b
		}
	}
	return nil
}

func (e *emitted) String() string {
	if e == nil {
		return "<none>"
	}
	return string(e.AppendJSON(nil))
}

// builder is a builder with a wall clock of its own and a Flush after
// every tick, as a market shard calls it.
type builder struct {
	*Builder
	wall time.Time
}

func newBuilder(c *collect) *builder {
	return &builder{Builder: NewBuilder(calendarOf, c.emit), wall: at("2026-11-24 08:00:00")}
}

// tick sends a tick with the exchange time when (the wall clock follows
// it), last price, cumulative volume and turnover.
func (b *builder) tick(symbol, when, price, vol, to string) {
	q := protocol.Quote{Price: dec(price), Has: protocol.HasPrice | protocol.HasTime}
	if vol != "" {
		q.Volume, q.Turnover, q.Has = dec(vol), dec(to), q.Has|protocol.HasVolume|protocol.HasTurnover
	}
	b.quote(symbol, when, q)
}

func (b *builder) quote(symbol, when string, q protocol.Quote) {
	if t := at(when); t.After(b.wall) {
		b.wall = t
	}
	b.Tick(symbol, at(when), b.wall, &q)
	b.Flush(b.wall)
}

func TestBarsFollowTickTimeAndCountEveryTrade(t *testing.T) {
	var c collect
	b := newBuilder(&c)
	tick := func(when, price, vol, to string) { b.tick("SHFE.rb2601", when, price, vol, to) }
	// The night session's first tick: its cumulative volume is all traded today.
	tick("2026-11-24 21:00:00", "3900.0", "15", "585000.0")
	tick("2026-11-24 21:00:30", "3901.0", "20", "780050.0")
	tick("2026-11-24 21:00:59.999", "3902.0", "20", "780050.0") // quotes only: no trade
	tick("2026-11-24 21:01:00", "3899.0", "23", "897020.0")     // exactly on the boundary: the next bar
	m1 := c.last("kline_1m", true)
	if m1 == nil || !m1.Start.Equal(at("2026-11-24 21:00:00")) || m1.Volume.String() != "20" ||
		m1.Turnover.String() != "780050.0" || m1.Open.String() != "3900.0" || m1.High.String() != "3901.0" || m1.Close.String() != "3901.0" {
		t.Fatalf("first 1m bar %s; want the first trade counted, the boundary tick left out", m1)
	}
	if f := c.last("kline_1m", false); !f.Start.Equal(at("2026-11-24 21:01:00")) || f.Open.String() != "3899.0" || f.Volume.String() != "3" {
		t.Fatalf("forming bar %s", f)
	}
	d := c.last("kline_1d", false)
	if d.Volume.String() != "23" || !d.Start.Equal(at("2026-11-24 21:00:00")) || !d.End.Equal(at("2026-11-25 15:00:00")) ||
		d.TradingDay != "2026-11-25" {
		t.Fatalf("1d bar %s; want the day's cumulative volume, 21:00 to 15:00 of the next day", d)
	}
	// Outside the sessions nothing is built.
	n := len(c.bars)
	tick("2026-11-24 23:30:00", "3905.0", "30", "1170000.0")
	if len(c.bars) != n {
		t.Fatal("a tick after the night session built a bar")
	}
	// A late tick for a closed bar changes nothing; what it traded is
	// counted by the next tick.
	b.Advance(b.wall.Add(2 * time.Minute))
	n = len(c.bars)
	tick("2026-11-24 21:01:30", "3950.0", "31", "1200000.0")
	if len(c.bars) != n {
		t.Fatalf("a late tick built %s", &c.bars[n])
	}
	tick("2026-11-24 21:04:00", "3951.0", "35", "1300000.0")
	if f := c.last("kline_1m", false); f.Volume.String() != "12" {
		t.Fatalf("the bar after the late tick: %s; want its 8 lots and the 4 after", f)
	}
}

// TestVolumeOnlyRises: within a trading day a cumulative volume below the
// day's highest (a collector's bad value) counts nothing, and the next
// good tick counts from the highest; a new trading day starts again.
func TestVolumeOnlyRises(t *testing.T) {
	var c collect
	b := newBuilder(&c)
	tick := func(when, vol string) { b.tick("SHFE.rb2601", when, "3900.0", vol, "0.0") }
	tick("2026-11-24 21:00:00", "100")
	tick("2026-11-24 21:00:10", "120")
	tick("2026-11-24 21:00:20", "50") // falls: nothing
	tick("2026-11-24 21:00:30", "130")
	if f := c.last("kline_1m", false); f.Volume.String() != "130" {
		t.Fatalf("1m volume %s; want 130, the fall ignored", f.Volume)
	}
	tick("2026-11-25 21:00:00", "7") // the next trading day
	if f := c.last("kline_1d", false); f.Volume.String() != "7" || f.TradingDay != "2026-11-26" {
		t.Fatalf("the next day's bar %s", f)
	}
}

// TestClosingSnapshot: the exchange's closing snapshot, stamped at the end
// of the session, belongs to the session's last bar, which the clock
// closes only after the grace that leaves it room.
func TestClosingSnapshot(t *testing.T) {
	var c collect
	b := newBuilder(&c)
	tick := func(when, price, vol string) { b.tick("SHFE.rb2601", when, price, vol, "0.0") }
	tick("2026-11-24 22:59:30", "3900.0", "100")
	b.Advance(at("2026-11-24 23:00:00").Add(CloseGrace - time.Millisecond))
	if c.last("kline_1m", true) != nil {
		t.Fatal("the clock closed the session's last bar before the grace")
	}
	tick("2026-11-24 23:00:00.5", "3910.0", "140") // the closing call
	f := c.last("kline_1m", false)
	if !f.Start.Equal(at("2026-11-24 22:59:00")) || f.Close.String() != "3910.0" || f.Volume.String() != "40" {
		t.Fatalf("closing snapshot went to %s; want the 22:59 bar", f)
	}
	n := len(c.bars)
	tick("2026-11-24 23:00:01.5", "3920.0", "150") // after the close: nothing
	if len(c.bars) != n {
		t.Fatal("a tick after the closing instant built a bar")
	}
	b.Advance(at("2026-11-24 23:00:00.5").Add(CloseGrace)) // the symbol's clock: its last in-session tick + the wall's run
	if cl := c.last("kline_1m", true); cl == nil || cl.Volume.String() != "40" || !cl.End.Equal(at("2026-11-24 23:00:00")) {
		t.Fatalf("closed bar %s", cl)
	}
}

// TestOpeningAuction: the auction's tick, stamped before the open, goes in
// the day's first bar: its price opens the bars, its volume counts.
func TestOpeningAuction(t *testing.T) {
	var c collect
	b := newBuilder(&c)
	b.tick("SHFE.rb2601", "2026-11-24 20:59:00", "3100.0", "100", "3100000.0")
	b.tick("SHFE.rb2601", "2026-11-24 21:00:00.5", "3102.0", "150", "4651000.0")
	for _, ch := range []string{"kline_1m", "kline_1h", "kline_1d"} {
		f := c.last(ch, false)
		if f.Open.String() != "3100.0" || f.Volume.String() != "150" || f.Partial {
			t.Fatalf("%s %s; want the auction's price and volume in the first bar", ch, f)
		}
	}
	if f := c.last("kline_1m", false); !f.Start.Equal(at("2026-11-24 21:00:00")) {
		t.Fatalf("first bar %s", f)
	}
	// The day session's 08:59 status tick of a night product is no auction.
	n := len(c.bars)
	b.tick("SHFE.rb2601", "2026-11-25 08:59:00", "3101.0", "151", "4654101.0")
	if len(c.bars) != n {
		t.Fatal("rb's 08:59 tick built a bar")
	}
	// CFFEX's auction is at 09:25-09:29.
	b.tick("CFFEX.IF2612", "2026-11-25 09:29:00", "4000.0", "20", "24000000.0")
	if f := c.last("kline_1m", false); !f.Start.Equal(at("2026-11-25 09:30:00")) || f.Open.String() != "4000.0" {
		t.Fatalf("IF's first bar %s", f)
	}
}

// TestCFFEXHourBarIsWhole: IF's 09:00 hour bar starts before the 09:30
// open; a builder that saw the open has all of it.
func TestCFFEXHourBarIsWhole(t *testing.T) {
	var c collect
	b := newBuilder(&c)
	b.tick("CFFEX.IF2612", "2026-11-25 09:30:00.5", "4000.0", "10", "12000000.0")
	b.tick("CFFEX.IF2612", "2026-11-25 10:00:00.5", "4001.0", "20", "24003000.0")
	h := c.last("kline_1h", true)
	if h == nil || h.Partial || !h.Start.Equal(at("2026-11-25 09:00:00")) || h.Volume.String() != "10" {
		t.Fatalf("IF 09:00 hour bar %s; want whole", h)
	}
}

// TestEachSymbolKeepsItsClock: a tick stamped minutes ahead moves only
// its own symbol's clock; idle bars close by the wall clock running on
// from each symbol's last tick.
func TestEachSymbolKeepsItsClock(t *testing.T) {
	var c collect
	b := NewBuilder(AlwaysOpen2, c.emit)
	wall := at("2026-11-24 10:00:00")
	q := func(price, vol string) *protocol.Quote {
		return &protocol.Quote{Price: dec(price), Volume: dec(vol), Turnover: dec("0"), Has: protocol.HasPrice | protocol.HasVolume | protocol.HasTime}
	}
	b.Tick("T.a", at("2026-11-24 10:00:00"), wall, q("1", "1"))
	b.Tick("T.b", at("2026-11-24 10:04:00"), wall, q("1", "1")) // 4 minutes ahead
	b.Tick("T.a", at("2026-11-24 10:00:30"), wall.Add(30*time.Second), q("1", "2"))
	b.Flush(wall.Add(30 * time.Second))
	b.Advance(wall.Add(40 * time.Second))
	for _, br := range c.bars {
		if br.symbol == "T.a" && br.Closed {
			t.Fatalf("T.b's clock closed T.a's bar: %s", &br)
		}
	}
	b.Advance(wall.Add(time.Minute + CloseGrace)) // T.a's clock: 10:00:30 + 33 s of wall
	var closed []string
	for _, br := range c.bars {
		if br.Closed && br.channel == "kline_1m" && br.symbol == "T.a" {
			closed = append(closed, br.Start.In(cst).Format("15:04")+" V="+br.Volume.String())
		}
	}
	if fmt.Sprint(closed) != "[10:00 V=1]" { // joined mid-day: counting starts at its first tick
		t.Fatalf("T.a closed %v; want its 10:00 bar whole, by its own clock", closed)
	}
}

// AlwaysOpen2 adapts Always to the builder's lookup.
func AlwaysOpen2(string) *Calendar { return Always }

func TestDayRolloverAndWeekend(t *testing.T) {
	var c collect
	b := newBuilder(&c)
	tick := func(when, vol string) { b.tick("SHFE.rb2601", when, "3900.0", vol, "0.0") }
	tick("2026-11-27 14:00:00", "100") // joining Friday's day session: counting starts here
	tick("2026-11-27 14:30:00", "130")
	if d := c.last("kline_1d", false); d.Volume.String() != "30" {
		t.Fatalf("joined mid-day: 1d volume %s; want 30 (what was seen)", d.Volume)
	}
	tick("2026-11-27 21:05:00", "7") // Friday night: Monday's trading day, cumulative from 0
	if d := c.last("kline_1d", true); d == nil || !d.Start.Equal(at("2026-11-26 21:00:00")) {
		t.Fatalf("Friday's daily bar not closed at the rollover: %s", d)
	}
	if d := c.last("kline_1d", false); d.Volume.String() != "7" || !d.Start.Equal(at("2026-11-27 21:00:00")) ||
		!d.End.Equal(at("2026-11-30 15:00:00")) || d.TradingDay != "2026-11-30" {
		t.Fatalf("Monday's daily bar %s; want Friday 21:00 to Monday 15:00 with the night's volume", d)
	}
	tick("2026-11-30 09:00:00", "12")
	if d := c.last("kline_1d", false); d.Volume.String() != "12" {
		t.Fatalf("Monday's daily bar across the weekend: %s; want 12", d.Volume)
	}
}

// TestSameTicksSameBars: two builders (two nodes) given the same ticks,
// with their clocks closing bars at different moments, emit the same
// closed bars.
func TestSameTicksSameBars(t *testing.T) {
	var a, b collect
	ba, bb := NewBuilder(calendarOf, a.emit), NewBuilder(calendarOf, b.emit)
	base := at("2026-11-24 09:00:00")
	for i := range 400 {
		when := base.Add(time.Duration(i) * 500 * time.Millisecond)
		q := protocol.Quote{Price: dec(fmt.Sprintf("%d.0", 3900+i%7)), Volume: dec(fmt.Sprint(10 * i)),
			Turnover: dec(fmt.Sprintf("%d.0", 39000*i)), OpenInterest: dec(fmt.Sprint(5000 + i)),
			Has: protocol.HasPrice | protocol.HasVolume | protocol.HasTurnover | protocol.HasOpenInterest | protocol.HasTime}
		ba.Tick("SHFE.rb2601", when, when, &q)
		bb.Tick("SHFE.rb2601", when, when.Add(time.Duration(i%5)*time.Second), &q) // arrives later on B
		ba.Flush(when)
		if i%3 == 0 {
			bb.Flush(when)
		}
		if i%37 == 0 {
			ba.Advance(when.Add(-time.Second)) // one node's clock lags
		}
	}
	bb.Flush(base.Add(time.Hour))
	ba.Advance(base.Add(time.Hour))
	bb.Advance(base.Add(time.Hour))
	closed := func(c collect) []string {
		var out []string
		for _, br := range c.bars {
			if br.Closed && br.channel == "kline_1m" {
				out = append(out, br.String())
			}
		}
		return out
	}
	ca, cb := closed(a), closed(b)
	if fmt.Sprint(ca) != fmt.Sprint(cb) || len(ca) < 3 || !strings.Contains(ca[0], `"open_interest":"5119"`) {
		t.Fatalf("nodes disagree:\n%v\n%v", ca, cb)
	}
}

// TestLateJoin: a builder that starts in the middle of a bar marks that
// bar partial (its values cover only what it saw) and the next one whole;
// the daily bar is exact all the same when the tick carries the day's
// open, high, low and cumulative volume, as CTP's do.
func TestLateJoin(t *testing.T) {
	var c collect
	b := newBuilder(&c)
	b.tick("SHFE.rb2601", "2026-11-24 09:30:20", "3900.0", "5000", "0.0")
	b.tick("SHFE.rb2601", "2026-11-24 09:30:40", "3901.0", "5010", "0.0")
	if f := c.last("kline_1m", false); !f.Partial || f.Volume.String() != "10" {
		t.Fatalf("joined mid-bar: %s; want partial with the 10 lots seen", f)
	}
	if d := c.last("kline_1d", false); !d.Partial {
		t.Fatalf("daily bar without the day's figures: %s; want partial", d)
	}
	b.quote("SHFE.rb2601", "2026-11-24 09:31:00", protocol.Quote{Price: dec("3902.0"), Volume: dec("5020"), Turnover: dec("0.0"),
		Open: dec("3880.0"), High: dec("3950.0"), Low: dec("3870.0"),
		Has: protocol.HasPrice | protocol.HasVolume | protocol.HasTurnover | protocol.HasOpen | protocol.HasHigh | protocol.HasLow | protocol.HasTime})
	if cl := c.last("kline_1m", true); cl == nil || !cl.Partial {
		t.Fatalf("the bar joined in closed as %s; want partial", cl)
	}
	if f := c.last("kline_1m", false); f.Partial {
		t.Fatalf("the next bar %s; want whole", f)
	}
	if d := c.last("kline_1d", false); d.Partial || d.Open.String() != "3880.0" || d.High.String() != "3950.0" ||
		d.Low.String() != "3870.0" || d.Volume.String() != "5020" {
		t.Fatalf("daily bar from the day's figures: %s", d)
	}
}

// TestRestoreGoesOn: a builder restored from another's state goes on with
// its forming bars: the next ticks count from the same baseline into the
// same bars; bars the gap in between may have missed ticks of are partial.
func TestRestoreGoesOn(t *testing.T) {
	var c1, c2 collect
	b1 := newBuilder(&c1)
	b1.tick("SHFE.rb2601", "2026-11-24 21:00:00", "3900.0", "15", "585000.0")
	b1.tick("SHFE.rb2601", "2026-11-24 21:00:30", "3905.0", "20", "780050.0")
	st, ok := b1.Export("SHFE.rb2601", b1.wall)
	if !ok {
		t.Fatal("no state")
	}
	state, err := st.Encode()
	if err != nil {
		t.Fatal(err)
	}
	// Restored at once (a restart within the same wall second): whole.
	b2 := &builder{Builder: NewBuilder(calendarOf, c2.emit), wall: b1.wall}
	if err := b2.Restore("SHFE.rb2601", state, b1.wall); err != nil {
		t.Fatal(err)
	}
	if f := c2.last("kline_1m", false); f == nil || f.Volume.String() != "20" || f.High.String() != "3905.0" || f.Partial {
		t.Fatalf("restored forming bar %s", f)
	}
	b2.tick("SHFE.rb2601", "2026-11-24 21:01:00", "3899.0", "23", "897020.0")
	if cl := c2.last("kline_1m", true); cl == nil || cl.Volume.String() != "20" || cl.Partial {
		t.Fatalf("closed after the restore: %s", cl)
	}
	if f := c2.last("kline_1d", false); f.Volume.String() != "23" {
		t.Fatalf("1d after the restore %s", f)
	}
	// Restored 20 s of trading later: the forming bars may lack ticks.
	var c3 collect
	b3 := NewBuilder(calendarOf, c3.emit)
	if err := b3.Restore("SHFE.rb2601", state, b1.wall.Add(20*time.Second)); err != nil {
		t.Fatal(err)
	}
	if f := c3.last("kline_1m", false); f == nil || !f.Partial {
		t.Fatalf("restored after a gap: %s; want partial", f)
	}
	if err := b3.Restore("SHFE.rb2601", []byte(`{"v":9}`), b1.wall); err == nil {
		t.Fatal("a state of an unknown version was taken")
	}
}

// TestFormingBarsAtMostEvery: with Every set, a symbol ticking faster
// sends its forming bars once per Every, each time the newest state, and
// what is held back goes out with the next Flush past Every (Advance
// flushes); a closed bar goes at once.
func TestFormingBarsAtMostEvery(t *testing.T) {
	var c collect
	b := NewBuilder(calendarOf, c.emit)
	b.Every = 50 * time.Millisecond
	wall := at("2026-11-24 21:00:00")
	for i := range 20 { // 20 ticks, 10 ms apart
		when := wall.Add(time.Duration(i) * 10 * time.Millisecond)
		q := protocol.Quote{Price: dec(fmt.Sprintf("%d.0", 3900+i)), Volume: dec(fmt.Sprint(10 * (i + 1))), Turnover: dec("0"),
			Has: protocol.HasPrice | protocol.HasVolume | protocol.HasTime}
		b.Tick("SHFE.rb2601", when, when, &q)
		b.Flush(when)
	}
	forming := func() (n int) {
		for _, br := range c.bars {
			if br.channel == "kline_1m" && !br.Closed {
				n++
			}
		}
		return n
	}
	if n := forming(); n != 4 { // at 0, 50, 100 and 150 ms
		t.Fatalf("%d forming 1m updates in 190 ms; want 4", n)
	}
	if f := c.last("kline_1m", false); f.Close.String() != "3915.0" {
		t.Fatalf("last update %s", f)
	}
	b.Advance(wall.Add(200 * time.Millisecond))
	if f := c.last("kline_1m", false); forming() != 5 || f.Close.String() != "3919.0" || f.Volume.String() != "200" {
		t.Fatalf("after the interval: %d updates, the last %s; want the newest state", forming(), f)
	}
	q := protocol.Quote{Price: dec("3950.0"), Volume: dec("300"), Turnover: dec("0"), Has: protocol.HasPrice | protocol.HasVolume | protocol.HasTime}
	b.Tick("SHFE.rb2601", at("2026-11-24 21:01:00"), wall.Add(210*time.Millisecond), &q)
	if cl := c.last("kline_1m", true); cl == nil || cl.Close.String() != "3919.0" {
		t.Fatalf("the closed bar went out at once? %s", cl)
	}
}
