// Package sim is the built-in market simulator: Chinese futures contracts
// with their real tick sizes, multipliers and limits, sending a snapshot
// every 500 ms per contract as CTP does. Prices walk on the tick grid with
// a daily volatility near each product's, inside the daily limits; the book
// evolves from step to step and its best level is the tick's; volume,
// turnover, open, high, low and average price accumulate over the trading
// day and start again with the next. It publishes ticks and books; bars are
// built from the ticks by the server's bar builder (feed/kline), as for any
// feed. See docs/FEED.md.
//
// The market is a function of the seed and the time: each trading day
// starts from a state drawn for that day, and each snapshot's moves and
// trades are drawn from a stream seeded by the contract and the day, in
// order. So a simulator that restarts plays the same past (its backfill
// rebuilds the bars an open chart already shows) and goes on alike. Only
// the book's queues, which no bar holds, are drawn afresh.
package sim

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/marketcast/marketcast/feed"
	"github.com/marketcast/marketcast/feed/kline"
	"github.com/marketcast/marketcast/protocol"
	"github.com/marketcast/marketcast/protocol/decimal"
)

// Config tunes the simulator.
type Config struct {
	// Symbols to simulate. Empty means DefaultSymbols as of today.
	Symbols []string
	// Rate is snapshots per second per contract. Zero means 2 (CTP's 500 ms).
	Rate float64
	// Levels is the book depth. Zero means 5.
	Levels int
	// Sessions are the trading calendars to follow (weekends, holidays and
	// breaks off); nil trades around the clock, a trading day per calendar
	// day in Shanghai (the demo's hours). The bar builder must follow the
	// same.
	Sessions kline.Sessions
	// Seed chooses the market. Zero means a random one, which a restart
	// does not repeat.
	Seed uint64
	// Backfill simulates this much of the past when Run starts, so charts
	// have bars at once, published with their past exchange times: of each
	// minute, the snapshots that make its bars (the first, highest, lowest
	// and last trades), within a budget of BackfillTicks.
	Backfill time.Duration
	// Log receives what an operator should know (a past that a restart
	// will not repeat); nil: discarded.
	Log *slog.Logger
}

// BackfillTicks bounds the ticks a backfill publishes at start, whatever the
// symbol count: a start-up cost of about a second.
const BackfillTicks = 20000

// CatchUpSteps bounds the snapshots the simulator computes at start to
// reach the present from each trading day's open (a day of 14 contracts at
// 2 a second is 2.4 million, about a second). Beyond it (hundreds of
// symbols, or a fast rate) each
// contract starts its day where the backfill begins, and the past is not
// the same after a restart; the simulator says so in its Warning.
const CatchUpSteps = 10_000_000

// Sim is a feed.Source.
type Sim struct {
	cfg       Config
	contracts []*contract
	rng       *rand.Rand // the book's queues: not part of the repeatable market
	now       func() time.Time
	out       []*protocol.Publication // what the current step publishes
	// Warning is set when the simulator cannot repeat its past (too many
	// snapshots to compute at start); it is logged.
	Warning string
}

type contract struct {
	symbol string
	p      Product
	cal    *kline.Calendar
	key    uint64 // the seed and the symbol: every draw's root

	// The repeatable market, a function of the day and the steps since its
	// open.
	day        time.Time  // the trading day of the values below (midnight)
	dayName    string     // as 2006-01-02
	rng        *rand.Rand // this day's draws
	at         time.Time  // the last snapshot simulated
	close      time.Time  // the day's close, where fair reaches target
	preSettle  int64      // previous settlement: the limits and change are against it
	target     float64    // the day's settlement the fair price heads for
	fair       float64    // the unobserved price the market trades around
	last       int64
	bid, ask   int64
	volume     int64 // cumulative for the trading day
	turnover   int64 // cumulative, price units × multiplier
	open       int64
	high, low  int64
	openInt    int64
	traded     bool    // the last snapshot had a trade
	stepVol    float64 // volatility of one step, as a fraction of the price
	bidQ, askQ []int64 // book volumes, best first (drawn by Sim.rng)
}

