package market

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/engine/metric"
	"github.com/marketcast/marketcast/feed"
	"github.com/marketcast/marketcast/feed/kline"
	"github.com/marketcast/marketcast/protocol"
	"github.com/marketcast/marketcast/protocol/decimal"
)

// BarStore keeps closed bars where every node of a cluster finds them, so
// one that starts late can still answer a subscription's history.
type BarStore interface {
	// Save stores a closed bar (the nodes building the same bar store it
	// once; a partial one does not hide the complete one).
	Save(p *protocol.Publication)
	// Load returns up to n of a kline topic's most recent closed bars,
	// oldest first, the complete one of each place when there is one.
	Load(ctx context.Context, ch *protocol.Channel, symbol string, n int) ([]*protocol.Publication, error)
}

// Checkpoints keep each symbol's forming bars where the node finds them
// after a restart.
type Checkpoints interface {
	// Save keeps a symbol's state, replacing the one before.
	Save(symbol string, state []byte)
	// Load calls f with every symbol's last state.
	Load(ctx context.Context, f func(symbol string, state []byte)) error
	// Sync waits until every state saved so far is kept.
	Sync(ctx context.Context) error
}

// Config tunes a Market.
type Config struct {
	// MaxSymbols bounds the catalogue, and with it what the market keeps
	// per symbol.
	MaxSymbols int
	// Sessions gives each symbol's trading sessions for its bars
	// (kline.AlwaysOpen, a kline.Table's Lookup); nil builds no bars.
	Sessions kline.Sessions
	// BarHistory is how many closed bars a subscription may ask for.
	BarHistory int
	// Store, when set, keeps closed bars for other nodes.
	Store BarStore
	// Checkpoints, when set, keeps forming bars across a restart, written
	// every CheckpointEvery (and when Run ends).
	Checkpoints     Checkpoints
	CheckpointEvery time.Duration
	// Shards is how many shards symbols are spread over; 0: GOMAXPROCS.
	Shards int
	// BarUpdateEvery is the shortest time between two updates of a
	// symbol's forming bars (feed.bar_update_interval; 0: every tick).
	// Each update is the bar's newest state; closed bars go at once.
	BarUpdateEvery time.Duration
	// Now is the wall clock: when a message arrived, by which each
	// symbol's clock runs on and idle bars close. nil: time.Now.
	Now func() time.Time
	// TimeZones names where times without a zone are read (for the log):
	// feed.time_zone and feed.publish_time_zone.
	TimeZones string
	// Log receives what an operator must know (a product not in the
	// calendar, once); nil: discarded.
	Log *slog.Logger
	// CalendarUntil is the last day the trading calendar knows the
	// holidays of (zero: no calendar): marketcast_feed_calendar_end_
	// timestamp_seconds says when, and a warning is logged from 30 days
	// before.
	CalendarUntil time.Time
}

// calendarWarning is how long before the trading calendar runs out of
// holidays the market warns at start.
const calendarWarning = 30 * 24 * time.Hour

// Market takes market publications into the hub. It is a feed.Sink.
type Market struct {
	hub     *engine.Hub
	catalog *Catalog
	cfg     Config
	now     func() time.Time
	log     *slog.Logger
	seed    maphash.Seed
	shards  []*shard

	warmed  sync.Map // kline topic → true: its history is loaded from the store
	unknown sync.Map // product → true: logged once

	set         *metrics.Set
	ignored     [2][2]*metrics.Counter // [tick, depth][stale, duplicate]
	unknownN    *atomic.Int64          // products not in the calendar
	corrected   *metrics.Counter
	zoneless    *metrics.Counter
	zonelessLog sync.Once
	checkpoints *metrics.Counter
	restored    *metrics.Counter
}

const (
	chTick = iota
	chDepth
)

const (
	reasonStale = iota
	reasonDuplicate
)

