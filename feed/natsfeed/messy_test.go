package natsfeed_test

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marketcast/marketcast/engine/natsbroker/natstest"
	"github.com/marketcast/marketcast/internal/testwait"
	"github.com/marketcast/marketcast/protocol"
)

// stream is a day's ticks of one symbol as an exchange sends them: a
// snapshot every 500 ms from start, prices walking on the grid, most
// snapshots trading a few lots, some only quoting.
func stream(start time.Time, n int, seed uint64) []tick {
	r := rand.New(rand.NewPCG(seed, 7))
	price, vol, to, oi := 3000, 0, 0, 150000
	out := make([]tick, n)
	for i := range out {
		price += r.IntN(3) - 1
		if r.IntN(4) > 0 { // three snapshots in four trade
			q := 1 + r.IntN(20)
			vol += q
			to += price * q * 10
			oi += r.IntN(2*q+1) - q
		}
		out[i] = tick{at: start.Add(time.Duration(i) * 500 * time.Millisecond), price: strconv.Itoa(price) + ".0",
			vol: strconv.Itoa(vol), to: strconv.Itoa(to) + ".0", oi: strconv.Itoa(oi)}
	}
	return out
}

// TestRedundantCollectorsGiveTheBarsOfOne: the production set-up of two
// collectors, the second 0-1 s behind the first, so every tick arrives
// twice and the late copies out of order, with a collector's own resent
// tick and a straggler besides. The node builds exactly the bars of one
// collector, every interval; it forwards each tick once, never an older
// one as the latest; the copies are counted by reason.
func TestRedundantCollectorsGiveTheBarsOfOne(t *testing.T) {
	const symbol = "DCE.m2701"
	// Monday's night session, from its open: Tuesday's trading day.
	ticks := stream(ex("2026-11-23 21:00:00.500"), 900, 1)
	end := ticks[len(ticks)-1].at

	build := func(t *testing.T, messy bool) (*node, int, int) {
		ns := natstest.Start(t, "")
		clk := newClock(end)
		n := startNode(t, ns.URL(), nodeOptions{sessions: table.Lookup, clock: clk})
		pub := connect(t, ns.URL())
		r := rand.New(rand.NewPCG(2, 3))
		lag := make([][]int, len(ticks)+3) // the second collector's copies due after each tick of the first
		stale, dups := 0, 0
		for i, k := range ticks {
			publish(t, pub, "md.tick."+symbol, k.json())
			if !messy {
				continue
			}
			d := r.IntN(3) // 0, 500 or 1,000 ms behind
			lag[i+d] = append(lag[i+d], i)
			for _, j := range lag[i] {
				publish(t, pub, "md.tick."+symbol, ticks[j].json())
				if j == i {
					dups++
				} else {
					stale++
				}
			}
			switch i {
			case 100: // the first collector resends a tick
				publish(t, pub, "md.tick."+symbol, k.json())
				dups++
			case 200: // a straggler from a minute ago
				publish(t, pub, "md.tick."+symbol, ticks[80].json())
				stale++
			}
		}
		flush(t, pub)
		testwait.For(t, "the last tick", func() bool {
			return strings.Contains(dataOf(n.last(protocol.Tick, symbol)), end.UTC().Format(protocol.TimeLayout))
		})
		clk.Set(end.Add(24 * time.Hour)) // every bar closes by the clock: the 1d bar ends at 15:00
		n.waitClosed(t, 5, symbol, 1)
		return n, stale, dups
	}
	one, _, _ := build(t, false)
	two, stale, dups := build(t, true)

	for i, ch := range protocol.Klines {
		a, b := one.closed(i, symbol), two.closed(i, symbol)
		if len(a) == 0 || strings.Join(a, "\n") != strings.Join(b, "\n") {
			t.Fatalf("%s: one collector's bars\n%s\ntwo collectors'\n%s", ch.Push, strings.Join(a, "\n"), strings.Join(b, "\n"))
		}
	}
	// By hand: the node saw the day from its open, so its 1m bars hold the
	// day's whole cumulative volume, and the 1d bar is the last tick's.
	var sum int
	for _, b := range one.closed(0, symbol) {
		v, _ := strconv.Atoi(between(b, `"volume":"`, `"`))
		sum += v
	}
	day := one.closed(5, symbol)[0]
	if last := ticks[len(ticks)-1]; strconv.Itoa(sum) != last.vol || between(day, `"volume":"`, `"`) != last.vol ||
		between(day, `"open_interest":"`, `"`) != last.oi || between(day, `"trading_day":"`, `"`) != "2026-11-24" {
		t.Fatalf("1m volumes add to %d, the day bar %s; the last tick %+v", sum, day, last)
	}
	if got := two.metric(`marketcast_feed_ignored_total{channel="tick",reason="stale"}`); got != strconv.Itoa(stale) {
		t.Errorf("stale counted %s; want %d", got, stale)
	}
	if got := two.metric(`marketcast_feed_ignored_total{channel="tick",reason="duplicate"}`); got != strconv.Itoa(dups) {
		t.Errorf("duplicates counted %s; want %d", got, dups)
	}
	// Each tick went out once, in order: the topic's sequence is the
	// number of distinct ticks on both nodes.
	if a, b := one.last(protocol.Tick, symbol).Sequence(), two.last(protocol.Tick, symbol).Sequence(); a != uint64(len(ticks)) || b != a {
		t.Fatalf("ticks forwarded: one collector %d, two %d; want %d each", a, b, len(ticks))
	}
}

