package engine

import (
	"context"
	"time"
)

// Broker numbers and stores the events of reliable topics, and tells every
// node that watches a topic about the events published to it anywhere. The
// in-memory broker (MemoryBroker) serves one node; engine/natsbroker serves
// a cluster from NATS JetStream. The hub owns local fan-out only.
type Broker interface {
	// SetHandler registers where events go. NewHub calls it once, before
	// anything else.
	SetHandler(EventHandler)
	// Publish stores m as the next event of its topic, assigning the
	// sequence (and, for the first event of a run, a new epoch) atomically
	// with storing it, hands the event to the handler, and returns it. An
	// error wrapping ErrUnavailable means nothing was stored, nor ever
	// will be; ErrOutcomeUnknown (an OutcomeUnknown) means the store took
	// the message but its answer was lost: it may be stored, once.
	Publish(ctx context.Context, m *Message) (*Event, error)
	// History reads a topic's stream: at most limit events with a sequence
	// greater than after, oldest first and contiguous, within the resume
	// window. limit 0 reads only the stream's state.
	History(ctx context.Context, topic string, after uint64, limit int) (History, error)
	// Watch registers this node's interest in topic: once it returns,
	// every event published to the topic anywhere reaches the handler.
	// Watches are counted; each Watch is ended by one Unwatch.
	Watch(ctx context.Context, topic string) error
	// Unwatch ends one Watch.
	Unwatch(topic string)
}

// EventHandler receives the events of watched topics, in sequence order
// per topic as far as the broker can tell; the hub drops duplicates and
// fills gaps from History.
type EventHandler interface {
	Apply(*Event)
}

// History is a read of a reliable topic's stream.
type History struct {
	// Events are the events read, oldest first.
	Events []*Event
	// Last is the stream's latest event; nil when the topic has no run
	// (nothing was ever published, or it was forgotten).
	Last *Event
	// First is the oldest sequence still held for resume (the history's
	// size and age bound it); 0 when none is.
	First uint64
}

// Head is the stream's position: its last sequence and epoch.
func (h *History) Head() Position {
	if h.Last == nil {
		return Position{}
	}
	return h.Last.Position()
}

// HistoryLimits bound a reliable topic's history. Events beyond any bound
// are forgotten oldest first; a resume from before them answers
// recovered:false.
type HistoryLimits struct {
	Size     int           // events per topic
	TTL      time.Duration // age of an event
	MaxBytes int           // data bytes per topic
}
