// Package natsfeed carries market data over NATS: a Source that ingests
// what collectors publish on md.<channel>.<symbol> (md.tick.SHFE.rb2405,
// md.depth.…, md.kline_1m.…), and a Bus that publishes there, so one feed
// process serves every node of a cluster. A stream keeps the last message
// of each subject, so a node that starts late has every symbol's latest
// tick, book and bar at once.
package natsfeed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marketcast/marketcast/engine/metric"
	"github.com/marketcast/marketcast/engine/throttle"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/feed"
	"github.com/marketcast/marketcast/protocol"
)

// LastStream is the memory stream holding the last message of every market
// subject.
const LastStream = "MC_MD_LAST"

// Source ingests market data from NATS. It implements feed.Source.
type Source struct {
	nc       *nats.Conn
	maxBytes int
	log      *slog.Logger

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

// NewSource returns a source on nc; messages larger than maxBytes are
// dropped. Its metrics (marketcast_feed_*) are in Metrics.
func NewSource(nc *nats.Conn, maxBytes int, log *slog.Logger) *Source {
	set := metrics.NewSet()
	s := &Source{nc: nc, maxBytes: maxBytes, log: log, set: set, listening: make(chan struct{}),
		ingest:  metric.Counter(set, "marketcast_feed_messages_total", "Market messages ingested from NATS"),
		warmed:  metric.Counter(set, "marketcast_feed_warmup_messages_total", "Market messages taken from the last-value stream at start"),
		dropLog: &dropLog{log: throttle.New(log, time.Second, 1), set: set}}
	metric.CounterFunc(set, "marketcast_feed_overflow_dropped_total",
		"Market messages NATS dropped because this node read too slowly (beyond its ingest capacity)", func() uint64 { return uint64(s.Overflowed()) })
	metric.NewCounterVec(set, "marketcast_feed_dropped_total", "reason", "Market messages from NATS dropped as bad input, by reason (docs/FEED.md)",
		"subject", "too_large", "json", "type", "negative", "missing", "unknown_field", "order", "time", "rejected", "invalid")
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

// Metrics is the source's metric set.
func (s *Source) Metrics() *metrics.Set { return s.set }

// Symbols implements feed.Source: the universe is learned from messages.
func (s *Source) Symbols() []string { return nil }

// Run implements feed.Source: it subscribes md.>, warms up from the last
// value stream (skipping subjects already seen live), and ingests until
// ctx ends. NATS going away does not end it: the connection reconnects and
// the subscription resumes by itself.
func (s *Source) Run(ctx context.Context, sink feed.Sink) error {
	msgs := make(chan *nats.Msg, 8192)
	sub, err := s.nc.ChanSubscribe(protocol.MarketSubjectPrefix+".>", msgs)
	if err != nil {
		return fmt.Errorf("natsfeed: subscribe: %w", err)
	}
	// A node that cannot keep up makes NATS drop messages for this
	// subscription: bound what waits, and count what is dropped.
	_ = sub.SetPendingLimits(1<<20, 256<<20)
	s.sub.Store(sub)
	if s.nc.Flush() == nil { // the server has the subscription
		s.listenOnce.Do(func() { close(s.listening) })
	}
	defer func() {
		if d, err := sub.Dropped(); err == nil {
			s.lostBefore.Add(int64(d))
		}
		s.sub.Store(nil)
		_ = sub.Unsubscribe()
	}()

	seen := &sync.Map{} // subjects received live before the warm-up reached them
	var batch []*protocol.Publication
	warm := make(chan *nats.Msg, 1024)
	go s.warmUp(ctx, warm)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m := <-msgs:
			// With it, whatever else NATS has delivered: one batch, so
			// each terminal gets the lot in one write.
			batch = batch[:0]
			for {
				seen.Store(m.Subject, true)
				if p := s.check(m.Subject, m.Data); p != nil {
					batch = append(batch, p)
				}
				if len(batch) == maxBatch {
					break
				}
				select {
				case m = <-msgs:
					continue
				default:
				}
				break
			}
			s.publish(ctx, sink, batch)
		case m, ok := <-warm:
			if !ok {
				warm = nil // done
				continue
			}
			if _, live := seen.Load(m.Subject); !live {
				s.handle(ctx, sink, m.Subject, m.Data)
			}
		}
	}
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
// again in files.
func EnsureLastStream(ctx context.Context, js jetstream.JetStream, replicas int) error {
	return ensureStream(ctx, js, jetstream.StreamConfig{
		Name:              LastStream,
		Description:       "marketcast: the last message of every market subject, for nodes that start late",
		Subjects:          []string{protocol.MarketSubjectPrefix + ".>"},
		Storage:           jetstream.FileStorage,
		Replicas:          max(replicas, 1),
		MaxMsgsPerSubject: 1,
		Discard:           jetstream.DiscardOld,
	}, true)
}

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
			have.Duplicates == want.Duplicates && have.AllowDirect == want.AllowDirect && have.MaxAge == want.MaxAge {
			return nil
		}
		_, err = js.UpdateStream(ctx, want)
	}
	if err != nil {
		return fmt.Errorf("natsfeed: stream %s: %w", want.Name, err)
	}
	return nil
}

// maxBatch bounds the messages published as one batch.
const maxBatch = 256

// check validates one market message from its subject and payload; bad
// input is counted by reason and dropped (nil).
func (s *Source) check(subject string, data []byte) *protocol.Publication {
	ch, symbol, ok := protocol.ParseMarketSubject(subject)
	if !ok {
		s.dropLog.drop("subject", subject, errors.New("not md.<market channel>.<symbol>"))
		return nil
	}
	if len(data) > s.maxBytes {
		s.dropLog.drop("too_large", subject, fmt.Errorf("%d bytes; at most %d", len(data), s.maxBytes))
		return nil
	}
	p, err := protocol.Validate(&protocol.Item{Channel: ch.Push, Symbol: symbol, Data: data}, s.maxBytes)
	if err != nil {
		s.dropLog.drop(reasonOf(err), subject, err)
		return nil
	}
	return p
}

// publish hands checked publications to the sink, as one batch.
func (s *Source) publish(ctx context.Context, sink feed.Sink, ps []*protocol.Publication) {
	if len(ps) == 0 {
		return
	}
	n, err := feed.PublishAll(ctx, sink, ps)
	s.ingest.Add(n)
	for range len(ps) - n { // refused: a full catalogue, say (the error is the first's)
		s.dropLog.drop("rejected", "md.>", err)
	}
}

// handle validates and publishes one message taken from the last-value
// stream at start.
func (s *Source) handle(ctx context.Context, sink feed.Sink, subject string, data []byte) {
	p := s.check(subject, data)
	if p == nil {
		return
	}
	if _, err := sink.Publish(ctx, p); err != nil {
		s.dropLog.drop("rejected", subject, err)
		return
	}
	s.warmed.Inc()
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
	log *throttle.Log
	set *metrics.Set
}

func (d *dropLog) drop(reason, subject string, err error) {
	d.set.GetOrCreateCounter(`marketcast_feed_dropped_total{reason="` + reason + `"}`).Inc()
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
