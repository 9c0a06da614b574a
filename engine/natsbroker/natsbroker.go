// Package natsbroker is the cluster's engine.Broker: private streams live in
// one NATS JetStream stream, so any node can publish to a topic, read its
// history and resume a client that was connected elsewhere.
//
// Each reliable topic is one subject of the stream (mc.priv.<channel>.<id>).
// JetStream's sequence is stream-wide, not per subject, so the topic's own
// contiguous sequence and its epoch travel in headers (Mc-Seq, Mc-Epoch) and
// are assigned with optimistic concurrency: a publish names the stream
// sequence of the topic's current last message
// (Nats-Expected-Last-Subject-Sequence); if another node got there first the
// server refuses it, and the publisher re-reads the head and tries again. A
// topic whose subject holds no message starts a new run: a new epoch at 1.
//
// Live events reach the nodes that hold the topic through the stream's
// RePublish (mc.priv.> → mc.live.priv.>, sent only after the message is
// stored), on core subscriptions a node opens for the topics its clients
// hold. Core NATS may lose a message on the way; the hub sees the gap in the
// sequence and reads what is missing back from the stream, and a periodic
// check of every watched topic's head catches a lost last message.
package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/engine/metric"
	"github.com/marketcast/marketcast/protocol"
)

// Config describes the stream and how the broker uses it.
type Config struct {
	// Stream is the JetStream stream's name.
	Stream string
	// Replicas is the stream's replica count (3 in a production NATS
	// cluster; 1 on a single NATS server).
	Replicas int
	// Memory keeps the stream in memory instead of files (a NATS restart
	// then loses every run: clients are told recovered:false).
	Memory bool
	// History bounds what a resume may replay: Size events per topic (the
	// stream's messages per subject), within TTL (checked when reading).
	History engine.HistoryLimits
	// MaxAge is how long the stream keeps a topic's messages, its last one
	// included: longer than History.TTL, so an idle topic keeps its run
	// (and its epoch) and does not restart at 1.
	MaxAge time.Duration
	// MaxBytes bounds the stream's storage; beyond, the oldest messages go.
	MaxBytes int64
	// Duplicates is the window in which a publish with the same
	// idempotency key is stored once.
	Duplicates time.Duration
	// HeadCheck is how often the head of every watched topic is compared
	// with what this node has, to catch a lost last message.
	HeadCheck time.Duration
	// Timeout bounds one request to NATS.
	Timeout time.Duration
}

// Header keys of stored messages.
const (
	hdrSeq       = "Mc-Seq"       // the topic's sequence
	hdrEpoch     = "Mc-Epoch"     // the run it belongs to
	hdrTime      = "Mc-Ts"        // accepted at, Unix nanoseconds (the envelope timestamp)
	hdrType      = "Mc-Type"      // envelope type
	hdrChannel   = "Mc-Channel"   // envelope channel
	hdrStrategy  = "Mc-Strategy"  // envelope strategy_id
	hdrBroadcast = "Mc-Broadcast" // "1": a notice to every user
	hdrPrev      = "Mc-Prev"      // stream sequence of the topic's previous message (0: none)
)

const (
	privPrefix = "mc.priv."
	livePrefix = "mc.live." // + mc.priv.…: the RePublish destination
	workers    = 8          // live-event goroutines; a topic always maps to the same one
)

// Broker is a JetStream engine.Broker. It is safe for concurrent use.
type Broker struct {
	cfg     Config
	nc      *nats.Conn
	js      jetstream.JetStream
	log     *slog.Logger
	handler engine.EventHandler
	seed    maphash.Seed

	heads sync.Map // subject → head: the last known message of a topic, for publishing

	mu      sync.Mutex
	watches map[string]*watch // topic → watch
	live    [workers]chan *nats.Msg

	metrics brokerMetrics
	done    chan struct{}
	wg      sync.WaitGroup

	testDrop atomic.Pointer[func(seq uint64) bool] // tests: lose chosen live events
}

type head struct {
	streamSeq uint64 // 0: the subject holds no message
	seq       uint64
	epoch     string
}

type watch struct {
	n   int
	sub *nats.Subscription
}

