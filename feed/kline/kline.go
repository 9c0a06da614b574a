// Package kline builds candlestick bars of every interval from ticks, by the
// exchange time each tick carries and within its product's trading sessions
// (sessions.go), so that every node that sees the same ticks builds the
// same bars. A tick updates the forming bar of each interval (an update
// that subscribers may conflate); a bar whose end has passed is sent once
// more with closed=true (never conflated) before the next one starts.
//
// Each symbol keeps its own clock: the latest exchange time of its
// in-session ticks, running on with the wall clock since, so a quiet
// symbol's bars close on time and one symbol's clock never closes
// another's bars.
package kline

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/bytedance/sonic"

	"github.com/marketcast/marketcast/protocol"
	"github.com/marketcast/marketcast/protocol/decimal"
)

// Interval is a bar length with its channel.
type Interval struct {
	Channel *protocol.Channel
	Length  time.Duration
}

// Intervals are the kline channels of the protocol, shortest first.
var Intervals = func() []Interval {
	out := make([]Interval, len(protocol.Klines))
	for i, c := range protocol.Klines {
		out[i] = Interval{Channel: c, Length: c.Interval}
	}
	return out
}()

// nIntervals is how many intervals a symbol has bars of.
const nIntervals = 6

// daily is the index of the 1d interval: its bar is the trading day.
const daily = nIntervals - 1

// CloseGrace is how long after its end, by its symbol's clock, a bar whose
// symbol has gone quiet is closed (Advance). A later tick of the symbol
// closes it at once; the grace leaves room for the closing-instant tick
// and for ticks that reach one node a moment after another, so every node
// closes the same bars with the same ticks.
const CloseGrace = 3 * time.Second

// BarStart returns the start of the intraday bar of length d that holds t:
// bars align to exchange time (China Standard Time).
func BarStart(t time.Time, d time.Duration) time.Time {
	const offset = 8 * time.Hour
	return t.Add(offset).Truncate(d).Add(-offset)
}

type bar struct {
	protocol.Bar
	live bool
}

// series is one symbol's bars and where its cumulative volume stands.
type series struct {
	symbol  string
	cal     *Calendar
	day     date   // the trading day of the ticks last seen
	dayName string // day, written
	seen    bool
	joined  time.Time // from when this builder has seen every tick
	// volume and turn are the day's highest cumulative values seen: what
	// the next tick's trades are counted from.
	volume, turn decimal.Decimal
	bars         [nIntervals]bar
	closedUntil  [nIntervals]time.Time // per interval: ticks before this are late
	// The symbol's clock: exch, its latest in-session exchange time, seen
	// at wall; it runs on with the wall clock.
	exch, wall time.Time
	dirty      uint8     // intervals whose forming bar changed since it was last emitted
	nextClose  time.Time // the earliest end+CloseGrace of a live bar
	emitted    time.Time // when its forming bars were last emitted (wall)
	listed     bool      // in the builder's dirty list
}

// now is the symbol's clock at wall time w.
func (s *series) now(w time.Time) time.Time { return s.exch.Add(w.Sub(s.wall)) }

// Emit receives a bar update: the symbol, the interval's index in Intervals
// and the bar, which is the builder's and valid only during the call.
type Emit func(symbol string, interval int, b *protocol.Bar)

// Builder builds the bars of the symbols it is given ticks of. It is not
// safe for concurrent use: each shard of a market owns one, so a symbol's
// bars are built and emitted in order.
type Builder struct {
	calendar func(symbol string) *Calendar
	emit     Emit
	series   map[string]*series
	dirty    []*series
	// Every is the shortest time between two emissions of a symbol's
	// forming bars (0: at every Flush); a closed bar goes out at once.
	Every time.Duration
}

// NewBuilder returns a builder that looks up each symbol's calendar and
// hands every bar update to emit.
func NewBuilder(calendar func(symbol string) *Calendar, emit Emit) *Builder {
	return &Builder{calendar: calendar, emit: emit, series: make(map[string]*series)}
}

