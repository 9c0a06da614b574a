// Package sim is the built-in market simulator: Chinese futures contracts
// with their real tick sizes, multipliers and limits, sending a snapshot
// every 500 ms per contract as CTP does. Prices walk on the tick grid with
// a daily volatility near each product's, inside the daily limits; the book
// evolves from step to step and its best level is the tick's; volume,
// turnover, open, high, low and average price accumulate over the trading
// day and start again with the next. It publishes ticks and books; bars are
// built from the ticks by the server's bar builder (feed/kline), as for any
// feed. See docs/FEED.md.
package sim

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/marketcast/marketcast/feed"
	"github.com/marketcast/marketcast/feed/kline"
	"github.com/marketcast/marketcast/protocol"
)

// Config tunes the simulator.
type Config struct {
	// Symbols to simulate. Empty means DefaultSymbols as of today.
	Symbols []string
	// Rate is snapshots per second per contract. Zero means 2 (CTP's 500 ms).
	Rate float64
	// Levels is the book depth. Zero means 5.
	Levels int
	// Exchange follows each product's trading sessions (weekends and
	// breaks off); otherwise the simulator trades around the clock, a
	// trading day per calendar day in Shanghai (the demo's hours).
	Exchange bool
	// Seed makes a run repeatable. Zero means random.
	Seed uint64
	// Backfill simulates this much of the past when Run starts, so charts
	// have bars at once: coarser snapshots (every 5 s or more, within a
	// budget of BackfillTicks), published with their past exchange times.
	Backfill time.Duration
}

// BackfillTicks bounds the ticks a backfill publishes at start, whatever the
// symbol count: a start-up cost of about a second.
const BackfillTicks = 20000

// Sim is a feed.Source.
type Sim struct {
	cfg       Config
	contracts []*contract
	rng       *rand.Rand
	now       func() time.Time
	scale     float64                 // snapshots one step stands for: 1, more in a backfill
	out       []*protocol.Publication // what the current step publishes
}

type contract struct {
	symbol string
	p      Product
	cal    *kline.Calendar

	day        string  // trading day of the values below
	preSettle  int64   // previous settlement: the limits and change are against it
	fair       float64 // the unobserved price the market trades around
	last       int64
	bid, ask   int64
	bidQ, askQ []int64 // book volumes, best first
	volume     int64   // cumulative for the trading day
	turnover   int64   // cumulative, price units × multiplier
	open       int64
	high, low  int64
	openInt    int64
	stepVol    float64 // volatility of one step, as a fraction of the price
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
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	if cfg.Backfill < 0 || cfg.Backfill > 7*24*time.Hour {
		return nil, fmt.Errorf("sim: backfill %v out of range [0, 168h]", cfg.Backfill)
	}
	s := &Sim{cfg: cfg, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), now: time.Now, scale: 1}
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
		c := &contract{symbol: sym, p: p, cal: s.Calendar(sym), openInt: 50000 + int64(s.rng.IntN(200000)),
			bidQ: make([]int64, cfg.Levels), askQ: make([]int64, cfg.Levels)}
		// Contracts of one product start near each other, not all equal.
		c.preSettle = p.BasePrice + p.TickUnits*int64(s.rng.IntN(41)-20)
		c.fair = float64(c.preSettle)
		c.stepVol = p.DailyVol / 100 / math.Sqrt(s.stepsPerDay(c.cal))
		for i := range c.bidQ {
			c.bidQ[i], c.askQ[i] = s.lots(p, 10), s.lots(p, 10)
		}
		s.contracts = append(s.contracts, c)
	}
	return s, nil
}

// Calendar is the trading calendar the simulator follows for symbol: the
// product's sessions with Exchange, around the clock otherwise. The bar
// builder must follow the same one.
func (s *Sim) Calendar(symbol string) *kline.Calendar {
	if s.cfg.Exchange {
		return kline.CalendarOf(symbol)
	}
	return kline.Always
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
	return float64(open) / 2 * 60 * s.cfg.Rate
}

// lots draws a trade or queue size around the product's mean.
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

// Run publishes a snapshot of every contract in session each step until
// ctx ends. Steps fall on whole multiples of the interval (00.000, 00.500…),
// as exchange snapshots do; each contract first sends its state before any
// trade of the day.
func (s *Sim) Run(ctx context.Context, sink feed.Sink) error {
	interval := s.Interval()
	now := s.now()
	s.backfill(ctx, sink, now)
	s.Open(ctx, sink, now)
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
			next = next.Add(late.Truncate(interval) + interval) // skip steps a stalled machine missed
		}
		timer.Reset(time.Until(next))
	}
}

// backfill simulates cfg.Backfill before now in coarse steps, ticks only
// (the book's state is sent by Open). Each step stands for several
// snapshots: the price moves and the trades are scaled to match.
func (s *Sim) backfill(ctx context.Context, sink feed.Sink, now time.Time) {
	if s.cfg.Backfill <= 0 || len(s.contracts) == 0 {
		return
	}
	step := max(5*time.Second, s.cfg.Backfill*time.Duration(len(s.contracts))/BackfillTicks).Truncate(time.Second)
	s.scale = float64(step) / float64(s.Interval())
	defer func() { s.scale = 1 }()
	for at := now.Add(-s.cfg.Backfill).Truncate(step); at.Before(now) && ctx.Err() == nil; at = at.Add(step) {
		s.stepAll(ctx, sink, at, false)
	}
}

