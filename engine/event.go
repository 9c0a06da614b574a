package engine

import (
	"sync"
	"time"

	"github.com/marketcast/marketcast/engine/frame"
)

// Event is one numbered message: its topic, sequence, epoch and timestamp
// are fixed. Its frames are built lazily, once per variant, and shared by
// every subscriber that needs that variant. Brokers create events with
// NewEvent; the hub creates the events of conflated topics itself.
type Event struct {
	topic   string
	env     frame.Envelope
	data    []byte
	final   bool
	order   int64  // Message.Order
	idemKey string // the memory broker's: forgotten with the event

	mu       sync.Mutex
	variants []variant
}

type variant struct {
	key uint64
	b   []byte
}

// NewEvent numbers m as sequence seq of epoch at time at.
func NewEvent(m *Message, seq uint64, epoch string, at time.Time) *Event {
	return &Event{
		topic: m.Topic,
		env: frame.Envelope{
			Type:       m.Type,
			Channel:    m.Channel,
			Symbol:     m.Symbol,
			StrategyID: m.StrategyID,
			Broadcast:  m.Broadcast,
			Timestamp:  at,
			Sequence:   seq,
			Epoch:      epoch,
		},
		data:  m.Data,
		final: m.Final,
		order: m.Order,
	}
}

// Topic is the event's topic key.
func (e *Event) Topic() string { return e.topic }

// Sequence is the event's per-topic sequence number.
func (e *Event) Sequence() uint64 { return e.env.Sequence }

// Epoch is the run of the topic's sequence the event belongs to ("" for
// conflated topics, which are numbered per node).
func (e *Event) Epoch() string { return e.env.Epoch }

// Position is the event's place in its topic's stream.
func (e *Event) Position() Position { return Position{Seq: e.env.Sequence, Epoch: e.env.Epoch} }

// Time is when the event was accepted (the envelope's timestamp).
func (e *Event) Time() time.Time { return e.env.Timestamp }

// Message returns the message the event numbers. Its Data is shared: do not
// modify it.
func (e *Event) Message() Message {
	return Message{Topic: e.topic, Type: e.env.Type, Channel: e.env.Channel, Symbol: e.env.Symbol,
		StrategyID: e.env.StrategyID, Broadcast: e.env.Broadcast, Data: e.data, Final: e.final, Order: e.order}
}

// Size is the event's data size in bytes, for history bounds.
func (e *Event) Size() int { return len(e.data) + 128 }

func variantKey(p *frame.Projection, deflate, snapshot bool) uint64 {
	var k uint64
	if p != nil {
		k = uint64(p.ID) << 2
	}
	if deflate {
		k |= 2
	}
	if snapshot {
		k |= 1
	}
	return k
}

// frame returns the WebSocket frame for one variant, building it on first
// use. Payloads under threshold bytes stay uncompressed even for deflate
// peers.
func (e *Event) frame(m *hubMetrics, threshold int, p *frame.Projection, deflate, snapshot bool) []byte {
	key := variantKey(p, deflate, snapshot)
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, v := range e.variants {
		if v.key == key {
			return v.b
		}
	}
	if !deflate {
		return e.plainLocked(m, key, p, snapshot)
	}
	plain := e.plainLocked(m, variantKey(p, false, snapshot), p, snapshot)
	payload := plain[len(plain)-payloadLen(plain):]
	b := plain
	if len(payload) >= threshold {
		b = frame.Deflated(payload)
		m.deflateIn.Add(len(payload))
		m.deflateOut.Add(len(b))
	}
	e.variants = append(e.variants, variant{key, b})
	return b
}

// plainLocked returns the uncompressed frame for key, building and caching
// it. e.mu is held on entry.
func (e *Event) plainLocked(m *hubMetrics, key uint64, p *frame.Projection, snapshot bool) []byte {
	for _, v := range e.variants {
		if v.key == key {
			return v.b
		}
	}
	data := frame.Project(e.data, p)
	buf := make([]byte, frame.HeaderRoom, frame.HeaderRoom+len(data)+192)
	buf = frame.AppendEnvelope(buf, &e.env, data, snapshot)
	b := frame.Seal(buf, false)
	e.variants = append(e.variants, variant{key, b})
	m.encoded.Inc()
	return b
}

// payloadLen reads the payload length back from a server frame header.
func payloadLen(f []byte) int {
	switch n := f[1] & 0x7f; n {
	case 126:
		return int(f[2])<<8 | int(f[3])
	case 127:
		var v int
		for _, c := range f[2:10] {
			v = v<<8 | int(c)
		}
		return v
	default:
		return int(n)
	}
}
