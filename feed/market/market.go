// Package market takes market data from every source of a node (the
// simulator, NATS ingest, the publish API) into its hub: a new symbol joins
// the catalogue on its first message, and bars of every interval are built
// from the ticks by one builder (feed/kline), unless the feed sends a
// symbol's bars itself.
package market

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/bytedance/sonic"

	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/feed"
	"github.com/marketcast/marketcast/feed/kline"
	"github.com/marketcast/marketcast/protocol"
)

// Catalog is the market universe: the symbols a subscription may name. It
// is bounded, so a publisher cannot make the server remember symbols
// without end, and its sorted list is kept ready, so listing it costs
// nothing per request.
type Catalog struct {
	max int

	mu     sync.RWMutex
	set    map[string]struct{}
	sorted []string // rebuilt lazily after an Add
	dirty  bool
}

// NewCatalog returns an empty catalogue of at most max symbols.
func NewCatalog(max int) *Catalog {
	return &Catalog{max: max, set: make(map[string]struct{}), sorted: []string{}}
}

// Add puts symbol in the universe. It fails, naming the limit, once the
// catalogue is full; a symbol already there always succeeds.
func (c *Catalog) Add(symbol string) error {
	c.mu.RLock()
	_, ok := c.set[symbol]
	c.mu.RUnlock()
	if ok {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.set[symbol]; ok {
		return nil
	}
	if len(c.set) >= c.max {
		return fmt.Errorf("%w: the symbol catalogue holds its maximum of %d symbols (limits.max_symbols); %q not added",
			protocol.ErrRejected, c.max, symbol)
	}
	c.set[symbol] = struct{}{}
	c.dirty = true
	return nil
}

// Has reports whether symbol is in the universe.
func (c *Catalog) Has(symbol string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	_, ok := c.set[symbol]
	return ok
}

// Len is the number of symbols.
func (c *Catalog) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.set)
}

// Sorted lists the universe in order. The slice is shared: do not modify it.
func (c *Catalog) Sorted() []string {
	c.mu.RLock()
	if !c.dirty {
		defer c.mu.RUnlock()
		return c.sorted
	}
	c.mu.RUnlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dirty {
		out := make([]string, 0, len(c.set))
		for s := range c.set {
			out = append(out, s)
		}
		slices.Sort(out)
		c.sorted, c.dirty = out, false
	}
	return c.sorted
}

// BarStore keeps closed bars where every node of a cluster finds them, so
// one that starts late can still answer a subscription's history.
type BarStore interface {
	// Save stores a closed bar (the nodes building the same bar store it
	// once).
	Save(p *protocol.Publication)
	// Load returns up to n of a kline topic's most recent closed bars,
	// oldest first.
	Load(ctx context.Context, ch *protocol.Channel, symbol string, n int) ([]*protocol.Publication, error)
}

// Config tunes a Market.
type Config struct {
	// MaxSymbols bounds the catalogue.
	MaxSymbols int
	// Calendar gives each symbol's trading sessions for its bars; nil
	// builds no bars.
	Calendar func(symbol string) *kline.Calendar
	// BarHistory is how many closed bars a subscription may ask for.
	BarHistory int
	// Store, when set, keeps closed bars for other nodes.
	Store BarStore
}

// Market takes market publications into the hub. It is a feed.Sink.
type Market struct {
	hub     *engine.Hub
	catalog *Catalog
	cfg     Config
	bars    *kline.Builder

	external sync.Map // symbol → true: its bars come from the feed
	warmed   sync.Map // kline topic → true: its history is loaded from the store
	clock    clock
}

// clock is the market's time, by which bars close when their symbols go
// quiet: the latest exchange time a tick carried, running on with the wall
// clock since it arrived. Live, it is the exchange's clock (a little behind
// the wall); in a replay of a recorded day it is that day's, so bars close
// as they did then, not at once because their end is long past.
type clock struct {
	mu         sync.Mutex
	exch, wall time.Time // the anchor: an exchange time and when it was seen
}

// now is the market time at wall time w.
func (c *clock) now(w time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exch.IsZero() {
		return w
	}
	return c.exch.Add(w.Sub(c.wall))
}

// saw moves the clock to exchange time t seen at wall time w, never back.
func (c *clock) saw(t, w time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exch.IsZero() || t.After(c.exch.Add(w.Sub(c.wall))) {
		c.exch, c.wall = t, w
	}
}

// New returns a market publishing to hub.
func New(hub *engine.Hub, cfg Config) *Market {
	m := &Market{hub: hub, catalog: NewCatalog(cfg.MaxSymbols), cfg: cfg}
	if cfg.Calendar != nil {
		m.bars = kline.NewBuilder(cfg.Calendar, m.emitBar)
	}
	return m
}

// Publish implements feed.Sink: the publication goes to the hub, and a tick
// also to the bar builder.
func (m *Market) Publish(ctx context.Context, p *protocol.Publication) (uint64, error) {
	return m.publish(ctx, p, nil)
}

// PublishBatch implements feed.BatchSink: the publications go to the hub as
// one batch (each terminal gets them in one write).
func (m *Market) PublishBatch(ctx context.Context, ps []*protocol.Publication) (int, error) {
	b := m.hub.NewBatch()
	defer b.End()
	var (
		n     int
		first error
	)
	for _, p := range ps {
		if _, err := m.publish(ctx, p, b); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		n++
	}
	return n, first
}