func between(s, from, to string) string {
	_, rest, ok := strings.Cut(s, from)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, to)
	return v
}

// TestOneSymbolsClockMovesOnlyItsBars: a tick stamped minutes ahead is
// refused and counted (feed.max_time_ahead, seconds); one a little ahead
// moves only its own symbol's clock; a quiet symbol's bar closes by the
// wall clock, whole, and not before its end.
func TestOneSymbolsClockMovesOnlyItsBars(t *testing.T) {
	ns := natstest.Start(t, "")
	t0 := ex("2026-11-25 10:00:00")
	clk := newClock(t0)
	n := startNode(t, ns.URL(), nodeOptions{clock: clk})
	pub := connect(t, ns.URL())
	vol := 0
	tickA := func(offset time.Duration) {
		at := t0.Add(offset)
		clk.Set(at)
		vol += 10
		publish(t, pub, "md.tick.T.a", tick{at: at, price: "100.0", vol: strconv.Itoa(vol), to: "0"}.json())
	}
	tickA(500 * time.Millisecond)
	tickA(10 * time.Second)
	// Four minutes ahead: refused.
	publish(t, pub, "md.tick.T.b", tick{at: t0.Add(4*time.Minute + 10*time.Second), price: "5.0", vol: "1", to: "0"}.json())
	for s := 20; s <= 50; s += 10 {
		tickA(time.Duration(s) * time.Second)
	}
	// Nine seconds ahead, the latest exchange time of all: accepted, and
	// it moves T.b's clock only.
	publish(t, pub, "md.tick.T.b", tick{at: t0.Add(59 * time.Second), price: "5.0", vol: "1", to: "0"}.json())
	flush(t, pub)
	testwait.For(t, "the last ticks", func() bool {
		return strings.Contains(dataOf(n.last(protocol.Tick, "T.a")), `"volume":"60"`) && n.last(protocol.Tick, "T.b") != nil
	})
	if got := n.metric(`marketcast_feed_dropped_total{reason="ahead"}`); got != "1" {
		t.Fatalf("ticks refused as ahead: %s; want 1", got)
	}
	if got := dataOf(n.last(protocol.Tick, "T.b")); !strings.Contains(got, "02:00:59.000Z") {
		t.Fatalf("T.b's tick 9 s ahead: %s", got)
	}
	// T.b's clock passes the minute's end and grace first; T.a's, on its
	// own, does not.
	clk.Set(t0.Add(55 * time.Second))
	n.market.Advance(clk.Now())
	if got := n.closed(0, "T.a"); len(got) != 0 {
		t.Fatalf("T.b's clock closed T.a's bar: %v", got)
	}
	// The wall clock reaches the bar's end and the grace: nothing sooner.
	clk.Set(t0.Add(time.Minute + 2*time.Second))
	n.market.Advance(clk.Now())
	if got := n.closed(0, "T.a"); len(got) != 0 {
		t.Fatalf("T.a's bar closed before its end and grace: %v", got)
	}
	clk.Set(t0.Add(time.Minute + 3*time.Second))
	bars := n.waitClosed(t, 0, "T.a", 1) // Run advances every 100 ms by the clock
	if len(bars) != 1 || !strings.Contains(bars[0], `"volume":"50"`) || !strings.Contains(bars[0], `"start_time":"2026-11-25T02:00:00.000Z"`) {
		t.Fatalf("T.a's 10:00 bar: %v; want every tick after the first (50 lots)", bars)
	}
}