type brokerMetrics struct {
	set                                           *metrics.Set
	published, conflicts, headChecks, undecodable *metrics.Counter
}

// Metrics is the broker's metric set (marketcast_cluster_*).
func (b *Broker) Metrics() *metrics.Set { return b.metrics.set }

func (b *Broker) newMetrics() {
	s := metrics.NewSet()
	b.metrics = brokerMetrics{set: s,
		published:   metric.Counter(s, "marketcast_cluster_published_total", "Private messages this node stored in JetStream"),
		conflicts:   metric.Counter(s, "marketcast_cluster_publish_conflicts_total", "Stores retried because another node took the sequence first"),
		headChecks:  metric.Counter(s, "marketcast_cluster_head_checks_total", "Head checks of watched topics (catching a lost last message)"),
		undecodable: metric.Counter(s, "marketcast_cluster_undecodable_total", "Stored messages this node could not decode"),
	}
	metric.Gauge(s, "marketcast_cluster_watched_topics", "Private topics this node follows in JetStream", func() float64 {
		b.mu.Lock()
		defer b.mu.Unlock()
		return float64(len(b.watches))
	})
	metric.Gauge(s, "marketcast_cluster_connected", "1 while the node is connected to NATS, else 0", func() float64 {
		if b.nc.IsConnected() {
			return 1
		}
		return 0
	})
}

// New creates (or updates) the stream and starts the live workers and the
// head check. nc should reconnect forever and fail publishes fast while
// disconnected (nats.MaxReconnects(-1), nats.ReconnectBufSize(-1)); call
// Reconnected from its reconnect handler.
func New(ctx context.Context, nc *nats.Conn, cfg Config, log *slog.Logger) (*Broker, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	b := &Broker{cfg: cfg, nc: nc, js: js, log: log, seed: maphash.MakeSeed(),
		watches: make(map[string]*watch), done: make(chan struct{})}
	b.newMetrics()
	if err := b.ensureStream(ctx); err != nil {
		return nil, err
	}
	for i := range b.live {
		b.live[i] = make(chan *nats.Msg, 4096)
		b.wg.Add(1)
		go b.deliver(b.live[i])
	}
	b.wg.Add(1)
	go b.checkHeads()
	return b, nil
}

// ensureStream creates the stream, or brings an existing one's settings in
// line with the configuration.
func (b *Broker) ensureStream(ctx context.Context) error {
	storage := jetstream.FileStorage
	if b.cfg.Memory {
		storage = jetstream.MemoryStorage
	}
	_, err := b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              b.cfg.Stream,
		Description:       "marketcast private streams: one subject per topic",
		Subjects:          []string{privPrefix + ">"},
		Storage:           storage,
		Replicas:          b.cfg.Replicas,
		MaxMsgsPerSubject: int64(b.cfg.History.Size),
		MaxAge:            b.cfg.MaxAge,
		MaxBytes:          b.cfg.MaxBytes,
		Discard:           jetstream.DiscardOld,
		Duplicates:        b.cfg.Duplicates,
		AllowDirect:       true,
		RePublish:         &jetstream.RePublish{Source: privPrefix + ">", Destination: livePrefix + privPrefix + ">"},
	})
	if err != nil {
		return fmt.Errorf("natsbroker: stream %s: %w", b.cfg.Stream, err)
	}
	return nil
}

// Close stops the workers and ends every watch.
func (b *Broker) Close() {
	close(b.done)
	b.mu.Lock()
	for topic, w := range b.watches {
		_ = w.sub.Unsubscribe()
		delete(b.watches, topic)
	}
	for _, ch := range b.live {
		close(ch)
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// SetHandler implements engine.Broker.
func (b *Broker) SetHandler(h engine.EventHandler) { b.handler = h }

// subject is a topic's subject: "orders:alice@x" → mc.priv.orders.~YWxp…
func subject(topic string) string {
	push, id, _ := strings.Cut(topic, ":")
	return privPrefix + push + "." + protocol.SubjectToken(id)
}

// topicOf reverses subject.
func topicOf(subj string) (string, bool) {
	rest, ok := strings.CutPrefix(subj, privPrefix)
	if !ok {
		return "", false
	}
	push, tok, ok := strings.Cut(rest, ".")
	if !ok {
		return "", false
	}
	id, ok := protocol.ParseSubjectToken(tok)
	return push + ":" + id, ok
}

func (b *Broker) requestCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.cfg.Timeout)
}

