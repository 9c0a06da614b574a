// Package kline builds candlestick bars of every interval from ticks, by the
// exchange time each tick carries and within its product's trading sessions
// (sessions.go), so that every node that sees the same ticks builds the
// same bars. A tick updates the forming bar of each interval (an update
// that subscribers may conflate); a bar whose end has passed is sent once
// more with closed=true (never conflated) before the next one starts.
package kline

import (
	"sync"
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

// daily is the index of the 1d interval: its bar is the trading day.
var daily = len(Intervals) - 1

// BarStart returns the start of the intraday bar of length d that holds t:
// bars align to exchange time (China Standard Time).
func BarStart(t time.Time, d time.Duration) time.Time {
	const offset = 8 * time.Hour
	return t.Add(offset).Truncate(d).Add(-offset)
}

type bar struct {
	start, end             time.Time
	open, high, low, close feed.Decimal
	volume, turnover       feed.Decimal // traded within the bar
	live                   bool
}

// series is one symbol's bars and where its cumulative volume stands.
type series struct {
	cal          *Calendar
	day          date // the trading day of the ticks last seen
	seen         bool
	volume, turn feed.Decimal // the last tick's cumulative values
	bars         []bar        // one per Intervals entry
	closedUntil  []time.Time  // per interval: ticks before this are late
}

// Builder builds the bars of every symbol it is given ticks of. It is safe
// for concurrent use; emit runs with the builder locked, so a symbol's bars
// are emitted in order.
type Builder struct {
	calendar func(symbol string) *Calendar
	emit     func(*feed.Bar)

	mu     sync.Mutex
	series map[string]*series
}

// NewBuilder returns a builder that looks up each symbol's calendar and
// hands every bar update to emit.
func NewBuilder(calendar func(symbol string) *Calendar, emit func(*feed.Bar)) *Builder {
	return &Builder{calendar: calendar, emit: emit, series: make(map[string]*series)}
}

// Tick folds one tick into the symbol's bars. at is its exchange time,
// price its last price, volume and turnover the trading day's cumulative
// values (hasVolume false when the tick carries none: then every tick is a
// trade of unknown size). A tick outside the product's sessions, or older
// than a bar already closed, builds nothing; one that traded nothing
// (cumulative volume unchanged) neither.
func (b *Builder) Tick(symbol string, at time.Time, price, volume, turnover feed.Decimal, hasVolume bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.series[symbol]
	if s == nil {
		s = &series{cal: b.calendar(symbol), bars: make([]bar, len(Intervals)), closedUntil: make([]time.Time, len(Intervals))}
		b.series[symbol] = s
	}
	day, inSession := s.cal.Locate(at)
	if !inSession {
		return
	}
	var traded, turned feed.Decimal
	switch {
	case !hasVolume:
		// No volume to go by: a trade of unknown size.
	case !s.seen:
		// The first tick seen: at the trading day's open its cumulative
		// volume is all traded today; joining later, what came before it
		// is unknown, so counting starts here.
		if at.Before(s.cal.Open(day).Add(time.Minute)) {
			traded, turned = volume, turnover
		}
	case day != s.day:
		traded, turned = volume, turnover // a new trading day: cumulative values start again
	case volume.Cmp(s.volume) <= 0:
		if volume.Cmp(s.volume) < 0 { // a collector restarted its count: start again from here
			s.volume, s.turn = volume, turnover
		}
		return // nothing traded: quotes only
	default:
		traded, turned = volume.Sub(s.volume), turnover.Sub(s.turn)
	}
	if hasVolume {
		s.volume, s.turn = volume, turnover
	}
	if s.seen && day != s.day {
		b.closeDay(symbol, s) // what is left of the previous trading day
	}
	s.seen, s.day = true, day
	for i, iv := range Intervals {
		if at.Before(s.closedUntil[i]) {
			continue // late: its bar is already closed
		}
		start, end := BarStart(at, iv.Length), BarStart(at, iv.Length).Add(iv.Length)
		if i == daily {
			start, end = s.cal.Open(day), s.cal.Close(day)
		}
		br := &s.bars[i]
		if br.live && !br.start.Equal(start) {
			b.close(symbol, s, i)
		}
		if !br.live {
			*br = bar{start: start, end: end, open: price, high: price, low: price, live: true}
		}
		if price.Cmp(br.high) > 0 {
			br.high = price
		}
		if price.Cmp(br.low) < 0 {
			br.low = price
		}
		br.close = price
		br.volume = add(br.volume, traded)
		br.turnover = add(br.turnover, turned)
		b.emit(render(symbol, i, br, false))
	}
}

func add(a, b feed.Decimal) feed.Decimal { return a.Sub(feed.Decimal{Units: -b.Units, Scale: b.Scale}) }

// closeDay closes every bar still open when a new trading day begins.
func (b *Builder) closeDay(symbol string, s *series) {
	for i := range Intervals {
		if s.bars[i].live {
			b.close(symbol, s, i)
		}
	}
}

// Advance closes every bar that ended at or before now, so a bar closes on
// time even when its symbol stops trading (the end of a session, a quiet
// contract).
func (b *Builder) Advance(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for symbol, s := range b.series {
		for i := range Intervals {
			if br := &s.bars[i]; br.live && !now.Before(br.end) {
				b.close(symbol, s, i)
			}
		}
	}
}

// Forget drops a symbol's bars (its bars come from elsewhere now).
func (b *Builder) Forget(symbol string) {
	b.mu.Lock()
	delete(b.series, symbol)
	b.mu.Unlock()
}

func (b *Builder) close(symbol string, s *series, i int) {
	br := &s.bars[i]
	b.emit(render(symbol, i, br, true))
	br.live = false
	s.closedUntil[i] = br.end
}

func render(symbol string, i int, br *bar, closed bool) *feed.Bar {
	return &feed.Bar{
		Symbol:    symbol,
		Channel:   Intervals[i].Channel,
		Open:      br.open.String(),
		High:      br.high.String(),
		Low:       br.low.String(),
		Close:     br.close.String(),
		Volume:    br.volume.String(),
		Turnover:  br.turnover.String(),
		StartTime: br.start.UTC().Format(protocol.TimeLayout),
		EndTime:   br.end.UTC().Format(protocol.TimeLayout),
		Closed:    closed,
	}
}