// New validates cfg and prepares the contracts.
func New(cfg Config) (*Sim, error) {
	if len(cfg.Symbols) == 0 {
		cfg.Symbols = DefaultSymbols(time.Now())
	}
	if cfg.Rate == 0 {
		cfg.Rate = 2
	}
	if cfg.Rate < 0 || cfg.Rate > 1000 {
		return nil, fmt.Errorf("sim: rate %v out of range (0, 1000]", cfg.Rate)
	}
	if cfg.Levels == 0 {
		cfg.Levels = 5
	}
	if cfg.Levels < 1 || cfg.Levels > 20 {
		return nil, fmt.Errorf("sim: levels %d out of range [1, 20]", cfg.Levels)
	}
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64() | 1
	}
	if cfg.Backfill < 0 || cfg.Backfill > 7*24*time.Hour {
		return nil, fmt.Errorf("sim: backfill %v out of range [0, 168h]", cfg.Backfill)
	}
	if cfg.Sessions == nil {
		cfg.Sessions = kline.AlwaysOpen
	}
	s := &Sim{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, rand.Uint64())), now: time.Now}
	seen := make(map[string]bool)
	for _, sym := range cfg.Symbols {
		if seen[sym] {
			return nil, fmt.Errorf("sim: symbol %q listed twice", sym)
		}
		seen[sym] = true
		p, err := ParseSymbol(sym)
		if err != nil {
			return nil, err
		}
		cal, _, _ := cfg.Sessions(sym)
		h := fnv.New64a()
		_, _ = h.Write([]byte(sym))
		c := &contract{symbol: sym, p: p, cal: cal, key: h.Sum64() ^ cfg.Seed*0x9e3779b97f4a7c15,
			bidQ: make([]int64, cfg.Levels), askQ: make([]int64, cfg.Levels)}
		c.stepVol = p.DailyVol / 100 / math.Sqrt(s.stepsPerDay(cal))
		for i := range c.bidQ {
			c.bidQ[i], c.askQ[i] = s.lots(p, 10), s.lots(p, 10)
		}
		s.contracts = append(s.contracts, c)
	}
	return s, nil
}

// stepsPerDay is how many snapshots a trading day holds.
func (s *Sim) stepsPerDay(cal *kline.Calendar) float64 {
	open := 0
	for m := 0; m < 24*60*2; m++ { // two days of minutes covers a night session and the day after
		t := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC).Add(time.Duration(m) * time.Minute) // a Monday
		if _, in := cal.Locate(t); in {
			open++
		}
	}
	return max(float64(open)/2*60*s.cfg.Rate, 1)
}

// lots draws a queue size around the product's mean (the book's draws).
func (s *Sim) lots(p Product, times float64) int64 {
	return 1 + int64(s.rng.ExpFloat64()*p.Lots*times)
}

// Symbols lists the simulated symbols.
func (s *Sim) Symbols() []string {
	out := make([]string, len(s.contracts))
	for i, c := range s.contracts {
		out[i] = c.symbol
	}
	return out
}

// Interval is the time between two snapshots of a contract.
func (s *Sim) Interval() time.Duration { return time.Duration(float64(time.Second) / s.cfg.Rate) }

// Run publishes a snapshot of every contract in session each step until
// ctx ends. Steps fall on whole multiples of the interval (00.000, 00.500…),
// as exchange snapshots do; each contract first sends its state.
func (s *Sim) Run(ctx context.Context, sink feed.Sink) error {
	interval := s.Interval()
	now := s.now()
	s.Start(ctx, sink, now)
	next := now.Truncate(interval).Add(interval)
	timer := time.NewTimer(time.Until(next))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		s.Step(ctx, sink, next)
		next = next.Add(interval)
		if late := time.Since(next); late > 0 {
			// A stalled machine: the next step covers the ones it missed,
			// publishing their trades, so the bars stay the market's.
			next = next.Add(late.Truncate(interval) + interval)
		}
		timer.Reset(time.Until(next))
	}
}

