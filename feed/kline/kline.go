// Package kline builds candlestick bars for every interval from a stream of
// ticks. A tick updates the forming bar of each interval (an update that
// subscribers may conflate); crossing a bar's end emits that bar once more
// with closed=true (never conflated) before the next bar starts.
package kline

import (
	"time"

	"github.com/marketcast/marketcast/feed"
	"github.com/marketcast/marketcast/protocol"
)

// Interval is a bar length with its channel name.
type Interval struct {
	Channel string
	Length  time.Duration
}

// Intervals are the kline channels of the protocol, shortest first.
var Intervals = func() []Interval {
	out := make([]Interval, len(protocol.Klines))
	for i, c := range protocol.Klines {
		out[i] = Interval{Channel: c.Push, Length: c.Interval}
	}
	return out
}()

// Bars align to China Standard Time (UTC+8), where the exchanges are, so a
// daily bar is a calendar day in Shanghai.
const exchangeOffset = 8 * time.Hour

// BarStart returns the start of the bar of length d that contains t.
func BarStart(t time.Time, d time.Duration) time.Time {
	return t.Add(exchangeOffset).Truncate(d).Add(-exchangeOffset)
}

type bar struct {
	start, end             time.Time
	open, high, low, close feed.Decimal
	volume                 int64 // within the bar
	turnover               feed.Decimal
	baseVolume             int64 // cumulative volume when the bar started
	baseTurnover           int64
	live                   bool
}

// Aggregator keeps the forming bars of one symbol.
type Aggregator struct {
	symbol  string
	bars    []bar // one per Intervals entry
	lastVol int64 // cumulative volume of the previous tick
	lastTO  int64
	started bool
}

// New returns an aggregator for symbol.
func New(symbol string) *Aggregator {
	return &Aggregator{symbol: symbol, bars: make([]bar, len(Intervals))}
}

// Tick folds a trade into every interval. price is the last price, volume
// and turnover are the day's cumulative values (as a tick carries them).
// emit receives, per interval, the closed bar if the tick crossed its end,
// then the forming bar.
func (a *Aggregator) Tick(t time.Time, price feed.Decimal, volume int64, turnover feed.Decimal, emit func(*feed.Bar)) {
	if !a.started {
		a.lastVol, a.lastTO, a.started = volume, turnover.Units, true
	}
	for i, iv := range Intervals {
		b := &a.bars[i]
		if b.live && !t.Before(b.end) {
			a.close(i, emit)
		}
		if !b.live {
			start := BarStart(t, iv.Length)
			*b = bar{start: start, end: start.Add(iv.Length), open: price, high: price, low: price,
				baseVolume: a.lastVol, baseTurnover: a.lastTO, live: true}
		}
		if price.Units > b.high.Units {
			b.high = price
		}
		if price.Units < b.low.Units {
			b.low = price
		}
		b.close = price
		b.volume = volume - b.baseVolume
		b.turnover = feed.Decimal{Units: turnover.Units - b.baseTurnover, Scale: turnover.Scale}
		emit(a.render(i, false))
	}
	a.lastVol, a.lastTO = volume, turnover.Units
}

// Advance closes every bar that ended at or before now, so a bar closes on
// time even when its symbol stops trading.
func (a *Aggregator) Advance(now time.Time, emit func(*feed.Bar)) {
	for i := range Intervals {
		if b := &a.bars[i]; b.live && !now.Before(b.end) {
			a.close(i, emit)
		}
	}
}

func (a *Aggregator) close(i int, emit func(*feed.Bar)) {
	emit(a.render(i, true))
	a.bars[i].live = false
}

func (a *Aggregator) render(i int, closed bool) *feed.Bar {
	b := &a.bars[i]
	return &feed.Bar{
		Symbol:    a.symbol,
		Channel:   Intervals[i].Channel,
		Open:      b.open.String(),
		High:      b.high.String(),
		Low:       b.low.String(),
		Close:     b.close.String(),
		Volume:    feed.Decimal{Units: b.volume}.String(),
		Turnover:  b.turnover.String(),
		StartTime: b.start.UTC().Format(protocol.TimeLayout),
		EndTime:   b.end.UTC().Format(protocol.TimeLayout),
		Closed:    closed,
	}
}
