// Package natsfeed carries market data over NATS: a Source that ingests
// what collectors publish on md.<channel>.<symbol> (md.tick.SHFE.rb2405,
// md.depth.…, md.kline_1m.…), and a Bus that publishes there, so one feed
// process serves every node of a cluster. A stream keeps the last message
// of each subject, so a node that starts late has every symbol's latest
// tick, book and bar at once; another keeps each symbol's forming bars
// (checkpoints.go) and the closed ones (bars.go).
package natsfeed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/engine/metric"
	"github.com/marketcast/marketcast/engine/throttle"
	"github.com/marketcast/marketcast/feed"
	"github.com/marketcast/marketcast/protocol"
)

// LastStream is the memory stream holding the last message of every market
// subject.
const LastStream = "MC_MD_LAST"

// Config tunes a Source.
type Config struct {
	// MaxBytes bounds a message; larger ones are dropped
	// (limits.max_message_bytes).
	MaxBytes int
	// PendingMessages and PendingBytes bound what NATS holds for this node
	// while it catches up (a burst, a stall): beyond either, NATS drops
	// and the node counts (feed.nats.pending_messages, pending_bytes).
	PendingMessages int
	PendingBytes    int
	// Rules check each message's exchange time (feed.time_zone,
	// feed.max_time_ahead).
	Rules *protocol.Rules
	// Log receives the drop log; nil: discarded.
	Log *slog.Logger
}

// Default pending limits, when Config leaves them 0.
const (
	DefaultPendingMessages = 1 << 20
	DefaultPendingBytes    = 256 << 20
)

// workerQueue is how many messages wait for one worker before the
// subscription's own pending list (bounded by the configured limits)
// holds the rest.
const workerQueue = 4096

// maxBatch bounds the messages published as one batch.
const maxBatch = 256

// Source ingests market data from NATS. It implements feed.Source.
type Source struct {
	nc  *nats.Conn
	cfg Config
	log *slog.Logger

	set     *metrics.Set
	ingest  *metrics.Counter
	warmed  *metrics.Counter
	dropLog *dropLog

	// Messages NATS dropped because this node read too slowly: of the
	// current subscription, and of those before it (a restarted Run).
	sub        atomic.Pointer[nats.Subscription]
	lostBefore atomic.Int64
	listening  chan struct{} // closed once the first subscription is in place
	listenOnce sync.Once
}