// Tick folds one tick into the symbol's bars: its exchange time at (the
// time it arrived when it carries none), the wall time it arrived, and its
// values. A tick outside the product's sessions builds nothing and does not
// move the symbol's clock; one that traded nothing (its cumulative volume
// not above the day's highest) builds nothing either. Forming bars are
// emitted by Flush; closed bars at once.
func (b *Builder) Tick(symbol string, at, wall time.Time, q *protocol.Quote) {
	s := b.series[symbol]
	if s == nil {
		s = &series{symbol: symbol, cal: b.calendar(symbol)}
		b.series[symbol] = s
	}
	day, place, ok := s.cal.Place(at)
	if !ok {
		return
	}
	if s.exch.IsZero() || at.After(s.now(wall)) {
		s.exch, s.wall = at, wall
	}
	if s.seen && day.before(s.day) {
		return // a tick of a trading day already closed
	}
	if place.Before(s.closedUntil[0]) {
		// Late: its 1m bar has closed. It changes nothing; what it traded
		// is counted by the next tick, from the same baseline.
		return
	}
	if !s.seen {
		// The first tick seen: from the trading day's open (its first
		// minute, the auction included), this builder has seen the whole
		// day; joining later, what came before is unknown, and the bars
		// begun before are partial.
		// (Joining later, even this tick's own trades are unknown: they
		// are in a cumulative volume that counts from the open.)
		s.joined = place.Add(time.Nanosecond)
		if open := s.cal.Open(day); place.Before(open.Add(time.Minute)) {
			s.joined = open
		}
	}
	hasVolume := q.Has&protocol.HasVolume != 0
	var traded, turned decimal.Decimal
	switch {
	case !hasVolume:
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
		// Nothing traded since (quotes only), or a count below the day's
		// highest (a collector's bad value): cumulative values only go
		// up within a trading day.
		return
	default:
		traded = q.Volume.Sub(s.volume)
		if q.Turnover.Cmp(s.turn) > 0 {
			turned = q.Turnover.Sub(s.turn)
		}
	}
	if s.seen && day != s.day {
		b.closeDay(s) // what is left of the previous trading day
		s.volume, s.turn = decimal.Decimal{}, decimal.Decimal{}
	}
	if hasVolume {
		s.volume = decimal.Max(s.volume, q.Volume)
		s.turn = decimal.Max(s.turn, q.Turnover)
	}
	if !s.seen || day != s.day {
		s.dayName = day.String()
	}
	s.seen, s.day = true, day
	dayName := s.dayName
	for i, iv := range Intervals {
		if place.Before(s.closedUntil[i]) {
			continue // late: its bar is already closed
		}
		start := BarStart(place, iv.Length)
		end := start.Add(iv.Length)
		if i == daily {
			start, end = s.cal.Open(day), s.cal.Close(day)
		}
		br := &s.bars[i]
		if br.live && !br.Start.Equal(start) {
			b.close(s, i)
		}
		if !br.live {
			// A bar is partial when its trading began before this builder
			// joined: the CFFEX 09:00 hour bar starts trading at 09:30.
			trading := start
			if open := s.cal.Open(day); trading.Before(open) {
				trading = open
			}
			br.Bar = protocol.Bar{Start: start, End: end, Open: q.Price, High: q.Price, Low: q.Price,
				TradingDay: dayName, Partial: trading.Before(s.joined)}
			br.live = true
			if due := end.Add(CloseGrace); s.nextClose.IsZero() || due.Before(s.nextClose) {
				s.nextClose = due
			}
		}
		br.High = decimal.Max(br.High, q.Price)
		br.Low = decimal.Min(br.Low, q.Price)
		br.Close = q.Price
		br.Volume = br.Volume.Add(traded)
		br.Turnover = br.Turnover.Add(turned)
		if q.Has&protocol.HasOpenInterest != 0 {
			br.OpenInterest, br.HasOpenInterest = q.OpenInterest, true
		}
		if i == daily && hasVolume && q.Has&(protocol.HasOpen|protocol.HasHigh|protocol.HasLow) == protocol.HasOpen|protocol.HasHigh|protocol.HasLow {
			// The day's own figures: the same on every node.
			br.Open, br.High, br.Low = q.Open, q.High, q.Low
			br.Volume, br.Turnover = q.Volume, q.Turnover
			br.Partial = false
		}
		b.markDirty(s, i)
	}
}

