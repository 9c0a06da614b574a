package kline

import (
	"fmt"
	"testing"
	"time"

	"github.com/marketcast/marketcast/feed"
)

// at is an exchange (CST) time.
func at(s string) time.Time {
	t, err := time.ParseInLocation("2006-01-02 15:04:05", s, cst)
	if err != nil {
		panic(err)
	}
	return t
}

func dec(s string) feed.Decimal {
	d, err := feed.ParseDecimal(s)
	if err != nil {
		panic(err)
	}
	return d
}

// 2026-11-23 is a Monday.
func TestTradingDays(t *testing.T) {
	f := func(symbol, when string, wantDay string, wantIn bool) {
		t.Helper()
		d, in := CalendarOf(symbol).Locate(at(when))
		got := d.at(0).Format("2006-01-02")
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
	f("NOPE.x1", "2026-11-28 03:00:00", "2026-11-28", true)     // not in the table: around the clock
	if c := CalendarOf("SHFE.rb2601"); !c.Open(dateOf(at("2026-11-30 00:00:00"))).Equal(at("2026-11-27 21:00:00")) {
		t.Fatal("Monday's trading day opens with Friday's night session")
	}
}

// collect builds bars and keeps every emitted update.
type collect struct{ bars []*feed.Bar }

func (c *collect) emit(b *feed.Bar) { c.bars = append(c.bars, b) }

func (c *collect) last(channel string, closed bool) *feed.Bar {
	for i := len(c.bars) - 1; i >= 0; i-- {
		if b := c.bars[i]; b.Channel == channel && b.Closed == closed {
			return b
		}
	}
	return nil
}

func TestBarsFollowTickTimeAndCountEveryTrade(t *testing.T) {
	var c collect
	b := NewBuilder(CalendarOf, c.emit)
	tick := func(when, price, vol, to string) {
		b.Tick("SHFE.rb2601", Quote{At: at(when), Price: dec(price), Volume: dec(vol), Turnover: dec(to), HasVolume: true})
	}
	// The night session's first tick: its cumulative volume is all traded today.
	tick("2026-11-24 21:00:00", "3900.0", "15", "585000.0")
	tick("2026-11-24 21:00:30", "3901.0", "20", "780050.0")
	tick("2026-11-24 21:00:59.999", "3902.0", "20", "780050.0") // quotes only: no trade
	tick("2026-11-24 21:01:00", "3899.0", "23", "897020.0")     // exactly on the boundary: the next bar
	m1 := c.last("kline_1m", true)
	if m1 == nil || m1.StartTime != "2026-11-24T13:00:00.000Z" || m1.Volume != "20" || m1.Turnover != "780050.0" ||
		m1.Open != "3900.0" || m1.High != "3901.0" || m1.Close != "3901.0" {
		t.Fatalf("first 1m bar %+v; want the first trade counted, the boundary tick left out", m1)
	}
	if f := c.last("kline_1m", false); f.StartTime != "2026-11-24T13:01:00.000Z" || f.Open != "3899.0" || f.Volume != "3" {
		t.Fatalf("forming bar %+v", f)
	}
	d := c.last("kline_1d", false)
	if d.Volume != "23" || d.StartTime != "2026-11-24T13:00:00.000Z" || d.EndTime != "2026-11-25T07:00:00.000Z" {
		t.Fatalf("1d bar %+v; want the day's cumulative volume, 21:00 to 15:00 of the next day", d)
	}
	// Outside the sessions nothing is built.
	n := len(c.bars)
	tick("2026-11-24 23:30:00", "3905.0", "30", "1170000.0")
	if len(c.bars) != n {
		t.Fatal("a tick after the night session built a bar")
	}
	// A late tick for a closed bar changes nothing.
	b.Advance(at("2026-11-24 21:03:00"))
	n = len(c.bars)
	tick("2026-11-24 21:01:30", "3950.0", "31", "1200000.0")
	for _, br := range c.bars[n:] {
		if br.Channel == "kline_1m" {
			t.Fatalf("a late tick reopened a closed bar: %+v", br)
		}
	}
	if d := c.last("kline_1d", false); d.Close != "3950.0" || d.Volume != "31" {
		t.Fatalf("the daily bar, still open, takes the late tick: %+v", d)
	}
}

// TestClosingSnapshot: the exchange's closing snapshot, stamped at the end
// of the session, belongs to the session's last bar, which the clock
// closes only after the grace that leaves it room.
func TestClosingSnapshot(t *testing.T) {
	var c collect
	b := NewBuilder(CalendarOf, c.emit)
	tick := func(when, price, vol string) {
		b.Tick("SHFE.rb2601", Quote{At: at(when), Price: dec(price), Volume: dec(vol), Turnover: dec("0.0"), HasVolume: true})
	}
	tick("2026-11-24 22:59:30", "3900.0", "100")
	b.Advance(at("2026-11-24 23:00:00").Add(CloseGrace - time.Millisecond))
	if c.last("kline_1m", true) != nil {
		t.Fatal("the clock closed the session's last bar before the grace")
	}
	tick("2026-11-24 23:00:00.5", "3910.0", "140") // the closing call
	f := c.last("kline_1m", false)
	if f.StartTime != "2026-11-24T14:59:00.000Z" || f.Close != "3910.0" || f.Volume != "40" {
		t.Fatalf("closing snapshot went to %+v; want the 22:59 bar", f)
	}
	n := len(c.bars)
	tick("2026-11-24 23:00:01.5", "3920.0", "150") // after the close: nothing
	if len(c.bars) != n {
		t.Fatal("a tick after the closing instant built a bar")
	}
	b.Advance(at("2026-11-24 23:00:00").Add(CloseGrace))
	if cl := c.last("kline_1m", true); cl == nil || cl.Volume != "40" || cl.EndTime != "2026-11-24T15:00:00.000Z" {
		t.Fatalf("closed bar %+v", cl)
	}
}

func TestDayRolloverAndWeekend(t *testing.T) {
	var c collect
	b := NewBuilder(CalendarOf, c.emit)
	tick := func(when, vol string) {
		b.Tick("SHFE.rb2601", Quote{At: at(when), Price: dec("3900.0"), Volume: dec(vol), Turnover: dec("0.0"), HasVolume: true})
	}
	tick("2026-11-27 14:00:00", "100") // joining Friday's day session: counting starts here
	tick("2026-11-27 14:30:00", "130")
	if d := c.last("kline_1d", false); d.Volume != "30" {
		t.Fatalf("joined mid-day: 1d volume %s; want 30 (what was seen)", d.Volume)
	}
	tick("2026-11-27 21:05:00", "7") // Friday night: Monday's trading day, cumulative from 0
	if d := c.last("kline_1d", true); d == nil || d.StartTime != "2026-11-26T13:00:00.000Z" {
		t.Fatalf("Friday's daily bar not closed at the rollover: %+v", d)
	}
	if d := c.last("kline_1d", false); d.Volume != "7" || d.StartTime != "2026-11-27T13:00:00.000Z" || d.EndTime != "2026-11-30T07:00:00.000Z" {
		t.Fatalf("Monday's daily bar %+v; want Friday 21:00 to Monday 15:00 with the night's volume", d)
	}
	tick("2026-11-30 09:00:00", "12")
	if d := c.last("kline_1d", false); d.Volume != "12" {
		t.Fatalf("Monday's daily bar across the weekend: %s; want 12", d.Volume)
	}
}

// TestSameTicksSameBars: two builders (two nodes) given the same ticks,
// with their clocks closing bars at different moments, emit the same
// closed bars.
func TestSameTicksSameBars(t *testing.T) {
	var a, b collect
	ba, bb := NewBuilder(CalendarOf, a.emit), NewBuilder(CalendarOf, b.emit)
	base := at("2026-11-24 09:00:00")
	for i := 0; i < 400; i++ {
		when := base.Add(time.Duration(i) * 500 * time.Millisecond)
		price := dec(fmt.Sprintf("%d.0", 3900+i%7))
		vol := dec(fmt.Sprint(10 * i))
		to := dec(fmt.Sprintf("%d.0", 39000*i))
		ba.Tick("SHFE.rb2601", Quote{At: when, Price: price, Volume: vol, Turnover: to, HasVolume: true})
		bb.Tick("SHFE.rb2601", Quote{At: when, Price: price, Volume: vol, Turnover: to, HasVolume: true})
		if i%37 == 0 {
			ba.Advance(when.Add(-time.Second)) // one node's clock lags
		}
	}
	ba.Advance(base.Add(time.Hour))
	bb.Advance(base.Add(time.Hour))
	closed := func(c collect) []string {
		var out []string
		for _, br := range c.bars {
			if br.Closed && br.Channel == "kline_1m" {
				out = append(out, fmt.Sprintf("%+v", *br))
			}
		}
		return out
	}
	if ca, cb := closed(a), closed(b); fmt.Sprint(ca) != fmt.Sprint(cb) || len(ca) < 3 {
		t.Fatalf("nodes disagree:\n%v\n%v", ca, cb)
	}
}

// TestLateJoin: a builder that starts in the middle of a bar marks that
// bar partial (its values cover only what it saw) and the next one whole;
// the daily bar is exact all the same when the tick carries the day's
// open, high, low and cumulative volume, as CTP's do.
func TestLateJoin(t *testing.T) {
	var c collect
	b := NewBuilder(CalendarOf, c.emit)
	q := func(when, price, vol string) Quote {
		return Quote{At: at(when), Price: dec(price), Volume: dec(vol), Turnover: dec("0.0"), HasVolume: true}
	}
	b.Tick("SHFE.rb2601", q("2026-11-24 09:30:20", "3900.0", "5000"))
	b.Tick("SHFE.rb2601", q("2026-11-24 09:30:40", "3901.0", "5010"))
	if f := c.last("kline_1m", false); !f.Partial || f.Volume != "10" {
		t.Fatalf("joined mid-bar: %+v; want partial with the 10 lots seen", f)
	}
	if d := c.last("kline_1d", false); !d.Partial {
		t.Fatalf("daily bar without the day's figures: %+v; want partial", d)
	}
	day := q("2026-11-24 09:31:00", "3902.0", "5020")
	day.Open, day.High, day.Low, day.HasDay = dec("3880.0"), dec("3950.0"), dec("3870.0"), true
	b.Tick("SHFE.rb2601", day)
	if cl := c.last("kline_1m", true); cl == nil || !cl.Partial {
		t.Fatalf("the bar joined in closed as %+v; want partial", cl)
	}
	if f := c.last("kline_1m", false); f.Partial {
		t.Fatalf("the next bar %+v; want whole", f)
	}
	if d := c.last("kline_1d", false); d.Partial || d.Open != "3880.0" || d.High != "3950.0" || d.Low != "3870.0" || d.Volume != "5020" {
		t.Fatalf("daily bar from the day's figures: %+v", d)
	}
}