// Start brings every contract to now: it computes each trading day from
// its open, publishes the backfill's part of it, then every contract's
// state at now (Open).
func (s *Sim) Start(ctx context.Context, sink feed.Sink, now time.Time) {
	interval := s.Interval()
	from := now.Add(-s.cfg.Backfill).Truncate(interval)
	if n := len(s.contracts); n > 0 && s.cfg.Backfill > 0 {
		// Of each minute the backfill publishes at most four ticks a
		// contract; a long backfill of many contracts is shortened.
		if budget := time.Duration(BackfillTicks/(4*n)) * time.Minute; s.cfg.Backfill > budget {
			from = now.Add(-budget).Truncate(interval)
		}
	}
	// Where each contract's computation starts: its trading day's open.
	var steps float64
	starts := make([]time.Time, len(s.contracts))
	for i, c := range s.contracts {
		starts[i] = from
		// The day of the first session from the backfill's start on (a
		// session that resumes after now included: its morning counts).
		if day, ok := nextDay(c.cal, from); ok {
			if open := c.cal.OpenOf(day); open.Before(from) {
				starts[i] = open
			}
		}
		steps += float64(now.Sub(starts[i])) / float64(interval)
	}
	if steps > CatchUpSteps {
		s.Warning = fmt.Sprintf("%d contracts at %g snapshots a second are too many to compute from each trading day's open "+
			"(%.0f snapshots): each starts its day at the backfill's start, and a restart does not repeat the past", len(s.contracts), s.cfg.Rate, steps)
		for i := range starts {
			starts[i] = from
		}
		if s.cfg.Log != nil {
			s.cfg.Log.Warn("simulator: " + s.Warning)
		}
	}
	for i, c := range s.contracts {
		c.at = starts[i].Truncate(interval).Add(-interval)
		var mins minutes
		s.advance(c, now.Add(-time.Nanosecond), false, func(c *contract, g time.Time) {
			if !g.Before(from) && c.traded {
				mins.note(c, g, s)
			}
		})
		mins.flush(s)
		if len(s.out) >= 1024 {
			s.send(ctx, sink)
		}
	}
	s.send(ctx, sink)
	s.Open(ctx, sink, now)
}

// nextDay finds the trading day of the first session time at or after
// from, within three weeks (a long holiday).
func nextDay(cal *kline.Calendar, from time.Time) (time.Time, bool) {
	end := from.Add(21 * 24 * time.Hour)
	for t := from; !t.After(end); t = t.Add(time.Minute) {
		if day, in := cal.TradingDay(t); in {
			return day, true
		}
	}
	return time.Time{}, false
}

// minutes keeps, of one minute of a contract's snapshots, those that make
// its bars: the first, highest, lowest and last trades.
type minutes struct {
	minute                 time.Time
	first, high, low, last *snapshot
	free                   [4]snapshot
}

// snapshot is a contract's published values at one time.
type snapshot struct {
	at time.Time
	c  contract
}

func (m *minutes) note(c *contract, g time.Time, s *Sim) {
	if min := g.Truncate(time.Minute); !min.Equal(m.minute) {
		m.flush(s)
		m.minute = min
	}
	take := func(slot int) *snapshot {
		sn := &m.free[slot]
		sn.at, sn.c = g, *c
		return sn
	}
	if m.first == nil {
		m.first = take(0)
		m.high, m.low = m.first, m.first
	} else {
		if c.last > m.high.c.last {
			m.high = take(1)
		}
		if c.last < m.low.c.last {
			m.low = take(2)
		}
	}
	m.last = take(3)
}

// flush queues the minute's chosen snapshots, in time order, once each.
func (m *minutes) flush(s *Sim) {
	if m.first == nil {
		return
	}
	picks := []*snapshot{m.first, m.high, m.low, m.last}
	for i := 1; i < len(picks); i++ {
		for j := i; j > 0 && picks[j].at.Before(picks[j-1].at); j-- {
			picks[j], picks[j-1] = picks[j-1], picks[j]
		}
	}
	var prev time.Time
	for _, sn := range picks {
		if sn.at.Equal(prev) {
			continue
		}
		prev = sn.at
		s.publishTick(&sn.c, sn.at)
	}
	m.first, m.high, m.low, m.last = nil, nil, nil, nil
}

