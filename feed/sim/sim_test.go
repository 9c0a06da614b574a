package sim

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketcast/marketcast/feed/kline"
	"github.com/marketcast/marketcast/protocol"
)

// table is the built-in trading calendar.
var table = func() *kline.Table {
	b, err := os.ReadFile("../../configs/trading-calendar.yaml")
	if err != nil {
		panic(err)
	}
	t, err := kline.ParseTable(b)
	if err != nil {
		panic(err)
	}
	return t
}()

type recorder struct {
	mu   sync.Mutex
	pubs []*protocol.Publication
}

func (r *recorder) Publish(_ context.Context, p *protocol.Publication) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pubs = append(r.pubs, p)
	return uint64(len(r.pubs)), nil
}

// units parses a decimal string into units of 10^-decimals.
func units(t *testing.T, s string, decimals uint8) int64 {
	t.Helper()
	i, f, _ := strings.Cut(s, ".")
	if len(f) != int(decimals) {
		t.Fatalf("%q has %d decimals; want %d", s, len(f), decimals)
	}
	v, err := strconv.ParseInt(i+f, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

type tickData struct {
	Last, Bid, Ask, BidVol, AskVol, Volume, Turnover, Update, PreSettle, Upper, Lower, Open, High, Low string
}

func decodeTick(t *testing.T, b []byte) tickData {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return tickData{m["last_price"], m["bid_price"], m["ask_price"], m["bid_volume"], m["ask_volume"], m["volume"],
		m["turnover"], m["update_time"], m["pre_settlement"], m["upper_limit"], m["lower_limit"], m["open"], m["high"], m["low"]}
}

// run steps the simulator from start for n snapshots, as Run would.
func run(t *testing.T, s *Sim, start time.Time, n int) *recorder {
	t.Helper()
	var r recorder
	s.Open(context.Background(), &r, start)
	for i := 1; i <= n; i++ {
		s.Step(context.Background(), &r, start.Add(time.Duration(i)*s.Interval()))
	}
	return &r
}

// TestSnapshotsAreConsistent checks what the market-data audit rebuilt:
// prices on the grid and inside the published limits, bid < ask, the
// tick's bid and ask volumes equal to the book's first level, cumulative
// volume that never falls, a first snapshot with nothing traded, and a
// snapshot every 500 ms on the half second.
func TestSnapshotsAreConsistent(t *testing.T) {
	syms := []string{"SHFE.rb2405", "SHFE.au2406", "CFFEX.IF2403", "CZCE.TA405", "INE.sc2405", "CFFEX.T2403"}
	s, err := New(Config{Symbols: syms, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 24, 2, 0, 0, 0, time.UTC)
	r := run(t, s, start, 2000)
	books := map[string]map[string]any{}
	lastVol := map[string]int64{}
	first := map[string]bool{}
	for _, m := range r.pubs {
		p, _ := ParseSymbol(m.ID)
		if m.Channel == protocol.Depth {
			var d map[string]any
			_ = json.Unmarshal(m.Data, &d)
			books[m.ID] = d
			if int(d["levels"].(float64)) != max(len(d["bids"].([]any)), len(d["asks"].([]any))) {
				t.Fatalf("levels %v do not count what is sent: %s", d["levels"], m.Data)
			}
			continue
		}
		if m.Channel != protocol.Tick {
			t.Fatalf("the simulator publishes ticks and books only, got %s", m.Channel.Push)
		}
		d := decodeTick(t, m.Data)
		if !first[m.ID] {
			first[m.ID] = true
			if d.Volume != "0" || d.Open != "" {
				t.Fatalf("%s: first snapshot volume %s open %q; want 0 and none (nothing traded yet)", m.ID, d.Volume, d.Open)
			}
		}
		lo, hi := units(t, d.Lower, p.Decimals), units(t, d.Upper, p.Decimals)
		for _, v := range []string{d.Last, d.Bid, d.Ask} {
			u := units(t, v, p.Decimals)
			if u%p.TickUnits != 0 || u < lo || u > hi {
				t.Fatalf("%s price %s off the grid or beyond the limits [%s, %s]", m.ID, v, d.Lower, d.Upper)
			}
		}
		if units(t, d.Bid, p.Decimals) >= units(t, d.Ask, p.Decimals) {
			t.Fatalf("%s crossed: bid %s ask %s", m.ID, d.Bid, d.Ask)
		}
		v, _ := strconv.ParseInt(d.Volume, 10, 64)
		if v < lastVol[m.ID] {
			t.Fatalf("%s volume went down: %d after %d", m.ID, v, lastVol[m.ID])
		}
		lastVol[m.ID] = v
		ut, err := time.Parse(time.RFC3339, d.Update)
		if err != nil || ut.Nanosecond()%int(500*time.Millisecond) != 0 {
			t.Fatalf("%s update_time %q not on the half second", m.ID, d.Update)
		}
		if b := books[m.ID]; b != nil {
			_ = b // the book of the previous snapshot; this tick's book follows it
		}
	}
	// The tick's level-1 volumes are the book's (tick and book of one snapshot are published together).
	for i := 0; i+1 < len(r.pubs); i++ {
		if r.pubs[i].Channel != protocol.Tick || r.pubs[i+1].Channel != protocol.Depth || r.pubs[i].ID != r.pubs[i+1].ID {
			continue
		}
		d := decodeTick(t, r.pubs[i].Data)
		var b struct{ Bids, Asks [][2]string }
		_ = json.Unmarshal(r.pubs[i+1].Data, &b)
		if len(b.Bids) > 0 && (b.Bids[0][0] != d.Bid || b.Bids[0][1] != d.BidVol) || len(b.Asks) > 0 && (b.Asks[0][0] != d.Ask || b.Asks[0][1] != d.AskVol) {
			t.Fatalf("tick bid %s×%s ask %s×%s; book %v / %v", d.Bid, d.BidVol, d.Ask, d.AskVol, b.Bids[0], b.Asks[0])
		}
	}
}

// TestDailyVolatilityIsRealistic: day to day, rb moves about as much as rb
// does (the audit measured 3 % an hour once; rb's daily σ is 1-1.5 %),
// and within a day too.
func TestDailyVolatilityIsRealistic(t *testing.T) {
	s, _ := New(Config{Symbols: []string{"SHFE.rb2405"}, Seed: 11, Rate: 0.05}) // a snapshot every 20 s
	c := s.contracts[0]
	var sum float64
	const days = 400
	for d := int64(20000); d < 20000+days; d++ {
		r := math.Log(c.dayValue(d+1) / c.dayValue(d))
		sum += r * r
	}
	if sigma := 100 * math.Sqrt(sum/days); sigma < 0.9 || sigma > 1.5 {
		t.Fatalf("rb daily volatility %.2f%% day to day; want near 1.2%%", sigma)
	}
	// Within a day: the fair price's moves, step by step.
	start := time.Date(2026, 11, 24, 0, 0, 0, 0, time.FixedZone("CST", 8*3600))
	c.at = start.Add(-s.Interval())
	var prev float64
	sum = 0
	n := 0
	s.advance(c, start.Add(23*time.Hour), false, func(c *contract, _ time.Time) {
		if prev != 0 {
			r := math.Log(c.fair / prev)
			sum += r * r
			n++
		}
		prev = c.fair
	})
	if sigma := 100 * math.Sqrt(sum*4320/float64(n)); sigma < 0.8 || sigma > 1.8 {
		t.Fatalf("rb intraday volatility %.2f%% a day; want near 1.2%%", sigma)
	}
}

// TestTradingDayResets: the day's volume, turnover, open/high/low start
// again at the next trading day, and the settlement moves.
func TestTradingDayResets(t *testing.T) {
	s, _ := New(Config{Symbols: []string{"SHFE.rb2405"}, Seed: 3})
	cst := time.FixedZone("CST", 8*3600)
	start := time.Date(2026, 11, 24, 23, 59, 0, 0, cst) // around the clock: the day ends at midnight in Shanghai
	r := run(t, s, start, 240)
	var before, after *tickData
	for _, m := range r.pubs {
		if m.Channel != protocol.Tick {
			continue
		}
		d := decodeTick(t, m.Data)
		ut, _ := time.Parse(time.RFC3339, d.Update)
		if ut.In(cst).Day() == 24 {
			before = &d
		} else if after == nil {
			after = &d
		}
	}
	if before == nil || after == nil {
		t.Fatal("no ticks on both sides of midnight")
	}
	bv, _ := strconv.Atoi(before.Volume)
	av, _ := strconv.Atoi(after.Volume)
	if av >= bv || after.PreSettle == before.PreSettle && before.Last != before.PreSettle {
		t.Fatalf("across the trading day: volume %d → %d, settlement %s → %s; want a reset and the last price settled", bv, av, before.PreSettle, after.PreSettle)
	}
}

// TestExchangeHours: with exchange hours nothing is sent outside a
// product's sessions.
func TestExchangeHours(t *testing.T) {
	s, _ := New(Config{Symbols: []string{"SHFE.rb2405", "CFFEX.IF2403"}, Seed: 5, Sessions: table.Lookup})
	cst := time.FixedZone("CST", 8*3600)
	r := run(t, s, time.Date(2026, 11, 24, 11, 29, 0, 0, cst), 600) // 11:29 to 11:34: lunch begins at 11:30
	for _, m := range r.pubs {
		if m.Channel != protocol.Tick {
			continue
		}
		ut, _ := time.Parse(time.RFC3339, decodeTick(t, m.Data).Update)
		if !ut.In(cst).Before(time.Date(2026, 11, 24, 11, 30, 0, 0, cst)) {
			t.Fatalf("%s sent a snapshot at %v, in the lunch break", m.ID, ut.In(cst))
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{Symbols: []string{"NYMEX.CL2405"}},
		{Symbols: []string{"SHFE.rb2405", "SHFE.rb2405"}},
		{Rate: -1},
		{Levels: 50},
	} {
		if _, err := New(c); err == nil {
			t.Fatalf("config %+v accepted", c)
		}
	}
	if s, err := New(Config{}); err != nil || s.Symbols()[0] != "SHFE.rb2405" || s.Symbols()[1] != "SHFE.hc2405" {
		t.Fatalf("defaults: %v %v", err, s)
	}
}

// TestDefaultsTradeToday: beside the seed's two, the default symbols are
// the contracts that trade most today.
func TestDefaultsTradeToday(t *testing.T) {
	got := DefaultSymbols(time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC))
	want := []string{"SHFE.rb2405", "SHFE.hc2405", "SHFE.rb2701", "SHFE.hc2701", "SHFE.cu2701", "SHFE.au2706",
		"SHFE.ag2706", "INE.sc2701", "DCE.m2701", "DCE.i2701", "CZCE.TA701", "CZCE.MA701", "CFFEX.IF2612", "CFFEX.IC2612"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("defaults %v; want %v", got, want)
	}
	if _, err := New(Config{Symbols: got}); err != nil {
		t.Fatal(err)
	}
}

func TestUniverse(t *testing.T) {
	u := Universe(500)
	seen := map[string]bool{}
	for _, s := range u {
		if seen[s] {
			t.Fatalf("duplicate %s", s)
		}
		seen[s] = true
		if _, err := ParseSymbol(s); err != nil {
			t.Fatal(err)
		}
	}
	if len(u) != 500 {
		t.Fatalf("universe of %d", len(u))
	}
}

// TestBackfill: a simulator with a backfill starts with the past, in
// order, within the tick budget, and carries on from it: the live day's
// cumulative volume continues from the backfill's.
func TestBackfill(t *testing.T) {
	s, err := New(Config{Symbols: []string{"SHFE.rb2405", "DCE.m2405"}, Seed: 7, Backfill: 30 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 24, 3, 0, 0, 0, time.UTC) // 11:00 in Shanghai, mid-day
	var r recorder
	s.Start(context.Background(), &r, now)
	last := map[string]tickData{}
	ticks := 0
	for _, p := range r.pubs {
		if p.Channel != protocol.Tick {
			continue
		}
		ticks++
		d := decodeTick(t, p.Data)
		if prev, ok := last[p.ID]; ok {
			if d.Update < prev.Update || units(t, d.Volume, 0) < units(t, prev.Volume, 0) {
				t.Fatalf("%s went back: %+v after %+v", p.ID, d, prev)
			}
		} else if d.Update < "2026-11-24T02:30:00.000Z" || d.Update >= "2026-11-24T02:31:00.000Z" {
			t.Fatalf("%s starts at %s; want 30 minutes back", p.ID, d.Update)
		}
		last[p.ID] = d
	}
	// At most four a minute a contract: the first, highest, lowest and
	// last trades, and the state at now.
	if ticks < 2*30 || ticks > 2*30*4+2 {
		t.Fatalf("%d ticks; want one to four a minute over 30 minutes for 2 symbols", ticks)
	}
	if v := units(t, last["SHFE.rb2405"].Volume, 0); v == 0 || last["SHFE.rb2405"].Update != "2026-11-24T03:00:00.000Z" {
		t.Fatalf("the open after the backfill: %+v; want the day's volume carried on", last["SHFE.rb2405"])
	}
	if _, err := New(Config{Backfill: -time.Second}); err == nil {
		t.Fatal("a negative backfill was accepted")
	}
}

// bars builds closed 1m, 5m and 1h bars from what a simulator published,
// by the server's builder.
func bars(t *testing.T, pubs []*protocol.Publication, cal kline.Sessions) map[string]string {
	t.Helper()
	out := map[string]string{}
	b := kline.NewBuilder(func(s string) *kline.Calendar { c, _, _ := cal(s); return c }, func(symbol string, i int, br *protocol.Bar) {
		if br.Closed && i <= 4 {
			out[symbol+" "+kline.Intervals[i].Channel.Push+" "+br.Start.UTC().Format(time.RFC3339)] = string(br.AppendJSON(nil))
		}
	})
	for _, p := range pubs {
		if p.Channel != protocol.Tick {
			continue
		}
		q, ok := protocol.QuoteOf(p)
		if !ok {
			t.Fatalf("tick %s", p.Data)
		}
		b.Tick(p.ID, p.Time, p.Time, &q)
		b.Flush(p.Time)
	}
	return out
}

// TestRestartRepeatsThePast: a simulator started later (a restart) builds,
// from its backfill, exactly the bars one that ran live all along built
// over the same minutes: an open chart does not change under its user.
func TestRestartRepeatsThePast(t *testing.T) {
	syms := []string{"SHFE.rb2705", "SHFE.au2706", "CFFEX.IF2612", "CZCE.TA705"}
	for _, c := range []struct {
		name     string
		sessions kline.Sessions
		start    time.Time
	}{
		{"always", kline.AlwaysOpen, time.Date(2026, 11, 24, 1, 17, 0, 0, time.UTC)},
		// Exchange hours across the lunch break and IF's 13:00 reopening.
		{"exchange", table.Lookup, time.Date(2026, 11, 24, 3, 10, 0, 0, time.UTC)},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, _ := New(Config{Symbols: syms, Seed: 42, Sessions: c.sessions, Backfill: time.Hour})
			var ra recorder
			a.Start(context.Background(), &ra, c.start)
			live := 50 * time.Minute
			for at := c.start.Truncate(a.Interval()).Add(a.Interval()); !at.After(c.start.Add(live)); at = at.Add(a.Interval()) {
				if at.Second()%7 == 3 && at.Nanosecond() == 0 { // a stalled machine skips a few steps now and then
					continue
				}
				a.Step(context.Background(), &ra, at)
			}
			restart := c.start.Add(live + 500*time.Millisecond)
			b, _ := New(Config{Symbols: syms, Seed: 42, Sessions: c.sessions, Backfill: 2 * time.Hour})
			var rb recorder
			b.Start(context.Background(), &rb, restart)
			ba, bb := bars(t, ra.pubs, c.sessions), bars(t, rb.pubs, c.sessions)
			compared := 0
			for k, v := range ba {
				if strings.Contains(v, `"partial":true`) {
					continue // A joined mid-bar at its start
				}
				w, ok := bb[k]
				if !ok {
					continue
				}
				compared++
				if w != v {
					t.Fatalf("%s after the restart:\n%s\nwas\n%s", k, w, v)
				}
			}
			if compared < len(syms)*60 {
				t.Fatalf("compared %d bars of %d; want the live hour's", compared, len(ba))
			}
		})
	}
}