func (b *Builder) markDirty(s *series, i int) {
	if !s.listed {
		s.listed = true
		b.dirty = append(b.dirty, s)
	}
	s.dirty |= 1 << i
}

// Flush emits, at wall time now, the forming bars ticks changed since they
// were last emitted, once each: a batch of ticks of one symbol costs one
// update per interval, and subscribers would only have been sent the last
// anyway (a forming bar is conflated). A symbol whose forming bars went
// out less than Every ago waits for a later Flush (Advance flushes too):
// it is sent its newest state then, never a backlog.
func (b *Builder) Flush(now time.Time) {
	keep := b.dirty[:0]
	for _, s := range b.dirty {
		if s.dirty == 0 {
			s.listed = false // its forming bars closed meanwhile
			continue
		}
		if b.Every > 0 && now.Sub(s.emitted) < b.Every {
			keep = append(keep, s)
			continue
		}
		for i := range Intervals {
			if s.dirty&(1<<i) != 0 && s.bars[i].live {
				b.emit(s.symbol, i, &s.bars[i].Bar)
			}
		}
		s.dirty, s.emitted, s.listed = 0, now, false
	}
	clear(b.dirty[len(keep):])
	b.dirty = keep
}

// closeDay closes every bar still open when a new trading day begins.
func (b *Builder) closeDay(s *series) {
	for i := range Intervals {
		if s.bars[i].live {
			b.close(s, i)
		}
	}
}

// Advance closes every bar that ended CloseGrace or more before its
// symbol's clock at wall time now, so a bar closes even when its symbol
// stops trading (the end of a session, a quiet contract). Each symbol's
// clock is its own: one stamped wrong closes nobody else's bars.
func (b *Builder) Advance(now time.Time) {
	defer b.Flush(now)
	for _, s := range b.series {
		if s.nextClose.IsZero() || s.now(now).Before(s.nextClose) {
			continue
		}
		sn := s.now(now)
		s.nextClose = time.Time{}
		for i := range Intervals {
			br := &s.bars[i]
			if !br.live {
				continue
			}
			if due := br.End.Add(CloseGrace); !sn.Before(due) {
				b.close(s, i)
			} else if s.nextClose.IsZero() || due.Before(s.nextClose) {
				s.nextClose = due
			}
		}
	}
}

// Forget drops a symbol's bars (its bars come from elsewhere now).
func (b *Builder) Forget(symbol string) {
	if s := b.series[symbol]; s != nil {
		s.dirty = 0 // a Flush drops it from the list
	}
	delete(b.series, symbol)
}

// Symbols is how many symbols the builder has bars of.
func (b *Builder) Symbols() int { return len(b.series) }

func (b *Builder) close(s *series, i int) {
	br := &s.bars[i]
	br.Closed = true
	b.emit(s.symbol, i, &br.Bar)
	br.Closed = false
	br.live = false
	s.closedUntil[i] = br.End
	s.dirty &^= 1 << i
}

// State is what a builder knows of a symbol, to carry its forming bars
// across a restart (a market's checkpoint). Export takes it, Encode writes
// it (apart, so a caller holding a lock for Export need not hold it while
// encoding), Restore takes it back.
type State struct {
	V      int         `json:"v"`
	Day    string      `json:"day"`
	Joined time.Time   `json:"joined"`
	Volume string      `json:"volume"`
	Turn   string      `json:"turnover"`
	Exch   time.Time   `json:"exch"`
	Wall   time.Time   `json:"wall"`
	Saved  time.Time   `json:"saved"`        // the wall time it was written at: it holds every tick before
	Bars   []barState  `json:"bars"`         // the live bars
	Closed []time.Time `json:"closed_until"` // per interval
}