// advance computes contract c's snapshots after c.at up to t, calling each
// for every one in session. book says whether the book's queues move too
// (they are not part of the repeatable market: a computation that
// publishes no book skips them).
func (s *Sim) advance(c *contract, t time.Time, book bool, each func(c *contract, at time.Time)) {
	interval := s.Interval()
	var (
		day   time.Time
		in    bool
		until time.Time // the session answer holds before this
	)
	for g := c.at.Add(interval); !g.After(t); g = g.Add(interval) {
		c.at = g
		if !g.Before(until) {
			day, in, until = c.cal.Span(g)
		}
		if !in {
			if until.After(t) {
				c.at = t.Truncate(interval)
				return
			}
			next := until.Truncate(interval) // on to the first snapshot of the next session
			if next.Before(until) {
				next = next.Add(interval)
			}
			g = next.Add(-interval)
			continue
		}
		if !day.Equal(c.day) {
			s.newDay(c, day)
		}
		s.step(c, book)
		each(c, g)
	}
}

// Open sends every contract in session its state at now, tick and book.
func (s *Sim) Open(ctx context.Context, sink feed.Sink, now time.Time) {
	for _, c := range s.contracts {
		if day, in := c.cal.TradingDay(now); in {
			if !day.Equal(c.day) { // a day not yet begun: its state at the open
				s.newDay(c, day)
			}
			s.publishTick(c, now)
			s.publishBook(c, now)
		}
	}
	s.send(ctx, sink)
}

// Step moves every contract to exchange time at and publishes its
// snapshots: each one since the last step (one, unless steps were missed),
// with the book at at. Run calls it on a timer; tests call it with the
// times they need.
func (s *Sim) Step(ctx context.Context, sink feed.Sink, at time.Time) {
	for _, c := range s.contracts {
		if c.at.IsZero() {
			c.at = at.Add(-s.Interval())
		}
		published := false
		s.advance(c, at, true, func(c *contract, g time.Time) {
			s.publishTick(c, g)
			published = true
		})
		if published {
			s.publishBook(c, at)
		}
	}
	s.send(ctx, sink)
}

// Day values: each trading day's settlement is drawn from a slow process
// over the days (mean-reverting around the product's reference price), so
// a contract's level is the same whoever computes it, and a day's price
// heads for the next day's settlement.
const (
	dayMemory = 0.9 // how much of yesterday's deviation stays
	dayTerms  = 48  // days the process looks back
)

// dayValue is the contract's settlement level for the calendar day with
// index d (days since 1970-01-01), in price units.
func (c *contract) dayValue(d int64) float64 {
	// An AR(1) in log price whose daily change has the product's daily
	// volatility: stationary deviation σ/√(2(1-φ)).
	sigma := c.p.DailyVol / 100 / math.Sqrt(2*(1-dayMemory))
	var x float64
	w := 1.0
	for k := int64(0); k < dayTerms; k++ {
		x += w * normal(c.key, uint64(d-k))
		w *= dayMemory
	}
	x *= sigma * math.Sqrt(1-dayMemory*dayMemory)
	return float64(c.p.BasePrice) * math.Exp(x)
}

// normal is a standard normal draw fixed by key and n.
func normal(key, n uint64) float64 {
	r := rand.New(rand.NewPCG(key, n^0xd1b54a32d192ed03))
	return r.NormFloat64()
}

func dayIndex(day time.Time) int64 {
	y, m, d := day.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
}