// NewSource returns a source on nc. Its metrics (marketcast_feed_*) are in
// Metrics.
func NewSource(nc *nats.Conn, cfg Config) *Source {
	if cfg.PendingMessages <= 0 {
		cfg.PendingMessages = DefaultPendingMessages
	}
	if cfg.PendingBytes <= 0 {
		cfg.PendingBytes = DefaultPendingBytes
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	set := metrics.NewSet()
	s := &Source{nc: nc, cfg: cfg, log: log, set: set, listening: make(chan struct{}),
		ingest: metric.Counter(set, "marketcast_feed_messages_total", "Market messages ingested from NATS"),
		warmed: metric.Counter(set, "marketcast_feed_warmup_messages_total", "Market messages taken from the last-value stream at start"),
		dropLog: &dropLog{log: throttle.New(log, time.Second, 1), reasons: metric.NewCounterVec(set, "marketcast_feed_dropped_total", "reason",
			"Market messages from NATS dropped as bad input, by reason (docs/FEED.md)",
			"subject", "too_large", "json", "type", "negative", "missing", "unknown_field", "order", "time", "ahead", "rejected", "invalid")}}
	metric.CounterFunc(set, "marketcast_feed_overflow_dropped_total",
		"Market messages NATS dropped because this node read too slowly (beyond its ingest capacity or feed.nats.pending_*)",
		func() uint64 { return uint64(s.Overflowed()) })
	metric.Gauge(set, "marketcast_feed_pending_messages", "Market messages NATS holds for this node, not yet taken by its ingest workers",
		func() float64 { return float64(s.Pending()) })
	return s
}

// Listening is closed once the source is subscribed to md.> on the server:
// from then on nothing published there is missed.
func (s *Source) Listening() <-chan struct{} { return s.listening }

// Overflowed is how many market messages NATS dropped because this node
// did not read them fast enough (more than it can ingest, or a stall).
func (s *Source) Overflowed() int64 {
	n := s.lostBefore.Load()
	if sub := s.sub.Load(); sub != nil {
		if d, err := sub.Dropped(); err == nil {
			n += int64(d)
		}
	}
	return n
}

// Pending is how many messages NATS holds for this node, not yet taken by
// its workers.
func (s *Source) Pending() int {
	if sub := s.sub.Load(); sub != nil {
		if n, _, err := sub.Pending(); err == nil {
			return n
		}
	}
	return 0
}

// PendingLimits are the limits the subscription runs with (the
// configured ones), for tests and operators to check.
func (s *Source) PendingLimits() (msgs, bytes int) {
	if sub := s.sub.Load(); sub != nil {
		if m, b, err := sub.PendingLimits(); err == nil {
			return m, b
		}
	}
	return 0, 0
}

// Metrics is the source's metric set.
func (s *Source) Metrics() *metrics.Set { return s.set }

// Symbols implements feed.Source: the universe is learned from messages.
func (s *Source) Symbols() []string { return nil }

// Sharded is a sink that handles symbols in shards (the market): the
// source validates each shard's messages on a goroutine of its own, and
// publishes them to it as one batch.
type Sharded interface {
	feed.BatchSink
	Shards() int
	ShardOf(symbol string) int
}

// item is a message for a worker.
type item struct {
	subject string
	symbol  string
	channel *protocol.Channel
	data    []byte
	warm    bool // from the last-value stream at start
}

// Run implements feed.Source: it subscribes md.>, warms up from the last
// value stream (skipping subjects already seen live), and ingests until
// ctx ends. NATS going away does not end it: the connection reconnects and
// the subscription resumes by itself.
//
// Messages are taken from NATS by one goroutine and handed by symbol to
// one worker per shard of the sink, which validates them and publishes
// them in batches: a symbol's messages stay in order, and validation and
// bars use every core.
func (s *Source) Run(ctx context.Context, sink feed.Sink) error {
	n, shardOf := 1, func(string) int { return 0 }
	if sh, ok := sink.(Sharded); ok && sh.Shards() > 1 {
		n, shardOf = sh.Shards(), sh.ShardOf
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	queues := make([]chan item, n)
	var wg sync.WaitGroup
	for i := range queues {
		queues[i] = make(chan item, workerQueue)
		w := &worker{s: s, sink: sink, in: queues[i], seen: make(map[string]struct{}), inBatch: make(map[string]struct{})}
		wg.Add(1)
		go func() { defer wg.Done(); w.run(ctx) }()
	}
	defer wg.Wait()
	dispatch := func(it item) {
		select {
		case queues[shardOf(it.symbol)] <- it:
		case <-ctx.Done():
		}
	}
	// The handler runs on the subscription's own goroutine, in the order
	// NATS delivers; a full worker queue makes it wait, and NATS holds what
	// arrives meanwhile, up to the configured limits.
	sub, err := s.nc.Subscribe(protocol.MarketSubjectPrefix+".>", func(m *nats.Msg) {
		ch, symbol, ok := protocol.ParseMarketSubject(m.Subject)
		if !ok {
			s.dropLog.drop("subject", m.Subject, errors.New("not md.<market channel>.<symbol>"))
			return
		}
		dispatch(item{subject: m.Subject, symbol: symbol, channel: ch, data: m.Data})
	})
	if err != nil {
		return fmt.Errorf("natsfeed: subscribe: %w", err)
	}
	if err := sub.SetPendingLimits(s.cfg.PendingMessages, s.cfg.PendingBytes); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("natsfeed: pending limits: %w", err)
	}
	s.sub.Store(sub)
	if s.nc.Flush() == nil { // the server has the subscription
		s.listenOnce.Do(func() { close(s.listening) })
	}
	defer func() {
		_ = sub.Unsubscribe()
		if d, err := sub.Dropped(); err == nil {
			s.lostBefore.Add(int64(d))
		}
		s.sub.Store(nil)
	}()

	warm := make(chan *nats.Msg, 1024)
	go s.warmUp(ctx, warm)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m, ok := <-warm:
			if !ok {
				// The warm-up is over: workers stop noting what they see.
				for i := range queues {
					select {
					case queues[i] <- item{warm: true}: // an empty warm item ends the warm-up
					case <-ctx.Done():
					}
				}
				warm = nil
				continue
			}
			ch, symbol, ok := protocol.ParseMarketSubject(m.Subject)
			if !ok {
				continue
			}
			dispatch(item{subject: m.Subject, symbol: symbol, channel: ch, data: m.Data, warm: true})
		}
	}
}