// TestCalendarThroughIngest: every listed product has its sessions, in
// any case; the opening auction opens the first bar; no bar outside a
// session or on a holiday (nor on the evening before one); a product not
// in the calendar gets the default sessions, a log line once and a
// metric; bars carry open interest and the trading day.
func TestCalendarThroughIngest(t *testing.T) {
	ns := natstest.Start(t, "")
	clk := newClock(ex("2026-11-24 15:00:02"))
	n := startNode(t, ns.URL(), nodeOptions{sessions: table.Lookup, clock: clk})
	pub := connect(t, ns.URL())
	send := func(symbol, at, price, vol string) {
		publish(t, pub, "md.tick."+symbol, tick{at: ex(at), price: price, vol: vol, to: "0.0", oi: "5000"}.json())
	}
	// GFEX.si, a product the calendar lacked: the 08:59 auction, the
	// 10:15:00.000 and 15:00:00.5 closing snapshots.
	send("GFEX.si2701", "2026-11-24 08:59:00", "12000.0", "30")
	send("GFEX.si2701", "2026-11-24 09:00:00.5", "12005.0", "40")
	send("GFEX.si2701", "2026-11-24 10:15:00.000", "12010.0", "50")
	send("GFEX.si2701", "2026-11-24 15:00:00.5", "12020.0", "60")
	// Upper case is rb: Monday 21:30 is Tuesday's night session.
	send("SHFE.RB2701", "2026-11-23 21:30:00", "3100.0", "10")
	// Not in the calendar: the default day sessions.
	send("ZZZ.x1", "2026-11-24 10:00:00", "1.0", "1")
	send("ZZZ.x1", "2026-11-24 10:00:10", "1.0", "2")
	send("ZZZ.x1", "2026-11-23 21:30:00", "1.0", "3")
	flush(t, pub)
	testwait.For(t, "every symbol", func() bool { return n.market.SymbolCount() == 3 })
	clk.Set(ex("2026-11-25 15:00:00")) // close everything
	si := n.waitClosed(t, 5, "GFEX.si2701", 1)
	var starts []string
	for _, b := range n.closed(0, "GFEX.si2701") {
		starts = append(starts, between(b, `"start_time":"`, `"`))
	}
	if want := "[2026-11-24T01:00:00.000Z 2026-11-24T02:14:00.000Z 2026-11-24T06:59:00.000Z]"; fmt.Sprint(starts) != want {
		t.Fatalf("si 1m bars start %v; want %s (09:00, 10:14, 14:59: no 08:59, 10:15 or 15:00 bar)", starts, want)
	}
	first := n.closed(0, "GFEX.si2701")[0]
	if !strings.Contains(first, `"open":"12000.0","high":"12005.0","low":"12000.0","close":"12005.0","volume":"40"`) ||
		!strings.Contains(first, `"open_interest":"5000"`) || !strings.Contains(first, `"trading_day":"2026-11-24"`) {
		t.Fatalf("si's first bar %s; want the auction's price and volume in it, open interest and trading day", first)
	}
	if !strings.Contains(si[0], `"volume":"60"`) || !strings.Contains(si[0], `"start_time":"2026-11-24T01:00:00.000Z","end_time":"2026-11-24T07:00:00.000Z"`) {
		t.Fatalf("si's day bar %s; want 09:00-15:00 with the day's 60 lots", si[0])
	}
	rb := n.waitClosed(t, 5, "SHFE.RB2701", 1)
	if !strings.Contains(rb[0], `"start_time":"2026-11-23T13:00:00.000Z"`) || !strings.Contains(rb[0], `"trading_day":"2026-11-24"`) {
		t.Fatalf("SHFE.RB2701's day bar %s; want rb's, from Monday 21:00", rb[0])
	}
	zzz := n.waitClosed(t, 0, "ZZZ.x1", 1)
	if len(zzz) != 1 || !strings.Contains(zzz[0], `"start_time":"2026-11-24T02:00:00.000Z"`) {
		t.Fatalf("ZZZ.x1's bars %v; want the 10:00 one only (no night session by default)", zzz)
	}
	if got := n.metric("marketcast_feed_unknown_products"); got != "1" {
		t.Fatalf("unknown products %s; want 1", got)
	}
	if lines := strings.Count(n.logs.String(), "product not in the trading calendar"); lines != 1 ||
		!strings.Contains(n.logs.String(), "product=ZZZ.x") {
		t.Fatalf("want one log line naming ZZZ.x:\n%s", n.logs.String())
	}
	// Holidays: National Day, and the evening before it.
	clk.Set(ex("2026-10-01 10:00:05"))
	send("DCE.m2701", "2026-09-30 21:30:00", "3000.0", "5")
	send("DCE.m2701", "2026-10-01 10:00:00", "3000.0", "6")
	flush(t, pub)
	testwait.For(t, "the holiday ticks", func() bool {
		return strings.Contains(dataOf(n.last(protocol.Tick, "DCE.m2701")), `"volume":"6"`)
	})
	n.market.Advance(clk.Now())
	if ev := n.last(protocol.Klines[0], "DCE.m2701"); ev != nil {
		t.Fatalf("a bar on a holiday: %s", dataOf(ev))
	}
}

