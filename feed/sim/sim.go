// Package sim is the built-in market simulator: Chinese futures contracts
// with their real tick sizes and multipliers, prices that walk on the tick
// grid inside the daily limits, cumulative volume, turnover and open
// interest, a five-level book, and klines built from the ticks. It trades
// around the clock (a 24 h demo session); see docs/FEED.md.
package sim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/marketcast/marketcast/feed"
	"github.com/marketcast/marketcast/feed/kline"
)

// Config tunes the simulator.
type Config struct {
	// Symbols to simulate. Empty means DefaultSymbols.
	Symbols []string
	// Rate is ticks per second per symbol. Zero means 2 (the CTP rate).
	Rate float64
	// Levels is the book depth. Zero means 5.
	Levels int
	// Seed makes a run repeatable. Zero means random.
	Seed uint64
}

// Sim is a feed.Source.
type Sim struct {
	cfg       Config
	contracts []*contract
	rng       *rand.Rand
}

type contract struct {
	symbol       string
	p            Product
	preSettle    int64
	last         int64
	bid, ask     int64
	volume       int64 // cumulative
	turnover     int64 // cumulative, price units
	openInterest int64
	bars         *kline.Aggregator
}

// New validates cfg and prepares the contracts.
func New(cfg Config) (*Sim, error) {
	if len(cfg.Symbols) == 0 {
		cfg.Symbols = DefaultSymbols
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
	s := &Sim{cfg: cfg, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
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
		// Contracts of one product start near each other, not all equal.
		pre := p.BasePrice + p.TickUnits*int64(s.rng.IntN(41)-20)
		c := &contract{symbol: sym, p: p, preSettle: pre, last: pre,
			openInterest: 50000 + int64(s.rng.IntN(200000)), bars: kline.New(sym)}
		c.bid, c.ask = pre-p.TickUnits, pre
		s.contracts = append(s.contracts, c)
	}
	return s, nil
}

// Symbols lists the simulated symbols.
func (s *Sim) Symbols() []string {
	out := make([]string, len(s.contracts))
	for i, c := range s.contracts {
		out[i] = c.symbol
	}
	return out
}

// Run publishes ticks, books and bars until ctx ends.
func (s *Sim) Run(ctx context.Context, pub feed.Sink) error {
	step := min(50*time.Millisecond, time.Duration(float64(time.Second)/s.cfg.Rate))
	chance := s.cfg.Rate * step.Seconds() // probability a symbol trades in one step
	emit := func(b *feed.Bar) { _, _ = pub.Publish(ctx, feed.BarPublication(b)) }

	// Every symbol starts with a full state so snapshots exist at once.
	now := time.Now()
	for _, c := range s.contracts {
		s.trade(ctx, c, now, pub, emit)
	}
	ticker := time.NewTicker(step)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now = <-ticker.C:
		}
		for _, c := range s.contracts {
			if s.rng.Float64() < chance {
				s.trade(ctx, c, now, pub, emit)
			}
			c.bars.Advance(now, emit)
		}
	}
}

// trade moves one contract: a price step on the grid within the limits, a
// trade volume, a new book; it publishes the tick, the book and the bars.
func (s *Sim) trade(ctx context.Context, c *contract, now time.Time, pub feed.Sink, emit func(*feed.Bar)) {
	p := c.p
	// Prices are multiples of the tick: the settlement is, and so are the
	// limits once rounded towards it.
	limit := c.preSettle * p.LimitPct / 100 / p.TickUnits * p.TickUnits
	lo, hi := c.preSettle-limit, c.preSettle+limit
	// A mean-reverting random walk of -2..+2 ticks keeps prices lively but
	// inside the limits.
	move := int64(s.rng.IntN(5) - 2)
	if c.last > c.preSettle+limit/2 && move > 0 || c.last < c.preSettle-limit/2 && move < 0 {
		move = -move
	}
	c.last = min(max(c.last+move*p.TickUnits, lo), hi)
	if s.rng.IntN(2) == 0 {
		c.bid, c.ask = c.last-p.TickUnits, c.last
	} else {
		c.bid, c.ask = c.last, c.last+p.TickUnits
	}
	qty := int64(1 + s.rng.IntN(40))
	c.volume += qty
	c.turnover += c.last * qty * p.Multiplier
	c.openInterest = max(0, c.openInterest+int64(s.rng.IntN(2*int(qty)+1))-qty)

	dec := func(u int64) feed.Decimal { return feed.Decimal{Units: u, Scale: p.Decimals} }
	change := c.last - c.preSettle
	pct := feed.Decimal{Units: roundDiv(change*10000, c.preSettle), Scale: 2}
	tick := &feed.Tick{
		Symbol:        c.symbol,
		LastPrice:     dec(c.last).String(),
		BidPrice:      dec(c.bid).String(),
		AskPrice:      dec(c.ask).String(),
		BidVolume:     fmt.Sprint(1 + s.rng.IntN(200)),
		AskVolume:     fmt.Sprint(1 + s.rng.IntN(200)),
		Volume:        fmt.Sprint(c.volume),
		Turnover:      dec(c.turnover).String(),
		OpenInterest:  fmt.Sprint(c.openInterest),
		Change:        dec(change).String(),
		ChangePercent: pct.String(),
	}
	_, _ = pub.Publish(ctx, feed.TickPublication(tick))

	book := &feed.Depth{Symbol: c.symbol, Levels: s.cfg.Levels}
	for i := 0; i < s.cfg.Levels; i++ {
		bp, ap := c.bid-int64(i)*p.TickUnits, c.ask+int64(i)*p.TickUnits
		if bp >= lo {
			book.Bids = append(book.Bids, [2]string{dec(bp).String(), fmt.Sprint(1 + s.rng.IntN(300))})
		}
		if ap <= hi {
			book.Asks = append(book.Asks, [2]string{dec(ap).String(), fmt.Sprint(1 + s.rng.IntN(300))})
		}
	}
	_, _ = pub.Publish(ctx, feed.DepthPublication(book))

	c.bars.Tick(now, dec(c.last), c.volume, dec(c.turnover), emit)
}

// roundDiv divides rounding half away from zero.
func roundDiv(a, b int64) int64 {
	if (a < 0) != (b < 0) {
		return (a - b/2) / b
	}
	return (a + b/2) / b
}

var _ feed.Source = (*Sim)(nil)
