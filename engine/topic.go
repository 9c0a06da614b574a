package engine

import (
	"sync"
	"time"

	"github.com/marketcast/marketcast/engine/frame"
)

// topic is one stream: a symbol's ticks, a user's orders. mu serializes the
// topic's publishes and subscribes, so every subscriber sees events in
// sequence order and a subscribe's snapshot or replay joins the live stream
// with no gap and no duplicate. Different topics never share a lock.
type topic struct {
	key  string
	mode Mode

	mu      sync.Mutex
	seq     uint64
	last    *Event
	history *history        // reliable topics only
	subs    []*Subscription // guarded by mu, like everything above
	dead    bool            // removed from the registry by Sweep
}

func newTopic(key string, mode Mode, ttl time.Duration) *topic {
	t := &topic{key: key, mode: mode}
	if mode == Reliable {
		t.history = newHistory(ttl)
	}
	return t
}

func frameEnvelope(m *Message, seq uint64, now time.Time) frame.Envelope {
	return frame.Envelope{
		Type:       m.Type,
		Channel:    m.Channel,
		Symbol:     m.Symbol,
		StrategyID: m.StrategyID,
		Timestamp:  now,
		Sequence:   seq,
	}
}

// publish records and fans out m. It returns nil if the topic was swept
// meanwhile; the caller then looks the topic up again.
func (t *topic) publish(h *Hub, m *Message) *Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dead {
		return nil
	}
	t.seq++
	ev := &Event{
		env:   frameEnvelope(m, t.seq, h.now()),
		data:  m.Data,
		final: m.Final,
		hub:   h,
	}
	t.last = ev
	if t.history != nil {
		t.history.add(ev, h.cfg.HistorySize)
		t.history.expire(ev.env.Timestamp)
	}
	deliverAll(t.subs, ev, t.mode)
	return ev
}

// deliverAll queues ev to each subscription. Subscribers that share a frame
// variant share its bytes; the last variant used is remembered so the common
// case (everyone wants the same bytes) costs no lookup.
func deliverAll(subs []*Subscription, ev *Event, mode Mode) {
	var (
		lastKey uint64 = ^uint64(0)
		lastB   []byte
	)
	for _, sub := range subs {
		key := variantKey(sub.proj, sub.s.deflate, false)
		if key != lastKey {
			lastKey, lastB = key, ev.Frame(sub.proj, sub.s.deflate, false)
		}
		sub.s.enqueue(sub, lastB, mode, ev)
	}
}

// SubscribeOptions say what a new subscription receives before live events.
type SubscribeOptions struct {
	// Snapshot queues the topic's latest event, marked as a snapshot.
	Snapshot bool
	// Since, when set on a reliable topic, replays every event after it.
	Since *uint64
	// Ready is called with the topic locked, after resume has been decided
	// and before anything of the topic is queued, so the caller can queue
	// its answer first. recovered reports whether a Since replay is
	// complete.
	Ready func(recovered bool)
}

// Subscribe adds s to the topic key. The topic is created when it does not
// exist yet.
func (h *Hub) Subscribe(s *Subscriber, key string, mode Mode, proj *frame.Projection, opts SubscribeOptions) (*Subscription, error) {
	var t *topic
	for {
		var err error
		if t, err = h.topic(key, mode); err != nil {
			return nil, err
		}
		t.mu.Lock()
		if !t.dead {
			break
		}
		t.mu.Unlock() // swept while we looked: find its successor
	}
	defer t.mu.Unlock()
	sub := &Subscription{s: s, t: t, proj: proj, pendIdx: -1, idx: -1}

	var replay []*Event
	recovered, snapshot := false, false
	if opts.Since != nil && t.history != nil {
		replay, recovered = t.history.after(*opts.Since, t.seq, h.now())
		h.metrics.resumes.Inc()
		if !recovered {
			h.metrics.resumeMisses.Inc()
		}
	}
	if !recovered && opts.Snapshot && t.last != nil {
		replay, snapshot = []*Event{t.last}, true
	}
	if opts.Ready != nil {
		opts.Ready(recovered)
	}
	for _, ev := range replay {
		// Replayed events keep their original envelope; a snapshot is marked.
		s.enqueueReplay(sub, ev.Frame(proj, s.deflate, snapshot), ev)
	}
	sub.idx = len(t.subs)
	t.subs = append(t.subs, sub)
	h.metrics.subscriptions.Inc()
	return sub, nil
}

// Unsubscribe removes sub from its topic in O(1): the last subscriber takes
// its slot (order does not matter). It is safe to call twice.
func (h *Hub) Unsubscribe(sub *Subscription) {
	t := sub.t
	t.mu.Lock()
	defer t.mu.Unlock()
	i := sub.idx
	if i < 0 || i >= len(t.subs) || t.subs[i] != sub {
		return
	}
	last := len(t.subs) - 1
	t.subs[i] = t.subs[last]
	t.subs[i].idx = i
	t.subs[last] = nil
	t.subs = t.subs[:last]
	sub.idx = -1
	h.metrics.subscriptions.Dec()
}