// unavailable wraps a failure to reach NATS for the publish API (503).
func unavailable(err error) error { return fmt.Errorf("%w: %v", engine.ErrUnavailable, err) }

// Publish implements engine.Broker.
//
// Several nodes publishing to one topic at once take turns: the loser of a
// conflict re-reads the head and tries again after a random pause that
// grows with each loss (a node whose head is cached would otherwise win
// every race), until the publish timeout.
func (b *Broker) Publish(ctx context.Context, m *engine.Message) (*engine.Event, error) {
	subj := subject(m.Topic)
	deadline := time.Now().Add(b.cfg.Timeout)
	for try := 0; ; try++ {
		if try > 0 {
			pause := time.Duration(rand.Int64N(int64(min(time.Millisecond<<min(try, 6), 50*time.Millisecond)) + 1))
			if time.Now().Add(pause).After(deadline) {
				return nil, unavailable(fmt.Errorf("topic %s: %d conflicting publishes in a row", m.Topic, try))
			}
			select {
			case <-ctx.Done():
				return nil, unavailable(ctx.Err())
			case <-time.After(pause):
			}
		}
		h, err := b.head(ctx, subj)
		if err != nil {
			return nil, unavailable(err)
		}
		seq, epoch := h.seq+1, h.epoch
		if h.streamSeq == 0 {
			seq, epoch = 1, engine.NewEpoch() // the subject is empty: a new run
		}
		at := time.Now()
		msg := nats.NewMsg(subj)
		msg.Data = m.Data
		msg.Header.Set(hdrSeq, strconv.FormatUint(seq, 10))
		msg.Header.Set(hdrEpoch, epoch)
		msg.Header.Set(hdrTime, strconv.FormatInt(at.UnixNano(), 10))
		msg.Header.Set(hdrType, m.Type)
		msg.Header.Set(hdrChannel, m.Channel)
		msg.Header.Set(hdrPrev, strconv.FormatUint(h.streamSeq, 10))
		if m.StrategyID != "" {
			msg.Header.Set(hdrStrategy, m.StrategyID)
		}
		if m.Broadcast {
			msg.Header.Set(hdrBroadcast, "1")
		}
		opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(h.streamSeq)}
		if m.IdempotencyKey != "" {
			// JetStream de-duplicates per stream; a key is the caller's per
			// topic, so the id names the topic too.
			opts = append(opts, jetstream.WithMsgID(msgID(subj, m.IdempotencyKey)))
		}
		rctx, cancel := b.requestCtx(ctx)
		ack, err := b.js.PublishMsg(rctx, msg, opts...)
		cancel()
		switch {
		case err == nil && ack.Duplicate:
			// A retry of a publish that was stored: answer with the original.
			sm, err := b.getBySeq(ctx, ack.Sequence)
			if err != nil || sm == nil {
				return nil, unavailable(fmt.Errorf("the original of a duplicate publish: %v", err))
			}
			if sm.ev.Topic() != m.Topic {
				return nil, fmt.Errorf("natsbroker: the original of a duplicate publish to %s is a message of %s", m.Topic, sm.ev.Topic())
			}
			b.metrics.published.Inc()
			return sm.ev, nil
		case err == nil:
			b.heads.Store(subj, head{streamSeq: ack.Sequence, seq: seq, epoch: epoch})
			ev := engine.NewEvent(m, seq, epoch, at)
			b.metrics.published.Inc()
			b.handler.Apply(ev) // this node's subscribers need not wait for the republish
			return ev, nil
		case isConflict(err):
			b.metrics.conflicts.Inc()
			b.heads.Delete(subj) // another node published first: read the head again
		case errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders):
			// The stream is gone (a wiped store): make it again, then retry.
			b.heads.Delete(subj)
			if err := b.ensureStream(ctx); err != nil {
				return nil, unavailable(err)
			}
		default:
			return nil, unavailable(err)
		}
	}
}