func (m *Market) publish(ctx context.Context, p *protocol.Publication, b *engine.Batch) (uint64, error) {
	if err := m.catalog.Add(p.ID); err != nil {
		return 0, err
	}
	var (
		ev  *engine.Event
		err error
	)
	if b != nil {
		ev, err = b.Publish(ctx, engine.FromPublication(p))
	} else {
		ev, err = m.hub.Publish(ctx, engine.FromPublication(p))
	}
	if err != nil {
		return 0, err
	}
	switch {
	case p.Channel == protocol.Tick:
		m.buildBars(p, ev.Time())
	case p.Channel.Kline():
		if _, known := m.external.LoadOrStore(p.ID, true); !known && m.bars != nil {
			m.bars.Forget(p.ID) // the feed builds this symbol's bars: ours would compete
		}
		if p.Final && m.cfg.Store != nil {
			m.cfg.Store.Save(p)
		}
	}
	return ev.Sequence(), nil
}

// buildBars feeds a tick to the builder, by the exchange time it carries
// (else the time it was accepted here, which other nodes do not share).
func (m *Market) buildBars(p *protocol.Publication, accepted time.Time) {
	if m.bars == nil {
		return
	}
	if _, ext := m.external.Load(p.ID); ext {
		return
	}
	var t struct {
		LastPrice string `json:"last_price"`
		Volume    string `json:"volume"`
		Turnover  string `json:"turnover"`
		Open      string `json:"open"`
		High      string `json:"high"`
		Low       string `json:"low"`
	}
	if sonic.Unmarshal(p.Data, &t) != nil { // every tick: the fast decoder
		return
	}
	q := kline.Quote{At: p.Time}
	var err error
	if q.Price, err = feed.ParseDecimal(t.LastPrice); err != nil {
		return
	}
	if q.Volume, err = feed.ParseDecimal(t.Volume); err == nil {
		q.HasVolume = true
		q.Turnover, _ = feed.ParseDecimal(t.Turnover) // none: zero
	}
	var errO, errH, errL error
	q.Open, errO = feed.ParseDecimal(t.Open)
	q.High, errH = feed.ParseDecimal(t.High)
	q.Low, errL = feed.ParseDecimal(t.Low)
	q.HasDay = errO == nil && errH == nil && errL == nil
	if q.At.IsZero() {
		q.At = accepted
	}
	m.clock.saw(q.At, accepted)
	m.bars.Tick(p.ID, q)
}

// emitBar publishes a bar the builder made (with the builder locked, so a
// symbol's bars go out in order).
func (m *Market) emitBar(b *feed.Bar) {
	p := feed.BarPublication(b)
	if _, err := m.hub.Publish(context.Background(), engine.FromPublication(p)); err != nil {
		return
	}
	if !b.Closed || m.cfg.Store == nil {
		return
	}
	if b.Partial {
		// The store has (or is about to have) the whole bar from a node
		// that saw all of it: the next history request loads it over
		// this one.
		m.warmed.Delete(protocol.TopicKey(p.Channel, p.ID))
		return
	}
	m.cfg.Store.Save(p)
}

// Run closes bars on time until ctx ends, also when their symbols stop
// trading.
func (m *Market) Run(ctx context.Context) {
	if m.bars == nil {
		return
	}
	engine.Every(ctx, 100*time.Millisecond, func(now time.Time) { m.bars.Advance(m.clock.now(now)) })
}

// WarmBars loads a kline topic's closed bars from the store before a
// subscription asks for its history, once per topic: a node that started
// late has only the bars it built since.
func (m *Market) WarmBars(ctx context.Context, ch *protocol.Channel, symbol string) error {
	if m.cfg.Store == nil || !ch.Kline() {
		return nil
	}
	topic := protocol.TopicKey(ch, symbol)
	if _, done := m.warmed.Load(topic); done {
		return nil
	}
	pubs, err := m.cfg.Store.Load(ctx, ch, symbol, m.cfg.BarHistory)
	if err != nil {
		return err
	}
	older := make([]*engine.Event, 0, len(pubs))
	now := time.Now()
	for _, p := range pubs {
		msg := engine.FromPublication(p)
		older = append(older, engine.NewEvent(&msg, 0, "", now)) // numbered nowhere: history, not a stream
	}
	if err := m.hub.MergeFinals(topic, older); err != nil {
		return err
	}
	m.warmed.Store(topic, true)
	return nil
}

// AddSymbols puts a source's known symbols in the catalogue before it runs.
func (m *Market) AddSymbols(symbols []string) error {
	for _, s := range symbols {
		if err := m.catalog.Add(s); err != nil {
			return err
		}
	}
	return nil
}

// HasSymbol reports whether the universe knows symbol.
func (m *Market) HasSymbol(symbol string) bool { return m.catalog.Has(symbol) }

// Symbols lists the universe, sorted (shared: do not modify).
func (m *Market) Symbols() []string { return m.catalog.Sorted() }

// SymbolCount is the size of the universe.
func (m *Market) SymbolCount() int { return m.catalog.Len() }

var _ feed.BatchSink = (*Market)(nil)
