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

// CloseGrace is how long after its end a bar whose symbol has gone quiet is
// closed by the clock (Advance). A later tick of the symbol closes it at
// once; the grace leaves room for the closing-instant tick (stamped on the
// session's last second, below) and for ticks that reach one node a moment
// after another, so every node closes the same bars with the same ticks.
const CloseGrace = 3 * time.Second

// closingInstant is how long after a session ends a tick still belongs to
// it: exchanges send the closing snapshot (the closing call's trades)
// stamped at the end itself, 15:00:00 or 23:00:00. It goes in the
// session's last bar.
const closingInstant = time.Second

// BarStart returns the start of the intraday bar of length d that holds t:
// bars align to exchange time (China Standard Time).
func BarStart(t time.Time, d time.Duration) time.Time {
	const offset = 8 * time.Hour
	return t.Add(offset).Truncate(d).Add(-offset)
}

type bar struct {
	start, end             time.Time
	startS, endS           string // as sent
	open, high, low, close feed.Decimal
	volume, turnover       feed.Decimal // traded within the bar
	live                   bool
	partial                bool // begun before this builder saw the symbol
}

// series is one symbol's bars and where its cumulative volume stands.
type series struct {
	cal          *Calendar
	day          date // the trading day of the ticks last seen
	seen         bool
	joined       time.Time    // from when this builder has seen every tick
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

// Quote is what a tick gives the builder.
type Quote struct {
	At    time.Time    // exchange time
	Price feed.Decimal // last price
	// Volume and Turnover are the trading day's cumulative values, when
	// HasVolume (without, every tick is a trade of unknown size).
	Volume, Turnover feed.Decimal
	HasVolume        bool
	// Open, High and Low are the trading day's, when HasDay (CTP sends
	// them): the daily bar is then exact however late this node joined.
	Open, High, Low feed.Decimal
	HasDay          bool
}

// Tick folds one tick into the symbol's bars. A tick outside the product's
// sessions, or older than a bar already closed, builds nothing; one that
// traded nothing (cumulative volume unchanged) neither.
func (b *Builder) Tick(symbol string, q Quote) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.series[symbol]
	if s == nil {
		s = &series{cal: b.calendar(symbol), bars: make([]bar, len(Intervals)), closedUntil: make([]time.Time, len(Intervals))}
		b.series[symbol] = s
	}
	at := q.At
	day, inSession := s.cal.Locate(at)
	if !inSession {
		// The closing snapshot of a session: in its last bar.
		if day, inSession = s.cal.Locate(at.Add(-closingInstant)); !inSession {
			return
		}
		at = at.Truncate(time.Minute).Add(-time.Nanosecond)
	}
	if !s.seen {
		// The first tick seen: from the trading day's open (its first
		// minute), this builder has seen the whole day; joining later,
		// what came before is unknown, and the bars begun before are
		// partial.
		s.joined = at
		if open := s.cal.Open(day); at.Before(open.Add(time.Minute)) {
			s.joined = open
		}
	}
	var traded, turned feed.Decimal
	switch {
	case !q.HasVolume:
		// No volume to go by: a trade of unknown size.
	case !s.seen:
		// At the open its cumulative volume is all traded today; joining
		// later, counting starts here.
		if s.joined.Equal(s.cal.Open(day)) {
			traded, turned = q.Volume, q.Turnover
		}
	case day != s.day:
		traded, turned = q.Volume, q.Turnover // a new trading day: cumulative values start again
	case q.Volume.Cmp(s.volume) <= 0:
		if q.Volume.Cmp(s.volume) < 0 { // a collector restarted its count: start again from here
			s.volume, s.turn = q.Volume, q.Turnover
		}
		return // nothing traded: quotes only
	default:
		traded, turned = q.Volume.Sub(s.volume), q.Turnover.Sub(s.turn)
	}
	if q.HasVolume {
		s.volume, s.turn = q.Volume, q.Turnover
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
			*br = bar{start: start, end: end, open: q.Price, high: q.Price, low: q.Price, live: true,
				partial: start.Before(s.joined),
				startS:  start.UTC().Format(protocol.TimeLayout), endS: end.UTC().Format(protocol.TimeLayout)}
		}
		if q.Price.Cmp(br.high) > 0 {
			br.high = q.Price
		}
		if q.Price.Cmp(br.low) < 0 {
			br.low = q.Price
		}
		br.close = q.Price
		br.volume = add(br.volume, traded)
		br.turnover = add(br.turnover, turned)
		if i == daily && q.HasVolume && q.HasDay {
			// The day's own figures: the same on every node.
			br.open, br.high, br.low = q.Open, q.High, q.Low
			br.volume, br.turnover = q.Volume, q.Turnover
			br.partial = false
		}
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

// Advance closes every bar that ended CloseGrace or more before now (the
// market's clock), so a bar closes even when its symbol stops trading (the
// end of a session, a quiet contract).
func (b *Builder) Advance(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for symbol, s := range b.series {
		for i := range Intervals {
			if br := &s.bars[i]; br.live && !now.Before(br.end.Add(CloseGrace)) {
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
		StartTime: br.startS,
		EndTime:   br.endS,
		Start:     br.start,
		Partial:   br.partial,
		Closed:    closed,
	}
}