// TestCFFEXHourBarIsKept: IF's 09:00 hour bar (trading from 09:30) closes
// whole and goes to the cluster's store, so a node that starts later
// serves it in history.
func TestCFFEXHourBarIsKept(t *testing.T) {
	ns := natstest.Start(t, "")
	clk := newClock(ex("2026-11-24 10:00:01"))
	n := startNode(t, ns.URL(), nodeOptions{sessions: table.Lookup, clock: clk, store: true})
	pub := connect(t, ns.URL())
	for i, at := range []string{"2026-11-24 09:29:00", "2026-11-24 09:30:00.5", "2026-11-24 09:59:59.5", "2026-11-24 10:00:00.5"} {
		publish(t, pub, "md.tick.CFFEX.IF2612", tick{at: ex(at), price: fmt.Sprintf("%d.0", 4000+i), vol: strconv.Itoa(10 * (i + 1)), to: "0.0"}.json())
	}
	flush(t, pub)
	h := n.waitClosed(t, 4, "CFFEX.IF2612", 1)
	if strings.Contains(h[0], "partial") || !strings.Contains(h[0], `"open":"4000.0","high":"4002.0","low":"4000.0","close":"4002.0","volume":"30"`) {
		t.Fatalf("IF 09:00 hour bar %s; want whole, the auction in it", h[0])
	}
	late := startNode(t, ns.URL(), nodeOptions{sessions: table.Lookup, store: true})
	testwait.For(t, "the stored hour bar", func() bool {
		if err := late.market.WarmBars(t.Context(), protocol.Klines[4], "CFFEX.IF2612"); err != nil {
			return false
		}
		return len(late.closed(4, "CFFEX.IF2612")) == 1
	})
	if got := late.closed(4, "CFFEX.IF2612")[0]; got != h[0] {
		t.Fatalf("from the store: %s; want %s", got, h[0])
	}
}

// TestBooksInOrder: a book older than its symbol's latest (by update_time)
// is stale and an identical one a duplicate: neither replaces the latest
// book, both are counted.
func TestBooksInOrder(t *testing.T) {
	ns := natstest.Start(t, "")
	n := startNode(t, ns.URL(), nodeOptions{clock: newClock(ex("2026-11-25 10:00:10"))})
	pub := connect(t, ns.URL())
	book := func(at, bid string) string {
		return `{"bids":[["` + bid + `","5"]],"asks":[["3001.0","7"]],"update_time":"` + ex(at).UTC().Format(protocol.TimeLayout) + `"}`
	}
	publish(t, pub, "md.depth.DCE.m2701", book("2026-11-25 10:00:01", "2999.0"))
	publish(t, pub, "md.depth.DCE.m2701", book("2026-11-25 10:00:02", "3000.0"))
	publish(t, pub, "md.depth.DCE.m2701", book("2026-11-25 10:00:01", "2999.0")) // the second collector's late copy
	publish(t, pub, "md.depth.DCE.m2701", book("2026-11-25 10:00:02", "3000.0")) // and its copy of the latest
	publish(t, pub, "md.tick.DCE.m2701", `{"last_price":"3000.0"}`)              // after them all
	flush(t, pub)
	testwait.For(t, "the tick after the books", func() bool { return n.last(protocol.Tick, "DCE.m2701") != nil })
	if got := dataOf(n.last(protocol.Depth, "DCE.m2701")); !strings.Contains(got, `"3000.0"`) || n.last(protocol.Depth, "DCE.m2701").Sequence() != 2 {
		t.Fatalf("latest book %s (sequence %d); want the 10:00:02 one, published twice in all", got, n.last(protocol.Depth, "DCE.m2701").Sequence())
	}
	for reason, want := range map[string]string{"stale": "1", "duplicate": "1"} {
		if got := n.metric(`marketcast_feed_ignored_total{channel="depth",reason="` + reason + `"}`); got != want {
			t.Errorf("books %s: %s; want %s", reason, got, want)
		}
	}
}