type barState struct {
	I                      int `json:"i"`
	Start, End             time.Time
	Open, High, Low, Close string
	Volume, Turnover       string
	OpenInterest           string `json:",omitempty"`
	TradingDay             string
	Partial                bool `json:",omitempty"`
}

const stateVersion = 1

// Export takes the symbol's state at wall time now, and reports false when
// the builder has none.
func (b *Builder) Export(symbol string, now time.Time) (State, bool) {
	s := b.series[symbol]
	if s == nil || !s.seen {
		return State{}, false
	}
	st := State{V: stateVersion, Day: s.day.String(), Joined: s.joined, Volume: s.volume.String(), Turn: s.turn.String(),
		Exch: s.exch, Wall: s.wall, Saved: now, Closed: s.closedUntil[:]}
	for i := range s.bars {
		br := &s.bars[i]
		if !br.live {
			continue
		}
		bs := barState{I: i, Start: br.Start, End: br.End, Open: br.Open.String(), High: br.High.String(), Low: br.Low.String(),
			Close: br.Close.String(), Volume: br.Volume.String(), Turnover: br.Turnover.String(), TradingDay: br.TradingDay,
			Partial: br.Partial}
		if br.HasOpenInterest {
			bs.OpenInterest = br.OpenInterest.String()
		}
		st.Bars = append(st.Bars, bs)
	}
	st.Closed = slices.Clone(st.Closed)
	return st, true
}

// Encode writes the state for Restore (with the fast encoder: a node
// checkpoints every symbol that traded, every second).
func (st *State) Encode() ([]byte, error) { return sonic.Marshal(st) }

// Restore takes a symbol's state back (Export's) at wall time now, and
// emits its forming bars. A forming bar whose symbol traded while the state
// was not kept (between its last tick and now) is partial: ticks were
// missed.
func (b *Builder) Restore(symbol string, data []byte, now time.Time) error {
	fail := func(err error) error { return fmt.Errorf("kline: state of %s: %w", symbol, err) }
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return fail(err)
	}
	if st.V != stateVersion || len(st.Closed) != nIntervals {
		return fail(fmt.Errorf("version %d not known", st.V))
	}
	day, err := parseDate(st.Day)
	if err != nil {
		return fail(err)
	}
	s := &series{symbol: symbol, cal: b.calendar(symbol), day: day, dayName: day.String(), seen: true, joined: st.Joined,
		exch: st.Exch, wall: st.Wall}
	dec := func(v string) decimal.Decimal {
		d, e := decimal.ParseString(v)
		if e != nil && err == nil {
			err = e
		}
		return d
	}
	s.volume, s.turn = dec(st.Volume), dec(st.Turn)
	copy(s.closedUntil[:], st.Closed)
	// The stretch of the symbol's clock the state does not cover: from
	// when it was written to now.
	missedFrom := s.now(st.Saved)
	missed := s.cal.trades(missedFrom, s.now(now))
	for _, bs := range st.Bars {
		if bs.I < 0 || bs.I >= nIntervals {
			return fail(fmt.Errorf("bar of interval %d", bs.I))
		}
		br := &s.bars[bs.I]
		br.Bar = protocol.Bar{Start: bs.Start, End: bs.End, Open: dec(bs.Open), High: dec(bs.High), Low: dec(bs.Low),
			Close: dec(bs.Close), Volume: dec(bs.Volume), Turnover: dec(bs.Turnover), TradingDay: bs.TradingDay, Partial: bs.Partial}
		if bs.OpenInterest != "" {
			br.OpenInterest, br.HasOpenInterest = dec(bs.OpenInterest), true
		}
		br.live = true
		if missed && br.End.After(missedFrom) {
			br.Partial = true
		}
		if due := br.End.Add(CloseGrace); s.nextClose.IsZero() || due.Before(s.nextClose) {
			s.nextClose = due
		}
	}
	if err != nil {
		return fail(err)
	}
	if old := b.series[symbol]; old != nil {
		b.Forget(symbol)
	}
	b.series[symbol] = s
	for i := range s.bars {
		if s.bars[i].live {
			b.markDirty(s, i)
		}
	}
	b.Flush(now)
	return nil
}