// msgID is the JetStream message id of a publish to subj with an
// idempotency key: unique per topic, as the key is.
func msgID(subj, key string) string { return subj + "|" + key }

func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// head returns the topic's last message, cached after this node's own
// publishes and the live events it sees.
func (b *Broker) head(ctx context.Context, subj string) (head, error) {
	if h, ok := b.heads.Load(subj); ok {
		return h.(head), nil
	}
	sm, err := b.lastBySubject(ctx, subj)
	if err != nil {
		return head{}, err
	}
	if sm == nil {
		return head{}, nil
	}
	h := head{streamSeq: sm.streamSeq, seq: sm.ev.Sequence(), epoch: sm.ev.Epoch()}
	b.heads.Store(subj, h)
	return h, nil
}

// Watch implements engine.Broker: the first watch of a topic opens a core
// subscription to its republished messages, confirmed by the server before
// Watch returns, so nothing stored afterwards is missed.
func (b *Broker) Watch(ctx context.Context, topic string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w := b.watches[topic]; w != nil {
		w.n++
		return nil
	}
	ch := b.live[maphash.String(b.seed, topic)%workers]
	sub, err := b.nc.ChanSubscribe(livePrefix+subject(topic), ch)
	if err != nil {
		return unavailable(err)
	}
	rctx, cancel := b.requestCtx(ctx)
	defer cancel()
	if err := b.nc.FlushWithContext(rctx); err != nil {
		_ = sub.Unsubscribe()
		return unavailable(err)
	}
	b.watches[topic] = &watch{n: 1, sub: sub}
	return nil
}

// Watching reports whether some Watch of topic has not been ended.
func (b *Broker) Watching(topic string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.watches[topic] != nil
}

// Unwatch implements engine.Broker.
func (b *Broker) Unwatch(topic string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := b.watches[topic]
	if w == nil {
		return
	}
	if w.n--; w.n == 0 {
		_ = w.sub.Unsubscribe()
		delete(b.watches, topic)
		b.heads.Delete(subject(topic))
	}
}

// deliver hands republished events to the hub, in the order they came.
func (b *Broker) deliver(ch chan *nats.Msg) {
	defer b.wg.Done()
	for msg := range ch {
		subj := strings.TrimPrefix(msg.Subject, livePrefix)
		sm, err := decode(subj, msg.Header, msg.Data)
		if err != nil {
			b.metrics.undecodable.Inc()
			b.log.Warn("undecodable live event", "subject", msg.Subject, "err", err)
			continue
		}
		if drop := b.testDrop.Load(); drop != nil && (*drop)(sm.ev.Sequence()) {
			continue
		}
		if ss, err := strconv.ParseUint(msg.Header.Get(jetstream.SequenceHeader), 10, 64); err == nil {
			if h, ok := b.heads.Load(subj); !ok || h.(head).streamSeq < ss {
				b.heads.Store(subj, head{streamSeq: ss, seq: sm.ev.Sequence(), epoch: sm.ev.Epoch()})
			}
		}
		b.handler.Apply(sm.ev)
	}
}

// Reconnected resynchronizes after NATS came back: the stream is made again
// if the store was wiped, and every watched topic's head is checked so
// events published while this node was away are read back in order.
func (b *Broker) Reconnected() {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b.heads.Range(func(k, _ any) bool { b.heads.Delete(k); return true })
		if err := b.ensureStream(ctx); err != nil {
			b.log.Warn("stream not restored after reconnect", "err", err)
		}
		b.checkHeadsOnce(ctx)
	}()
}

// checkHeads compares every watched topic's head with the hub now and then:
// a lost republish of a topic's last message shows no gap until the next
// message, which may never come.
func (b *Broker) checkHeads() {
	defer b.wg.Done()
	t := time.NewTicker(b.cfg.HeadCheck)
	defer t.Stop()
	for {
		select {
		case <-b.done:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), b.cfg.HeadCheck)
			b.checkHeadsOnce(ctx)
			cancel()
		}
	}
}

