// Package engine is the fan-out core. A Hub keeps the topics this node's
// connections hold, applies numbered events to them in order and queues each
// event's shared frame bytes to every subscriber's Outbox, which conflates
// market data and writes many frames per writev. Numbering and storage of
// reliable topics (private streams, signals) belong to a Broker: the
// in-memory one here, or the NATS JetStream one of a cluster. The engine
// knows nothing of feeds, HTTP or WebSocket libraries.
//
// # Lock order
//
// Locks are only ever taken in this order, and none is held across a call
// into a Broker or the gateway:
//
//	memoryStream.mu → shard.mu → topic.mu → Outbox.mu → delayedFlushes.mu
//	                                                   → intervalShard.mu
//	                                                   → writers.mu
//
// Outbox.mu guards the queue and the delivery state each subscription keeps
// there (Subscription.pendGen/pendIdx, and the fields of Subscription.ivl:
// when an interval's next update is due, and the update held back); the interval timers and the delay timer take their own
// lock with an outbox's held, and drop theirs before locking an outbox; so
// does the writers' ready list (an outbox joins it under its own lock, and a
// writer takes outboxes from it before locking any).
//
// A fan-out writes its first connections itself (see writers) with the
// topic locked, and with a MemoryBroker's stream too; such a write never
// waits (a socket that would block goes to a flusher goroutine), and the
// one call it may make out of the engine — OnCloseSent's callback, when the
// write ends with a close frame — takes only the gateway session's own
// lock, which is never held while a hub lock is taken.
//
// MemoryBroker delivers an event (Hub.Apply: shard.mu, then topic.mu) with
// its stream locked, which is what keeps a topic's events in order. Hub
// methods that read a Broker (Subscribe, a catch-up refill, a gap backfill)
// do so with no lock held and then lock the topic to apply what they read.
package engine

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"

	"github.com/marketcast/marketcast/protocol"
)

// Mode says how a topic's messages may be treated on the way to a slow
// subscriber.
type Mode uint8

const (
	// Conflated topics carry state (ticks, books, forming bars): a newer
	// message replaces an older one still waiting in a subscriber's queue.
	// A message marked Final (a closed bar) is never replaced. The hub
	// numbers them itself, per node.
	Conflated Mode = iota
	// Reliable topics carry events (orders, positions, account, alerts,
	// signals): never conflated, never dropped, numbered and stored by the
	// Broker for resume.
	Reliable
)

func (m Mode) String() string {
	if m == Reliable {
		return "reliable"
	}
	return "conflated"
}

// Message is what a producer publishes. Data must be a valid, compact JSON
// object; the engine does not re-validate it on the hot path.
type Message struct {
	Topic      string // registry key, e.g. "tick:SHFE.rb2405" or "orders:42"
	Mode       Mode
	Type       string // envelope "type", e.g. "market_data"
	Channel    string // envelope "channel", e.g. "tick"
	Symbol     string // envelope "symbol" (market topics)
	StrategyID string // envelope "strategy_id" (signal topics)
	Broadcast  bool   // envelope "broadcast": a notice to every user
	Data       []byte
	Final      bool // last message of a bar: never conflated away
	// Order, on a conflated topic, is the message's place in time (a bar's
	// start, Unix nanoseconds), 0 when it has none. A final message closes
	// its place: a message of the same place or an earlier one is stale
	// once a subscription has it, and the topic keeps one final message
	// per place, in order.
	Order int64
	// IdempotencyKey, when set, stores a retried publish once: the memory
	// broker while the first is in the topic's history, the cluster broker
	// within its duplicates window.
	IdempotencyKey string
}

// Position is a place in a reliable topic's stream: a sequence within an
// epoch. An epoch names one unbroken run of a topic's sequence; a topic that
// is recreated (a restart with in-memory history, a forgotten idle topic, a
// lost store) starts a new epoch at sequence 1.
type Position struct {
	Seq   uint64
	Epoch string
}

var (
	// ErrMissingTopic is returned for a message without a topic key.
	ErrMissingTopic = errors.New("engine: message has no topic")
	// ErrModeMismatch is returned when a topic is used with another mode
	// than the one it was created with.
	ErrModeMismatch = errors.New("engine: topic mode mismatch")
	// ErrUnavailable wraps a broker failure: the publish was not stored and
	// may be retried.
	ErrUnavailable = errors.New("engine: broker unavailable")
	// ErrOutcomeUnknown is matched by an OutcomeUnknown error: the publish
	// may or may not have been stored.
	ErrOutcomeUnknown = errors.New("engine: publish outcome unknown")
)

// OutcomeUnknown is the error of a publish that reached the broker's store
// but whose answer was lost (the store froze, its leader died) and could
// not be learned in time: it may have been stored, or may still be. A
// retry with Key as its idempotency key is stored at most once.
type OutcomeUnknown struct {
	Key   string // the idempotency key the publish was made with
	Cause error
}

func (e *OutcomeUnknown) Error() string {
	return fmt.Sprintf("%v (%v): it may have been stored; retry with idempotency key %q to store it at most once",
		ErrOutcomeUnknown, e.Cause, e.Key)
}

// Is makes errors.Is(err, ErrOutcomeUnknown) hold.
func (e *OutcomeUnknown) Is(target error) bool { return target == ErrOutcomeUnknown }

// Unwrap is the cause.
func (e *OutcomeUnknown) Unwrap() error { return e.Cause }

// NewEpoch returns a fresh epoch: 12 random characters, so two runs of a
// topic never share one.
func NewEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on Linux
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])[:12]
}

// ModeOf is the mode of a channel's topics.
func ModeOf(c *protocol.Channel) Mode {
	if c.Reliable() {
		return Reliable
	}
	return Conflated
}

// FromPublication is the engine message of a validated publication: the
// one conversion the publish API and every feed share.
func FromPublication(p *protocol.Publication) Message {
	m := Message{Topic: p.Topic(), Mode: ModeOf(p.Channel), Type: p.Type, Channel: p.Channel.Push, Data: p.Data,
		Final: p.Final, IdempotencyKey: p.IdempotencyKey}
	switch p.Channel.Kind {
	case protocol.KindMarket:
		m.Symbol = p.ID
		if p.Channel.Kline() && !p.Time.IsZero() {
			m.Order = p.Time.UnixNano()
		}
	case protocol.KindSignals:
		m.StrategyID = p.ID
	default:
		m.Broadcast = p.Broadcast()
	}
	return m
}
