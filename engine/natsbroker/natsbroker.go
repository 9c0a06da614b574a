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
// topic whose subject holds no message of marketcast's starts a new run: a
// new epoch at 1.
//
// Every message is signed with the cluster's message key (Mc-Sig): one that
// marketcast did not write, on a private subject or a live one, is skipped
// and counted, never delivered, and never blocks a topic.
//
// Live events reach the nodes that hold the topic through the stream's
// RePublish (mc.priv.> → mc.live.mc.priv.>, sent only after the message is
// stored), on core subscriptions a node opens for the topics its clients
// hold. Core NATS may lose a message on the way; the hub sees the gap in the
// sequence and reads what is missing back from the stream, and a periodic
// check of every watched topic's head catches a lost last message.
//
// The broker knows whether it can publish: a prober checks the stream every
// second (every 100 ms once something failed), makes it again when it is
// gone, and notices when it was replaced (a new creation time, a sequence
// that went back); while it cannot publish, Ready says why and publishes
// fail at once without being sent.
package natsbroker

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
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
	"github.com/marketcast/marketcast/engine/throttle"
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
	// History.MaxBytes does not apply: JetStream bounds bytes per stream
	// (MaxBytes), not per subject.
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
	// Timeout bounds a publish, all its attempts included, and each read
	// from NATS.
	Timeout time.Duration
	// Key signs every message this node writes and checks every one it
	// reads: all nodes of a cluster share it.
	Key []byte
	// Server names the NATS server for logs and errors ("NATS unreachable
	// at <Server>").
	Server string
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
	hdrPrev      = "Mc-Prev"      // stream sequence of the topic's previous message of marketcast's (0: none)
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
	sign    *signer
	heads   *headCache

	mu         sync.Mutex
	watches    map[string]*watch // topic → watch
	live       [workers]chan *nats.Msg
	advisories []*nats.Subscription

	health health

	metrics   brokerMetrics
	rejectLog *throttle.Log // messages marketcast did not write: strangers can send them at will
	done      chan struct{}
	wg        sync.WaitGroup

	testDrop    atomic.Pointer[func(seq uint64) bool] // tests: lose chosen live events
	testAttempt atomic.Pointer[attemptHook]           // tests: lose chosen publish answers
	attempts    atomic.Int64
}

// attemptHook stands between a publish attempt and NATS in tests: it calls
// publish or not, and returns what the attempt is told.
type attemptHook func(n int64, publish func() (*jetstream.PubAck, error)) (*jetstream.PubAck, error)

type watch struct {
	n   int
	sub *nats.Subscription
}

type brokerMetrics struct {
	set                                        *metrics.Set
	published, conflicts, resolved, headChecks *metrics.Counter
	headFailure, undecodable, streamResets     *metrics.Counter
	failed                                     *metric.CounterVec // by outcome: not_stored, unknown
}

// Metrics is the broker's metric set (marketcast_cluster_*).
func (b *Broker) Metrics() *metrics.Set { return b.metrics.set }

func (b *Broker) newMetrics() {
	s := metrics.NewSet()
	b.metrics = brokerMetrics{set: s,
		published:   metric.Counter(s, "marketcast_cluster_published_total", "Private messages this node stored in JetStream"),
		conflicts:   metric.Counter(s, "marketcast_cluster_publish_conflicts_total", "Stores retried because another node took the sequence first"),
		resolved:    metric.Counter(s, "marketcast_cluster_publish_resolved_total", "Publishes whose uncertain attempts (an answer lost, a refusal during a leader change) the node settled from the stream"),
		headChecks:  metric.Counter(s, "marketcast_cluster_head_checks_total", "Head checks of watched topics (catching a lost last message)"),
		headFailure: metric.Counter(s, "marketcast_cluster_head_check_failures_total", "Batches of watched topics whose head check failed (the others go on)"),
		undecodable: metric.Counter(s, "marketcast_cluster_undecodable_total", "Private messages marketcast did not write (no or a forged signature, undecodable), skipped"),
		streamResets: metric.Counter(s, "marketcast_cluster_stream_replaced_total",
			"Times this node found the private stream replaced (made again, restored, back empty)"),
	}
	b.metrics.failed = metric.NewCounterVec(s, "marketcast_cluster_publish_failed_total", "outcome",
		"Private publishes that failed: not_stored (answered 503) or unknown (answered 504: may be stored)", "not_stored", "unknown")
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
	metric.Gauge(s, "marketcast_cluster_ready", "1 while the node can publish to its stream (readyz), else 0", func() float64 {
		if b.Ready() == nil {
			return 1
		}
		return 0
	})
}

