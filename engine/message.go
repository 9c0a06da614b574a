// Package engine is the fan-out core: a lock-sharded registry of topics,
// each with a sequence, its latest event and (for reliable topics) a bounded
// history; and per-connection subscribers with bounded, conflating outbound
// queues flushed many frames per write. It knows nothing of feeds, HTTP or
// WebSocket libraries: it turns messages into shared frame bytes and writes
// them to a net.Conn.
package engine

import (
	"errors"
	"time"
)

// Mode says how a topic's messages may be treated on the way to a slow
// subscriber.
type Mode uint8

const (
	// Conflated topics carry state (ticks, books, forming bars): a newer
	// message replaces an older one still waiting in a subscriber's queue.
	// A message marked Final (a closed bar) is never replaced.
	Conflated Mode = iota
	// Reliable topics carry events (orders, positions, account, alerts,
	// signals): never conflated, never dropped, kept in history for resume.
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
	Data       []byte
	Final      bool // last message of a bar: never conflated away
}

// Published reports where a message landed.
type Published struct {
	Topic     string
	Sequence  uint64
	Timestamp time.Time
}

var (
	// ErrMissingTopic is returned for a message without a topic key.
	ErrMissingTopic = errors.New("engine: message has no topic")
	// ErrModeMismatch is returned when a topic is used with another mode
	// than the one it was created with.
	ErrModeMismatch = errors.New("engine: topic mode mismatch")
)