func (b *Broker) checkHeadsOnce(ctx context.Context) {
	b.mu.Lock()
	subjects := make([]string, 0, len(b.watches))
	for topic := range b.watches {
		subjects = append(subjects, subject(topic))
	}
	b.mu.Unlock()
	const perRequest = 1000 // the server answers at most 1024 subjects at once
	for len(subjects) > 0 {
		n := min(len(subjects), perRequest)
		msgs, err := b.lastOfMany(ctx, subjects[:n])
		subjects = subjects[n:]
		if err != nil {
			b.log.Warn("head check failed", "err", err)
			return
		}
		for _, sm := range msgs {
			b.handler.Apply(sm.ev) // a duplicate is dropped; a gap is filled
		}
	}
	b.metrics.headChecks.Inc()
}

// History implements engine.Broker.
func (b *Broker) History(ctx context.Context, topic string, after uint64, limit int) (engine.History, error) {
	subj := subject(topic)
	last, err := b.lastBySubject(ctx, subj)
	if err != nil {
		return engine.History{}, unavailable(err)
	}
	if last == nil {
		return engine.History{}, nil
	}
	h := engine.History{Last: last.ev}
	// The resume window: the stream keeps a topic longer (so its run
	// survives idle spells), but a resume may replay only what is younger
	// than the history TTL.
	start := time.Now().Add(-b.cfg.History.TTL)
	first, err := b.getFirst(ctx, subj, start)
	if err != nil {
		return engine.History{}, unavailable(err)
	}
	if first == nil || first.ev.Epoch() != last.ev.Epoch() {
		return h, nil
	}
	h.First = first.ev.Sequence()
	headSeq := last.ev.Sequence()
	if limit <= 0 || after >= headSeq {
		return h, nil
	}
	from := max(after+1, h.First)
	events, err := b.read(ctx, subj, first, last, from, limit)
	if err != nil {
		return engine.History{}, unavailable(err)
	}
	h.Events = events
	return h, nil
}

// read returns up to limit events of subj from sequence from on, first and
// last being the oldest message in the window and the newest.
func (b *Broker) read(ctx context.Context, subj string, first, last *stored, from uint64, limit int) ([]*engine.Event, error) {
	if n := last.ev.Sequence() - from + 1; n <= 16 && int(n) <= limit {
		// A short gap, the common resume: walk back from the head along the
		// stored back-links, one read per event.
		out := make([]*engine.Event, n)
		cur := last
		for i := int(n) - 1; i >= 0; i-- {
			out[i] = cur.ev
			if i == 0 {
				break
			}
			prev, err := b.getBySeq(ctx, cur.prev)
			if err != nil {
				return nil, err
			}
			if prev == nil || prev.ev.Sequence()+1 != cur.ev.Sequence() {
				return out[i:], nil // evicted under us: a short read
			}
			cur = prev
		}
		return out, nil
	}
	start, err := b.locate(ctx, subj, first, last, from)
	if err != nil {
		return nil, err
	}
	msgs, err := b.batch(ctx, subj, start, limit)
	if err != nil {
		return nil, err
	}
	out := make([]*engine.Event, 0, len(msgs))
	for _, sm := range msgs {
		if sm.ev.Epoch() != last.ev.Epoch() || sm.ev.Sequence() != from+uint64(len(out)) {
			break // a hole: the caller sees a short read and reports it
		}
		out = append(out, sm.ev)
	}
	return out, nil
}

// locate finds the stream sequence of the topic's event with sequence
// want, by bisecting the stream between the oldest and the newest message
// (both sequences grow together).
func (b *Broker) locate(ctx context.Context, subj string, first, last *stored, want uint64) (uint64, error) {
	if first.ev.Sequence() >= want {
		return first.streamSeq, nil
	}
	lo, hi := first.streamSeq, last.streamSeq // the event lies after lo, at or before hi
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		sm, err := b.nextBySubject(ctx, subj, mid)
		if err != nil {
			return 0, err
		}
		if sm == nil { // cannot be: the newest message lies at or after mid
			return 0, fmt.Errorf("topic %s: no message after stream sequence %d", subj, mid)
		}
		switch s := sm.ev.Sequence(); {
		case s > want:
			hi = mid
		case s == want:
			return sm.streamSeq, nil
		default:
			lo = sm.streamSeq
		}
	}
	return hi, nil
}

var _ engine.Broker = (*Broker)(nil)