// New starts the broker on nc: the live workers, the head check and the
// prober, which makes (or updates) the stream. It does not wait for NATS:
// a node starts while NATS is down, and Ready says when it can publish.
// nc should reconnect forever and fail publishes fast while disconnected
// (nats.MaxReconnects(-1), nats.ReconnectBufSize(-1)); call Reconnected
// and Disconnected from its handlers.
func New(ctx context.Context, nc *nats.Conn, cfg Config, log *slog.Logger) (*Broker, error) {
	if len(cfg.Key) == 0 {
		return nil, fmt.Errorf("natsbroker: no message key")
	}
	if cfg.Server == "" {
		cfg.Server = "the NATS server"
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	b := &Broker{cfg: cfg, nc: nc, js: js, log: log, seed: maphash.MakeSeed(), sign: newSigner(cfg.Key),
		heads: newHeadCache(), watches: make(map[string]*watch), done: make(chan struct{}),
		rejectLog: throttle.New(log, time.Minute, 10)}
	b.health.init("starting: the stream is not yet checked")
	b.health.log = throttle.New(log, time.Minute, 5)
	b.newMetrics()
	for i := range b.live {
		b.live[i] = make(chan *nats.Msg, 4096)
		b.wg.Add(1)
		go b.deliver(b.live[i])
	}
	b.watchAdvisories()
	// One check now, so a node whose NATS is there is ready at once.
	pctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	b.probeOnce(pctx, true)
	cancel()
	b.wg.Add(2)
	go b.checkHeads()
	go b.probe()
	return b, nil
}

// Close stops the workers and ends every watch.
func (b *Broker) Close() {
	close(b.done)
	b.mu.Lock()
	for topic, w := range b.watches {
		_ = w.sub.Unsubscribe()
		delete(b.watches, topic)
	}
	for _, sub := range b.advisories {
		_ = sub.Unsubscribe()
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
	if err := b.Ready(); err != nil {
		return unavailable(err) // NATS is away: no need to wait to learn it
	}
	ch := b.live[maphash.String(b.seed, topic)%workers]
	sub, err := b.nc.ChanSubscribe(livePrefix+subject(topic), ch)
	if err != nil {
		return unavailable(b.explain(err))
	}
	rctx, cancel := b.requestCtx(ctx)
	defer cancel()
	if err := b.nc.FlushWithContext(rctx); err != nil {
		_ = sub.Unsubscribe()
		return unavailable(b.explain(err))
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
		b.heads.forget(subject(topic))
	}
}

// deliver hands republished events to the hub, in the order they came.
// A live message is a hint, not the truth: one marketcast did not write is
// dropped, and one of another run than the stream's head (a replayed old
// message) is replaced by the head itself.
func (b *Broker) deliver(ch chan *nats.Msg) {
	defer b.wg.Done()
	for msg := range ch {
		subj := strings.TrimPrefix(msg.Subject, livePrefix)
		sm, err := b.decode(subj, msg.Header, msg.Data)
		if err != nil {
			b.rejected(msg.Subject, err)
			continue
		}
		if drop := b.testDrop.Load(); drop != nil && (*drop)(sm.ev.Sequence()) {
			continue
		}
		ss, _ := strconv.ParseUint(msg.Header.Get(jetstream.SequenceHeader), 10, 64)
		gen := b.heads.generation()
		cached, ok := b.heads.get(subj, true, time.Now())
		if !ok || cached.epoch != sm.ev.Epoch() {
			// Another run than this node knows, or the first event it sees:
			// ask the stream.
			ctx, cancel := context.WithTimeout(context.Background(), b.cfg.Timeout)
			h, head, err := b.readHead(ctx, subj, true)
			cancel()
			if err != nil || head == nil {
				continue // the head check comes back to it
			}
			b.heads.put(subj, h, gen)
			if head.ev.Epoch() != sm.ev.Epoch() {
				sm = head
			}
		} else if ss > cached.last {
			b.heads.put(subj, head{last: ss, at: ss, seq: sm.ev.Sequence(), epoch: sm.ev.Epoch(), id: msg.Header.Get(jetstream.MsgIDHeader)}, gen)
		}
		b.handler.Apply(sm.ev)
	}
}

// watching reports whether subj's topic is watched here.
func (b *Broker) watching(topic string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.watches[topic] != nil
}

// Reconnected resynchronizes after NATS came back: the stream is checked
// (and made again if the store was wiped), and every watched topic's head
// is checked so events published while this node was away are read back
// in order.
func (b *Broker) Reconnected() {
	b.health.reconnect()
	b.heads.clear()
	b.health.kick()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b.probeOnce(ctx, true)
		b.checkHeadsOnce(ctx)
	}()
}

// Disconnected notes that NATS went away: publishes fail at once until it
// is back.
func (b *Broker) Disconnected() { b.down(fmt.Errorf("NATS unreachable at %s", b.cfg.Server)) }

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

// checkHeadsOnce reads the heads of every watched topic, a batch at a
// time. A batch that fails is logged and the next one tried; a head that
// marketcast did not write is stepped over to the last that it did.
func (b *Broker) checkHeadsOnce(ctx context.Context) {
	b.mu.Lock()
	subjects := make([]string, 0, len(b.watches))
	for topic := range b.watches {
		subjects = append(subjects, subject(topic))
	}
	b.mu.Unlock()
	const perRequest = 1000 // the server answers at most 1024 subjects at once
	failed := 0
	for len(subjects) > 0 && ctx.Err() == nil {
		n := min(len(subjects), perRequest)
		gen := b.heads.generation()
		msgs, err := b.lastOfMany(ctx, subjects[:n])
		subjects = subjects[n:]
		if err != nil {
			failed++
			b.metrics.headFailure.Inc()
			b.log.Warn("head check failed for a batch of topics; going on with the others", "topics", n, "err", err)
			continue
		}
		for _, sm := range msgs {
			if sm.ev == nil {
				// Not marketcast's: the last message that is.
				h, head, err := b.readHead(ctx, sm.subj, true)
				if err != nil || head == nil {
					continue
				}
				b.heads.put(subject(head.ev.Topic()), h, gen)
				sm = head
			}
			b.handler.Apply(sm.ev) // a duplicate is dropped; a gap is filled
		}
	}
	if failed == 0 {
		b.metrics.headChecks.Inc()
	}
}

var _ engine.Broker = (*Broker)(nil)