// newDay starts a trading day from its own state: the settlement it is
// measured against (the previous trading day's target), the price it heads
// for, the day's open interest, and the stream of its draws.
func (s *Sim) newDay(c *contract, day time.Time) {
	d := dayIndex(day)
	c.day, c.dayName = day, day.Format("2006-01-02")
	c.rng = rand.New(rand.NewPCG(c.key, uint64(d)))
	c.close = c.cal.CloseOf(day)
	prev := dayIndex(c.cal.PrevTradingDay(day))
	c.preSettle = int64(math.Round(c.dayValue(prev+1)/float64(c.p.TickUnits))) * c.p.TickUnits
	c.target = c.dayValue(d + 1)
	c.fair = float64(c.preSettle)
	c.volume, c.turnover = 0, 0
	c.last = s.grid(c, c.fair)
	c.open, c.high, c.low = 0, 0, 0
	c.bid, c.ask = c.last-c.p.TickUnits, c.last
	c.openInt = 50000 + int64(c.rng.IntN(200000))
	c.traded = false
}

// limits are the day's lowest and highest tradable prices.
func (c *contract) limits() (lo, hi int64) {
	// Rounded towards the settlement onto the grid.
	limit := c.preSettle * c.p.LimitPct / 100 / c.p.TickUnits * c.p.TickUnits
	return c.preSettle - limit, c.preSettle + limit
}

// grid puts a price on the tick grid inside the limits.
func (s *Sim) grid(c *contract, price float64) int64 {
	lo, hi := c.limits()
	u := int64(math.Round(price/float64(c.p.TickUnits))) * c.p.TickUnits
	return min(max(u, lo), hi)
}

// step moves one contract by one snapshot: the fair price walks towards
// the day's settlement, a trade may happen at the best bid or ask. Every
// draw that makes the market comes from the day's stream, in order; the
// book's queues are drawn apart.
func (s *Sim) step(c *contract, book bool) {
	p := c.p
	// A random walk in log price, pulled towards the day's settlement so
	// the close comes near it.
	left := max(float64(c.close.Sub(c.at))/float64(s.Interval()), 1)
	pull := math.Log(c.target/c.fair) / left
	c.fair *= math.Exp(c.stepVol*c.rng.NormFloat64() + pull)
	target := s.grid(c, c.fair)
	prevBid, prevAsk := c.bid, c.ask
	if target >= c.ask {
		c.bid, c.ask = target-p.TickUnits, target
	} else if target <= c.bid {
		c.bid, c.ask = target, target+p.TickUnits
	}
	lo, hi := c.limits()
	c.bid, c.ask = min(max(c.bid, lo), hi-p.TickUnits), min(max(c.ask, lo+p.TickUnits), hi)
	if book {
		s.shiftBook(c, prevBid, prevAsk)
	}

	// Trades: most snapshots carry some, at the side the price moved to.
	c.traded = c.rng.Float64() < 0.7
	if c.traded {
		qty := 1 + int64(c.rng.ExpFloat64()*p.Lots)
		price, hitAsk := c.ask, c.fair >= float64(c.bid+c.ask)/2
		if !hitAsk {
			price = c.bid
		}
		if c.volume == 0 { // the day's first trade
			c.open, c.high, c.low = price, price, price
		}
		c.last = price
		c.volume += qty
		c.turnover += price * qty * p.Multiplier
		c.high, c.low = max(c.high, price), min(c.low, price)
		c.openInt = max(0, c.openInt+int64(c.rng.IntN(2*int(qty)+1))-qty)
		if hitAsk {
			c.askQ[0] = max(1, c.askQ[0]-qty)
		} else {
			c.bidQ[0] = max(1, c.bidQ[0]-qty)
		}
	}
	if !book {
		return
	}
	for i := range c.bidQ { // queues come and go
		c.bidQ[i] = max(1, c.bidQ[i]+int64(s.rng.NormFloat64()*0.15*float64(c.bidQ[i]+5)))
		c.askQ[i] = max(1, c.askQ[i]+int64(s.rng.NormFloat64()*0.15*float64(c.askQ[i]+5)))
	}
}