// New returns a market publishing to hub.
func New(hub *engine.Hub, cfg Config) *Market {
	m := &Market{hub: hub, catalog: NewCatalog(cfg.MaxSymbols), cfg: cfg, now: cfg.Now, log: cfg.Log,
		seed: maphash.MakeSeed(), set: metrics.NewSet()}
	if m.now == nil {
		m.now = time.Now
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	for c, ch := range [2]string{"tick", "depth"} {
		for r, reason := range [2]string{"stale", "duplicate"} {
			m.ignored[c][r] = metric.Counter(m.set, `marketcast_feed_ignored_total{channel="`+ch+`",reason="`+reason+`"}`,
				"Ticks and books not newer than their symbol's latest (stale: older; duplicate: a copy), counted and not forwarded")
		}
	}
	var unknown atomic.Int64
	m.unknownN = &unknown
	metric.Gauge(m.set, "marketcast_feed_unknown_products", "Products seen that the trading calendar does not list (they get feed.default_sessions)",
		func() float64 { return float64(unknown.Load()) })
	m.corrected = metric.Counter(m.set, "marketcast_feed_time_corrected_total",
		"Exchange times whose date was corrected (CTP's ActionDay on a night session)")
	m.zoneless = metric.Counter(m.set, "marketcast_feed_zoneless_times_total",
		"Exchange times written without a zone, read in feed.time_zone or feed.publish_time_zone")
	m.checkpoints = metric.Counter(m.set, "marketcast_feed_checkpoints_total", "Symbols' forming bars saved for a restart")
	m.restored = metric.Counter(m.set, "marketcast_feed_restored_symbols_total", "Symbols whose forming bars were restored at start")
	if until := cfg.CalendarUntil; !until.IsZero() {
		end := until.AddDate(0, 0, 1) // the end of the last day known
		metric.Gauge(m.set, "marketcast_feed_calendar_end_timestamp_seconds",
			"When the trading calendar's holidays run out (feed.calendar_file): alert well before time() reaches it",
			func() float64 { return float64(end.Unix()) })
		if left := end.Sub(m.now()); left < calendarWarning {
			m.log.Warn("the trading calendar's holidays run out: add next year's to the calendar file (feed.calendar_file), "+
				"or weekdays will be taken for trading days", "holidays_until", until.Format("2006-01-02"),
				"days_left", math.Floor(left.Hours()/24))
		}
	}
	n := cfg.Shards
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	m.shards = make([]*shard, n)
	for i := range m.shards {
		sh := &shard{m: m, symbols: make(map[string]*symbolState)}
		if cfg.Sessions != nil {
			sh.bars = kline.NewBuilder(m.calendar, sh.emitBar)
			sh.bars.Every = cfg.BarUpdateEvery
		}
		m.shards[i] = sh
	}
	return m
}

// Metrics is the market's metric set (marketcast_feed_ignored_total and
// the other marketcast_feed_* of docs/FEED.md).
func (m *Market) Metrics() *metrics.Set { return m.set }

// calendar is the builder's calendar lookup: a product the calendar does
// not list is logged once and counted.
func (m *Market) calendar(symbol string) *kline.Calendar {
	cal, product, known := m.cfg.Sessions(symbol)
	if !known {
		if _, seen := m.unknown.LoadOrStore(product, true); !seen {
			m.unknownN.Add(1)
			m.log.Warn("product not in the trading calendar: its bars follow feed.default_sessions; add it to the calendar file "+
				"(feed.calendar_file)", "product", product, "symbol", symbol, "sessions", cal.Name)
		}
	}
	return cal
}

// Shards is how many shards the market spreads symbols over.
func (m *Market) Shards() int { return len(m.shards) }

// ShardOf is the shard a symbol's messages are handled by. A source that
// splits its work the same way (natsfeed's workers) publishes each part
// with one lock and no contention.
func (m *Market) ShardOf(symbol string) int {
	if len(m.shards) == 1 {
		return 0
	}
	return int(maphash.String(m.seed, symbol) % uint64(len(m.shards)))
}

// Publish implements feed.Sink: the publication goes to the hub, and a tick
// also to the bar builder. A tick or book that is not newer than its
// symbol's latest is counted and answered with sequence 0, published
// nowhere.
func (m *Market) Publish(ctx context.Context, p *protocol.Publication) (uint64, error) {
	if err := m.catalog.Add(p.ID); err != nil {
		return 0, err
	}
	sh := m.shards[m.ShardOf(p.ID)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	seq, err := sh.publish(ctx, p)
	sh.flush()
	return seq, err
}

// PublishBatch implements feed.BatchSink: the publications go to the hub as
// one batch (each terminal gets them in one write), each shard's under one
// lock.
func (m *Market) PublishBatch(ctx context.Context, ps []*protocol.Publication) (int, error) {
	b := m.hub.NewBatch()
	defer b.End()
	var (
		n     int
		first error
	)
	note := func(err error) {
		if err != nil {
			if first == nil {
				first = err
			}
			return
		}
		n++
	}
	if len(m.shards) == 1 {
		sh := m.shards[0]
		sh.mu.Lock()
		sh.batch = b
		for _, p := range ps {
			note(m.admit(ctx, sh, p))
		}
		sh.flush()
		sh.batch = nil
		sh.mu.Unlock()
		return n, first
	}
	var done [64]bool // shards handled (beyond 64, one pass each)
	for i, p := range ps {
		si := m.ShardOf(p.ID)
		if si < len(done) && done[si] {
			continue
		}
		sh := m.shards[si]
		sh.mu.Lock()
		sh.batch = b
		for _, q := range ps[i:] { // this shard's publications, in order
			if m.ShardOf(q.ID) == si {
				note(m.admit(ctx, sh, q))
			}
		}
		sh.flush()
		sh.batch = nil
		sh.mu.Unlock()
		if si < len(done) {
			done[si] = true
		}
	}
	return n, first
}

// admit adds p's symbol to the catalogue and publishes p; sh is locked.
func (m *Market) admit(ctx context.Context, sh *shard, p *protocol.Publication) error {
	if err := m.catalog.Add(p.ID); err != nil {
		return err
	}
	_, err := sh.publish(ctx, p)
	return err
}

// Run closes bars on time, by each symbol's clock, also when their symbols
// stop trading, and writes checkpoints, until ctx ends (Stop writes the
// last).
func (m *Market) Run(ctx context.Context) {
	if m.cfg.Sessions == nil {
		return
	}
	var lastCheckpoint time.Time
	// Often enough that a forming bar held back by BarUpdateEvery waits
	// little more than that.
	every := 100 * time.Millisecond
	if e := m.cfg.BarUpdateEvery; e > 0 && e < every {
		every = max(e, 10*time.Millisecond)
	}
	engine.Every(ctx, every, func(time.Time) {
		now := m.now()
		m.Advance(now)
		if m.cfg.Checkpoints != nil && m.cfg.CheckpointEvery > 0 && now.Sub(lastCheckpoint) >= m.cfg.CheckpointEvery {
			m.Checkpoint()
			lastCheckpoint = now
		}
	})
}

// Advance closes the bars due at wall time now, and sends the forming bars
// held back (Run calls it every 100 ms, or every feed.bar_update_interval).
func (m *Market) Advance(now time.Time) {
	for _, sh := range m.shards {
		if sh.bars == nil {
			continue
		}
		b := m.hub.NewBatch()
		sh.mu.Lock()
		sh.batch = b
		sh.bars.Advance(now)
		sh.flush()
		sh.batch = nil
		sh.mu.Unlock()
		b.End()
	}
}

// Checkpoint saves the state of every symbol whose bars changed since the
// last checkpoint.
func (m *Market) Checkpoint() {
	if m.cfg.Checkpoints == nil {
		return
	}
	type saved struct {
		symbol string
		state  kline.State
	}
	now := m.now()
	for _, sh := range m.shards {
		if sh.bars == nil {
			continue
		}
		var out []saved
		sh.mu.Lock()
		for _, s := range sh.changed {
			s.changed = false
			if st, ok := sh.bars.Export(s.name, now); ok {
				out = append(out, saved{s.name, st})
			}
		}
		clear(sh.changed)
		sh.changed = sh.changed[:0]
		sh.mu.Unlock()
		// Encoded and saved with no lock held: ingest goes on meanwhile.
		for _, s := range out {
			b, err := s.state.Encode()
			if err != nil {
				continue
			}
			m.cfg.Checkpoints.Save(s.symbol, b)
			m.checkpoints.Inc()
		}
	}
}

// Stop saves the state of every symbol whose bars changed since the last
// checkpoint and waits until it is kept (or ctx ends): a node that stops
// goes on from here when it starts again.
func (m *Market) Stop(ctx context.Context) error {
	if m.cfg.Checkpoints == nil {
		return nil
	}
	m.Checkpoint()
	return m.cfg.Checkpoints.Sync(ctx)
}

// Restore takes back every symbol's catalogue entry and forming bars from
// the checkpoints, before a source starts: a node that restarts mid-bar
// serves its symbols and their bars at once, and its first bars go on from
// where they were. It reports how many symbols it restored.
func (m *Market) Restore(ctx context.Context) (int, error) {
	if m.cfg.Checkpoints == nil || m.cfg.Sessions == nil {
		return 0, nil
	}
	n := 0
	var bad error
	err := m.cfg.Checkpoints.Load(ctx, func(symbol string, state []byte) {
		if !protocol.ValidSymbol(symbol) || m.catalog.Add(symbol) != nil {
			return
		}
		sh := m.shards[m.ShardOf(symbol)]
		b := m.hub.NewBatch()
		sh.mu.Lock()
		sh.batch = b
		err := sh.bars.Restore(symbol, state, m.now())
		sh.batch = nil
		sh.mu.Unlock()
		b.End()
		if err != nil {
			bad = errors.Join(bad, err)
			return
		}
		n++
		m.restored.Inc()
	})
	if err == nil && bad != nil {
		m.log.Warn("some checkpoints could not be restored: those symbols' forming bars start again", "err", bad)
	}
	return n, err
}

// shard is the state of the symbols one shard handles, under its lock.
type shard struct {
	m       *Market
	mu      sync.Mutex
	bars    *kline.Builder // nil: no bars are built
	symbols map[string]*symbolState
	batch   *engine.Batch  // the batch being published, while locked
	changed []*symbolState // symbols whose bars changed since the last checkpoint
}

// symbolState is what a shard knows of one symbol.
type symbolState struct {
	name     string
	topics   [2 + 6]string // tick, depth, kline_1m … kline_1d: built once
	tick     latest
	book     latest
	external bool // its bars come from the feed
	changed  bool // in the shard's changed list
}

// latest is a symbol's newest tick or book: what a later one is compared
// with.
type latest struct {
	seen      bool
	at        time.Time
	volume    decimal.Decimal
	hasVolume bool
	print     uint64 // a hash of its known keys
}

func (sh *shard) symbol(name string) *symbolState {
	s := sh.symbols[name]
	if s == nil {
		s = &symbolState{name: name}
		s.topics[0] = protocol.TopicKey(protocol.Tick, name)
		s.topics[1] = protocol.TopicKey(protocol.Depth, name)
		for i, c := range protocol.Klines {
			s.topics[2+i] = protocol.TopicKey(c, name)
		}
		sh.symbols[name] = s
	}
	return s
}

// verdict says whether a message is newer than its symbol's latest.
type verdict uint8

const (
	newer verdict = iota
	stale
	duplicate
)

// order places a tick or a book among its symbol's: by exchange time, then
// (ticks) cumulative volume. Older is stale; the same time, volume and
// known keys is a duplicate (a redundant collector's copy). Without an
// exchange time there is nothing to order by: it is taken as newer.
func (l *latest) order(at time.Time, q *protocol.Quote, print uint64) verdict {
	hasVolume := q.Has&protocol.HasVolume != 0
	if !l.seen || q.Has&protocol.HasTime == 0 {
		return newer
	}
	switch at.Compare(l.at) {
	case -1:
		return stale
	case 1:
		return newer
	}
	if hasVolume && l.hasVolume {
		switch q.Volume.Cmp(l.volume) {
		case -1:
			return stale
		case 1:
			return newer
		}
	}
	if print == l.print {
		return duplicate
	}
	return newer // an update within the same millisecond
}

func (l *latest) take(at time.Time, q *protocol.Quote, print uint64) {
	l.seen, l.at, l.print = true, at, print
	if q.Has&protocol.HasVolume != 0 {
		l.volume, l.hasVolume = q.Volume, true
	}
}

// publish publishes p into the hub (within the shard's batch, when one is
// open) and builds bars from a tick. sh is locked.
func (sh *shard) publish(ctx context.Context, p *protocol.Publication) (uint64, error) {
	m := sh.m
	s := sh.symbol(p.ID)
	switch {
	case p.Channel == protocol.Tick:
		q, ok := protocol.QuoteOf(p)
		if !ok {
			return sh.hubPublish(ctx, p, s.topics[0])
		}
		m.countTime(q.Has)
		print := maphash.Bytes(m.seed, p.Data[:q.Known])
		switch s.tick.order(p.Time, &q, print) {
		case stale:
			m.ignored[chTick][reasonStale].Inc()
			return 0, nil
		case duplicate:
			m.ignored[chTick][reasonDuplicate].Inc()
			return 0, nil
		}
		s.tick.take(p.Time, &q, print)
		seq, err := sh.hubPublish(ctx, p, s.topics[0])
		if err != nil {
			return 0, err
		}
		if sh.bars != nil && !s.external {
			now := m.now()
			at := p.Time
			if q.Has&protocol.HasTime == 0 {
				at = now // no exchange time: when it arrived here, which other nodes do not share
			}
			sh.bars.Tick(p.ID, at, now, &q)
			if !s.changed {
				s.changed = true
				sh.changed = append(sh.changed, s)
			}
		}
		return seq, nil
	case p.Channel == protocol.Depth:
		m.countTime(p.Quote.Has)
		q := protocol.Quote{Has: p.Quote.Has & protocol.HasTime}
		print := maphash.Bytes(m.seed, p.Data)
		switch s.book.order(p.Time, &q, print) {
		case stale:
			m.ignored[chDepth][reasonStale].Inc()
			return 0, nil
		case duplicate:
			m.ignored[chDepth][reasonDuplicate].Inc()
			return 0, nil
		}
		s.book.take(p.Time, &q, print)
		return sh.hubPublish(ctx, p, s.topics[1])
	case p.Channel.Kline():
		if !s.external {
			s.external = true
			if sh.bars != nil {
				sh.bars.Forget(p.ID) // the feed builds this symbol's bars: ours would compete
			}
		}
		seq, err := sh.hubPublish(ctx, p, s.topics[2+klineIndex(p.Channel)])
		if err == nil && p.Final && m.cfg.Store != nil {
			m.cfg.Store.Save(p)
		}
		return seq, err
	}
	return sh.hubPublish(ctx, p, p.Topic())
}

// countTime counts what validation did to a message's exchange time.
func (m *Market) countTime(has protocol.QuoteFields) {
	if has&protocol.TimeCorrected != 0 {
		m.corrected.Inc()
	}
	if has&protocol.Zoneless != 0 {
		m.zoneless.Inc()
		m.zonelessLog.Do(func() {
			m.log.Info("market data carries exchange times without a zone: they are read in the configured zone, "+
				"and sent in UTC", "zones", m.cfg.TimeZones)
		})
	}
}

func klineIndex(c *protocol.Channel) int {
	for i, k := range protocol.Klines {
		if k == c {
			return i
		}
	}
	return 0
}

// hubPublish publishes p on topic, within the shard's batch when one is
// open.
func (sh *shard) hubPublish(ctx context.Context, p *protocol.Publication, topic string) (uint64, error) {
	msg := message(p, topic)
	var (
		ev  *engine.Event
		err error
	)
	if b := sh.batch; b != nil {
		ev, err = b.Publish(ctx, msg)
	} else {
		ev, err = sh.m.hub.Publish(ctx, msg)
	}
	if err != nil {
		return 0, err
	}
	return ev.Sequence(), nil
}

// message is engine.FromPublication with the topic key the shard keeps
// for the symbol, so publishing builds no key.
func message(p *protocol.Publication, topic string) engine.Message {
	m := engine.Message{Topic: topic, Mode: engine.Conflated, Type: p.Type, Channel: p.Channel.Push, Symbol: p.ID,
		Data: p.Data, Final: p.Final}
	if p.Channel.Kline() && !p.Time.IsZero() {
		m.Order = p.Time.UnixNano()
	}
	return m
}

// flush emits the forming bars the ticks just published changed. sh is
// locked.
func (sh *shard) flush() {
	if sh.bars != nil {
		sh.bars.Flush(sh.m.now())
	}
}

// emitBar publishes a bar the builder made (with the shard locked, so a
// symbol's bars go out in order). A closed bar is stored for the cluster,
// a partial one too, where it does not hide a complete one.
func (sh *shard) emitBar(symbol string, i int, bar *protocol.Bar) {
	m := sh.m
	s := sh.symbol(symbol)
	ch := kline.Intervals[i].Channel
	msg := engine.Message{Topic: s.topics[2+i], Mode: engine.Conflated, Type: ch.Type, Channel: ch.Push, Symbol: symbol,
		Data: bar.AppendJSON(make([]byte, 0, 320)), Final: bar.Closed, Order: bar.Start.UnixNano()}
	var err error
	if b := sh.batch; b != nil {
		_, err = b.Publish(context.Background(), msg)
	} else {
		_, err = m.hub.Publish(context.Background(), msg)
	}
	if err != nil || !bar.Closed || m.cfg.Store == nil {
		return
	}
	if bar.Partial {
		// The store may have the whole bar from a node that saw all of it:
		// the next history request loads it over this one.
		m.warmed.Delete(s.topics[2+i])
	}
	m.cfg.Store.Save(&protocol.Publication{Channel: ch, ID: symbol, Type: ch.Type, Data: msg.Data, Final: true, Time: bar.Start})
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