// worker validates and publishes one shard's messages.
type worker struct {
	s    *Source
	sink feed.Sink
	in   chan item
	// seen holds the subjects received live while the warm-up runs: the
	// last-value stream's older copy of one must not overwrite it (nor a
	// bad message be counted twice). It is bounded (maxSeen) and dropped
	// when the warm-up ends.
	seen    map[string]struct{}
	inBatch map[string]struct{}
	batch   []*protocol.Publication
	// pubs are the batch's publications, reused from batch to batch: the
	// sink keeps none of them (only their data, fresh for each).
	pubs [maxBatch]protocol.Publication
}

func (w *worker) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case it := <-w.in:
			w.take(ctx, it)
		}
	}
}

// take handles it and whatever else is queued, as one batch: each
// terminal gets the lot in one write. A batch holds at most one message
// of a topic: a fast reader gets every tick, none conflated within it.
func (w *worker) take(ctx context.Context, it item) {
	w.batch = w.batch[:0]
	clear(w.inBatch)
	for {
		if it.warm {
			w.warmItem(ctx, it)
		} else {
			if w.seen != nil && len(w.seen) < maxSeen {
				w.seen[it.subject] = struct{}{} // bad input too: its stored copy is no better
			}
			if p := &w.pubs[len(w.batch)]; w.s.checkInto(p, it) {
				w.batch = append(w.batch, p)
				w.inBatch[it.subject] = struct{}{}
			}
		}
		if len(w.batch) == maxBatch {
			break
		}
		select {
		case next := <-w.in:
			if _, dup := w.inBatch[next.subject]; dup && !next.warm {
				w.publish(ctx)
				w.batch = w.batch[:0]
				clear(w.inBatch)
			}
			it = next
			continue
		default:
		}
		break
	}
	w.publish(ctx)
}

// maxSeen bounds the warm-up's set of subjects seen live, per worker.
const maxSeen = 1 << 16

// warmItem publishes a message of the last-value stream, unless its
// subject was seen live; an empty one ends the warm-up.
func (w *worker) warmItem(ctx context.Context, it item) {
	if it.subject == "" {
		w.seen = nil
		return
	}
	if w.seen == nil {
		return // the warm-up ended: a straggler from it is stale
	}
	if _, live := w.seen[it.subject]; live {
		return
	}
	p := w.s.check(it)
	if p == nil {
		return
	}
	if _, err := w.sink.Publish(ctx, p); err != nil {
		w.s.dropLog.drop("rejected", it.subject, err)
		return
	}
	w.s.warmed.Inc()
}

// publish hands the batch's publications to the sink, as one batch.
func (w *worker) publish(ctx context.Context) {
	ps := w.batch
	if len(ps) == 0 {
		return
	}
	n, err := feed.PublishAll(ctx, w.sink, ps)
	w.s.ingest.Add(n)
	for range len(ps) - n { // refused: a full catalogue, say (the error is the first's)
		w.s.dropLog.drop("rejected", "md.>", err)
	}
	clear(ps)
	clear(w.pubs[:len(ps)]) // let their data go
}

// warmUp reads the last message of every market subject, ensuring the
// stream that keeps them exists.
func (s *Source) warmUp(ctx context.Context, out chan<- *nats.Msg) {
	defer close(out)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	js, err := jetstream.New(s.nc)
	if err != nil {
		return
	}
	st, err := js.Stream(ctx, LastStream) // the node keeps it (EnsureLastStream)
	if err != nil {
		s.log.Warn("no last-value stream: a late node waits for each symbol's next message", "err", err)
		return
	}
	if info, err := st.Info(ctx); err != nil || info.State.Msgs == 0 {
		return
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy})
	if err != nil {
		s.log.Warn("warm-up failed", "err", err)
		return
	}
	it, err := cons.Messages()
	if err != nil {
		return
	}
	defer it.Stop()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return
		}
		select {
		case out <- &nats.Msg{Subject: m.Subject(), Data: m.Data()}:
		case <-ctx.Done():
			return
		}
		if md, err := m.Metadata(); err != nil || md.NumPending == 0 {
			return
		}
	}
}