// shiftBook moves the queues with the prices: levels that still exist keep
// their volume, new ones start with a fresh queue.
func (s *Sim) shiftBook(c *contract, prevBid, prevAsk int64) {
	shift := func(q []int64, moved int64) {
		n := int(moved / c.p.TickUnits)
		switch {
		case n > 0 && n < len(q): // the best price rose n ticks: new levels in front
			copy(q[n:], q[:len(q)-n])
			for i := 0; i < n; i++ {
				q[i] = s.lots(c.p, 10)
			}
		case n < 0 && -n < len(q):
			copy(q, q[-n:])
			for i := len(q) + n; i < len(q); i++ {
				q[i] = s.lots(c.p, 10)
			}
		case n != 0:
			for i := range q {
				q[i] = s.lots(c.p, 10)
			}
		}
	}
	shift(c.bidQ, c.bid-prevBid)
	shift(c.askQ, prevAsk-c.ask)
}

// send publishes what the step queued, as one batch: a snapshot of every
// contract is due at the same instant, so each terminal gets its symbols'
// ticks and books in one write.
func (s *Sim) send(ctx context.Context, sink feed.Sink) {
	if len(s.out) > 0 {
		_, _ = feed.PublishAll(ctx, sink, s.out)
		clear(s.out)
		s.out = s.out[:0]
	}
}

// publishTick queues a contract's tick at exchange time at.
func (s *Sim) publishTick(c *contract, at time.Time) {
	p := c.p
	dec := func(u int64) string { return decimal.New(u, p.Decimals).String() }
	lo, hi := c.limits()
	change := c.last - c.preSettle
	tick := &feed.Tick{
		Symbol:        c.symbol,
		LastPrice:     dec(c.last),
		BidPrice:      dec(c.bid),
		AskPrice:      dec(c.ask),
		BidVolume:     strconv.FormatInt(c.bidQ[0], 10),
		AskVolume:     strconv.FormatInt(c.askQ[0], 10),
		Volume:        strconv.FormatInt(c.volume, 10),
		Turnover:      dec(c.turnover),
		OpenInterest:  strconv.FormatInt(c.openInt, 10),
		Change:        dec(change),
		ChangePercent: decimal.New(roundDiv(change*10000, c.preSettle), 2).String(),
		UpdateTime:    at.UTC().Format(protocol.TimeLayout),
		PreSettlement: dec(c.preSettle),
		UpperLimit:    dec(hi),
		LowerLimit:    dec(lo),
	}
	if c.volume > 0 {
		tick.Open, tick.High, tick.Low = dec(c.open), dec(c.high), dec(c.low)
		avg := float64(c.turnover) / float64(c.volume*p.Multiplier)
		tick.AveragePrice = decimal.New(int64(math.Round(avg*100)), p.Decimals+2).String()
	}
	pub := feed.TickPublication(tick)
	pub.Time = at
	s.out = append(s.out, pub)
}

// publishBook queues a contract's book at exchange time at.
func (s *Sim) publishBook(c *contract, at time.Time) {
	p := c.p
	dec := func(u int64) string { return decimal.New(u, p.Decimals).String() }
	lo, hi := c.limits()
	book := &feed.Depth{Symbol: c.symbol, UpdateTime: at.UTC().Format(protocol.TimeLayout)}
	for i := range c.bidQ {
		if bp := c.bid - int64(i)*p.TickUnits; bp >= lo {
			book.Bids = append(book.Bids, [2]string{dec(bp), strconv.FormatInt(c.bidQ[i], 10)})
		}
		if ap := c.ask + int64(i)*p.TickUnits; ap <= hi {
			book.Asks = append(book.Asks, [2]string{dec(ap), strconv.FormatInt(c.askQ[i], 10)})
		}
	}
	book.Levels = max(len(book.Bids), len(book.Asks)) // what is sent, even at a limit
	pub := feed.DepthPublication(book)
	pub.Time = at
	s.out = append(s.out, pub)
}

// roundDiv divides rounding half away from zero.
func roundDiv(a, b int64) int64 {
	if (a < 0) != (b < 0) {
		return (a - b/2) / b
	}
	return (a + b/2) / b
}

var _ feed.Source = (*Sim)(nil)