// Interval is the time between two snapshots of a contract.
func (s *Sim) Interval() time.Duration { return time.Duration(float64(time.Second) / s.cfg.Rate) }

// Open sends every contract in session its state at now, before any trade:
// a day's first snapshot, whose volume is 0, so a bar builder counts the
// first trade that follows.
func (s *Sim) Open(ctx context.Context, sink feed.Sink, now time.Time) {
	for _, c := range s.contracts {
		if day, in := c.cal.Locate(now); in {
			if d := day.String(); d != c.day { // not already trading it (a backfill)
				s.newDay(c, d)
			}
			s.publish(c, now)
		}
	}
	s.send(ctx, sink)
}

// Step moves every contract in session by one snapshot at exchange time at
// and publishes it. Run calls it on a timer; tests call it with the times
// they need.
func (s *Sim) Step(ctx context.Context, sink feed.Sink, at time.Time) { s.stepAll(ctx, sink, at, true) }

// stepAll moves every contract in session by one step at at and publishes
// its tick, and its book when books is set (a backfill's books would be
// superseded before anyone saw them).
func (s *Sim) stepAll(ctx context.Context, sink feed.Sink, at time.Time, books bool) {
	for _, c := range s.contracts {
		day, in := c.cal.Locate(at)
		if !in {
			continue
		}
		if d := day.String(); d != c.day {
			s.newDay(c, d)
		}
		s.step(c)
		s.publishTick(c, at)
		if books {
			s.publishBook(c, at)
		}
	}
	s.send(ctx, sink)
}

// newDay starts a trading day: the last price becomes the settlement the
// limits and change are against, and the day's totals start again.
func (s *Sim) newDay(c *contract, day string) {
	if c.day != "" {
		c.preSettle = c.last
	}
	c.day = day
	c.volume, c.turnover = 0, 0
	c.last = s.grid(c, c.fair)
	c.open, c.high, c.low = 0, 0, 0
	c.bid, c.ask = c.last-c.p.TickUnits, c.last
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

// step moves one contract by one snapshot: the fair price walks, a trade
// may happen at the best bid or ask, the book's queues change.
func (s *Sim) step(c *contract) {
	p := c.p
	// A random walk in log price, gently pulled back towards the
	// settlement so it wanders like a market and stays within the limits.
	pull := 0.002 * math.Log(float64(c.preSettle)/c.fair)
	vol := c.stepVol * math.Sqrt(s.scale)
	c.fair *= math.Exp(vol*s.rng.NormFloat64() + pull*vol)
	target := s.grid(c, c.fair)
	prevBid, prevAsk := c.bid, c.ask
	if target >= c.ask {
		c.bid, c.ask = target-p.TickUnits, target
	} else if target <= c.bid {
		c.bid, c.ask = target, target+p.TickUnits
	}
	lo, hi := c.limits()
	c.bid, c.ask = min(max(c.bid, lo), hi-p.TickUnits), min(max(c.ask, lo+p.TickUnits), hi)
	s.shiftBook(c, prevBid, prevAsk)

	// Trades: most snapshots carry some, at the side the price moved to.
	if s.rng.Float64() < 0.7 {
		qty := s.lots(p, s.scale)
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
		c.openInt = max(0, c.openInt+int64(s.rng.IntN(2*int(qty)+1))-qty)
		if hitAsk {
			c.askQ[0] = max(1, c.askQ[0]-qty)
		} else {
			c.bidQ[0] = max(1, c.bidQ[0]-qty)
		}
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

// publish queues a contract's tick and book at exchange time at.
func (s *Sim) publish(c *contract, at time.Time) {
	s.publishTick(c, at)
	s.publishBook(c, at)
}

// publishTick queues a contract's tick at exchange time at.
func (s *Sim) publishTick(c *contract, at time.Time) {
	p := c.p
	dec := func(u int64) string { return feed.Decimal{Units: u, Scale: p.Decimals}.String() }
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
		ChangePercent: feed.Decimal{Units: roundDiv(change*10000, c.preSettle), Scale: 2}.String(),
		UpdateTime:    at.UTC().Format(protocol.TimeLayout),
		PreSettlement: dec(c.preSettle),
		UpperLimit:    dec(hi),
		LowerLimit:    dec(lo),
	}
	if c.volume > 0 {
		tick.Open, tick.High, tick.Low = dec(c.open), dec(c.high), dec(c.low)
		avg := float64(c.turnover) / float64(c.volume*p.Multiplier)
		tick.AveragePrice = feed.Decimal{Units: int64(math.Round(avg * 100)), Scale: p.Decimals + 2}.String()
	}
	pub := feed.TickPublication(tick)
	pub.Time = at
	s.out = append(s.out, pub)
}

// publishBook queues a contract's book at exchange time at.
func (s *Sim) publishBook(c *contract, at time.Time) {
	p := c.p
	dec := func(u int64) string { return feed.Decimal{Units: u, Scale: p.Decimals}.String() }
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
	s.out = append(s.out, feed.DepthPublication(book))
}

// roundDiv divides rounding half away from zero.
func roundDiv(a, b int64) int64 {
	if (a < 0) != (b < 0) {
		return (a - b/2) / b
	}
	return (a + b/2) / b
}

var _ feed.Source = (*Sim)(nil)