// EnsureLastStream creates the stream that keeps each market subject's
// last message, in files (so a NATS restart keeps it: a node started
// afterwards knows every symbol at once) with the given replicas, or brings
// an existing one in line. The stream holds only copies of what collectors
// publish, so one kept in memory (as marketcast once made it) is made
// again in files. It is bounded as a node's catalogue is: maxSymbols
// symbols' subjects (a tick, a book and a bar per interval each) of at most
// maxMessageBytes; past that the least recently updated subjects go first.
func EnsureLastStream(ctx context.Context, js jetstream.JetStream, replicas, maxSymbols, maxMessageBytes int) error {
	subjects := int64(max(maxSymbols, 1)) * lastSubjectsPerSymbol
	return ensureStream(ctx, js, jetstream.StreamConfig{
		Name:              LastStream,
		Description:       "marketcast: the last message of every market subject, for nodes that start late",
		Subjects:          []string{protocol.MarketSubjectPrefix + ".>"},
		Storage:           jetstream.FileStorage,
		Replicas:          max(replicas, 1),
		MaxMsgsPerSubject: 1,
		MaxMsgs:           subjects,
		MaxMsgSize:        int32(min(max(maxMessageBytes, 1), math.MaxInt32)),
		MaxBytes:          subjects * int64(max(maxMessageBytes, 1)),
		Discard:           jetstream.DiscardOld,
	}, true)
}

// lastSubjectsPerSymbol is how many market subjects one symbol has: its
// ticks, its book and its bars of each interval.
var lastSubjectsPerSymbol = int64(2 + len(protocol.Klines))

// ensureStream creates want, or updates an existing stream to it. A stream
// stored otherwise (JetStream cannot change that in place) is removed and
// made again when rebuildable says its content can be lost.
func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig, rebuildable bool) error {
	st, err := js.Stream(ctx, want.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if _, err = js.CreateStream(ctx, want); errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil // another process made it first
		}
	case err != nil:
	case st.CachedInfo().Config.Storage != want.Storage && rebuildable:
		if err = js.DeleteStream(ctx, want.Name); err == nil || errors.Is(err, jetstream.ErrStreamNotFound) {
			_, err = js.CreateStream(ctx, want)
		}
	default:
		have := st.CachedInfo().Config
		if have.Replicas == want.Replicas && have.Storage == want.Storage && have.MaxMsgsPerSubject == want.MaxMsgsPerSubject &&
			have.Duplicates == want.Duplicates && have.AllowDirect == want.AllowDirect && have.MaxAge == want.MaxAge &&
			have.MaxMsgs == want.MaxMsgs && have.MaxBytes == want.MaxBytes && have.MaxMsgSize == want.MaxMsgSize {
			return nil
		}
		_, err = js.UpdateStream(ctx, want)
	}
	if err != nil {
		return fmt.Errorf("natsfeed: stream %s: %w", want.Name, err)
	}
	return nil
}

// check validates one market message; bad input is counted by reason and
// dropped (nil).
func (s *Source) check(it item) *protocol.Publication {
	p := new(protocol.Publication)
	if !s.checkInto(p, it) {
		return nil
	}
	return p
}

// checkInto is check into p; it reports whether p is valid.
func (s *Source) checkInto(p *protocol.Publication, it item) bool {
	if len(it.data) > s.cfg.MaxBytes {
		s.dropLog.drop("too_large", it.subject, fmt.Errorf("%d bytes; at most %d", len(it.data), s.cfg.MaxBytes))
		return false
	}
	if err := protocol.ValidateInto(p, &protocol.Item{Channel: it.channel.Push, Symbol: it.symbol, Data: it.data}, s.cfg.MaxBytes, s.cfg.Rules); err != nil {
		s.dropLog.drop(reasonOf(err), it.subject, err)
		return false
	}
	return true
}

// reasonOf names the reason a validation failed, for the metric's label.
func reasonOf(err error) string {
	var r interface{ Reason() string }
	if errors.As(err, &r) {
		return r.Reason()
	}
	return "invalid"
}

// dropLog counts dropped messages by reason and logs at most one line a
// second, with the subject: a broken collector must not fill the log.
type dropLog struct {
	log     *throttle.Log
	reasons *metric.CounterVec
}

func (d *dropLog) drop(reason, subject string, err error) {
	d.reasons.Inc(reason)
	d.log.Warn("market message dropped", "reason", reason, "subject", subject, "err", err)
}

// Bus publishes market publications to NATS, for every node to ingest.
type Bus struct{ nc *nats.Conn }

// NewBus returns a bus on nc.
func NewBus(nc *nats.Conn) *Bus { return &Bus{nc: nc} }

// Publish implements feed.Sink. There is no sequence to report: each node
// numbers market data as it ingests it.
func (b *Bus) Publish(_ context.Context, p *protocol.Publication) (uint64, error) {
	if err := b.nc.Publish(protocol.MarketSubject(p.Channel, p.ID), p.Data); err != nil {
		return 0, fmt.Errorf("%w: %v", engine.ErrUnavailable, err)
	}
	return 0, nil
}

var (
	_ feed.Source = (*Source)(nil)
	_ feed.Sink   = (*Bus)(nil)
)
