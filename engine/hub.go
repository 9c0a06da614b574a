package engine

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Config tunes a Hub. configs/marketcast.yaml holds every default
// (configs.Default().Engine() builds this from it); a zero field is invalid
// and NewHub panics naming it.
type Config struct {
	// Shards is the number of registry shards.
	Shards int
	// DeflateThreshold is the payload size below which frames go
	// uncompressed even to deflate peers.
	DeflateThreshold int
	// MaxPendingBytes bounds a connection's queued frames that cannot be
	// conflated (reliable events, closed bars, answers); beyond it the
	// connection is closed as a slow consumer (4008). Market data never
	// counts: it conflates to one pending frame per topic.
	MaxPendingBytes int
	// WriteTimeout is how long a peer may accept none of the bytes the
	// flusher has to write before it is given up on (4008, with a close
	// frame when one can still be written). A slow peer that keeps reading
	// is never cut, however long a batch takes.
	WriteTimeout time.Duration
	// MaxUnsentBytes caps what the kernel holds unsent per TCP connection
	// (TCP_NOTSENT_LOWAT) and what one write puts into it, so a slow
	// reader's backlog stays in the outbox, where it is conflated; 0 leaves
	// the kernel's default.
	MaxUnsentBytes int
	// FlushDelay holds a connection's first frame this long before writing,
	// so frames arriving meanwhile share its write. 0 writes at once.
	FlushDelay time.Duration
	// Linger is how long a reliable topic with no subscriber stays watched
	// before the hub forgets it, so a reconnect storm does not churn broker
	// interest.
	Linger time.Duration
	// ReplayPage is how many events a resume reads from the broker at a
	// time; a resume streams history page by page as its socket drains.
	ReplayPage int
	// BarHistory is how many final messages (closed bars) a conflated
	// topic keeps for subscribers that ask for history; 0 keeps none.
	BarHistory int
}

func (c *Config) check() {
	switch {
	case c.Shards <= 0:
		panic("engine: Config.Shards must be > 0")
	case c.DeflateThreshold < 0:
		panic("engine: Config.DeflateThreshold must be >= 0")
	case c.MaxPendingBytes <= 0:
		panic("engine: Config.MaxPendingBytes must be > 0")
	case c.WriteTimeout <= 0:
		panic("engine: Config.WriteTimeout must be > 0")
	case c.MaxUnsentBytes < 0:
		panic("engine: Config.MaxUnsentBytes must be >= 0")
	case c.FlushDelay < 0:
		panic("engine: Config.FlushDelay must be >= 0")
	case c.Linger < 0:
		panic("engine: Config.Linger must be >= 0")
	case c.ReplayPage <= 0:
		panic("engine: Config.ReplayPage must be > 0")
	case c.BarHistory < 0:
		panic("engine: Config.BarHistory must be >= 0")
	}
}

// Hub is the registry of the topics this node's connections hold. It is
// safe for concurrent use.
type Hub struct {
	cfg       Config
	broker    Broker
	seed      maphash.Seed
	shards    []shard
	metrics   *hubMetrics
	now       func() time.Time
	delayed   delayedFlushes
	writers   writers
	intervals intervalTimers
}

type shard struct {
	mu     sync.RWMutex
	topics map[string]*topic
}

// NewHub returns an empty hub whose reliable topics live in broker.
func NewHub(cfg Config, broker Broker) *Hub {
	cfg.check()
	h := &Hub{
		cfg:     cfg,
		broker:  broker,
		seed:    maphash.MakeSeed(),
		shards:  make([]shard, cfg.Shards),
		metrics: newHubMetrics(),
		now:     time.Now,
	}
	h.delayed.delay = cfg.FlushDelay
	h.writers.init(h.metrics)
	h.intervals.init(func() time.Time { return h.now() })
	for i := range h.shards {
		h.shards[i].topics = make(map[string]*topic)
	}
	broker.SetHandler(h)
	return h
}

// Broker is the hub's broker.
func (h *Hub) Broker() Broker { return h.broker }

// Metrics is the hub's metric set, for the gateway's /metrics endpoint.
func (h *Hub) Metrics() *metrics.Set { return h.metrics.set }

func (h *Hub) shardOf(key string) *shard {
	return &h.shards[maphash.String(h.seed, key)%uint64(len(h.shards))]
}

// lookup returns the topic for key, or nil.
func (h *Hub) lookup(key string) *topic {
	sh := h.shardOf(key)
	sh.mu.RLock()
	t := sh.topics[key]
	sh.mu.RUnlock()
	return t
}

// topic finds or creates the topic for key and returns it locked.
func (h *Hub) topic(key string, mode Mode) (*topic, error) {
	for {
		t := h.lookup(key)
		if t == nil {
			sh := h.shardOf(key)
			sh.mu.Lock()
			if t = sh.topics[key]; t == nil {
				t = &topic{key: key, mode: mode, idleSince: h.now()}
				sh.topics[key] = t
				h.metrics.topics.Inc()
			}
			sh.mu.Unlock()
		}
		if t.mode != mode {
			return nil, ErrModeMismatch
		}
		t.mu.Lock()
		if !t.dead {
			return t, nil
		}
		t.mu.Unlock() // swept while we looked: find its successor
	}
}

// Publish accepts m. A conflated message is numbered here, per node, and
// queued to every subscriber; a reliable one goes to the broker, which
// numbers and stores it and hands it back (Apply) for delivery. The event
// tells the caller its sequence, epoch and time.
func (h *Hub) Publish(ctx context.Context, m Message) (*Event, error) {
	return h.publish(ctx, m, nil)
}

func (h *Hub) publish(ctx context.Context, m Message, batch *Batch) (*Event, error) {
	if m.Topic == "" {
		return nil, ErrMissingTopic
	}
	if m.Mode == Reliable {
		rm := m // only this copy escapes to the broker: a conflated publish allocates no Message
		ev, err := h.broker.Publish(ctx, &rm)
		if err != nil {
			h.metrics.publishErrors.Inc()
			return nil, err
		}
		h.metrics.published.Inc()
		return ev, nil
	}
	t, err := h.topic(m.Topic, Conflated)
	if err != nil {
		return nil, err
	}
	t.seq++
	ev := NewEvent(&m, t.seq, "", h.now())
	t.last = ev
	if ev.final && h.cfg.BarHistory > 0 {
		t.finals.add(ev, h.cfg.BarHistory)
	}
	h.deliverLocked(t, ev, batch)
	t.mu.Unlock()
	h.metrics.published.Inc()
	return ev, nil
}

// Batch publishes several conflated messages that are due together (a
// feed's snapshot of many symbols, what one read from NATS brought): each
// connection gets what the batch brings it in one write, when the batch
// ends, instead of one write per message. A batch belongs to one
// goroutine; End must be called.
type Batch struct {
	h    *Hub
	held []*Outbox
}

// NewBatch starts a batch.
func (h *Hub) NewBatch() *Batch { return &Batch{h: h} }

// Publish is Hub.Publish within the batch. Reliable messages are not
// batched: the broker delivers them.
func (b *Batch) Publish(ctx context.Context, m Message) (*Event, error) {
	return b.h.publish(ctx, m, b)
}

// End writes what the batch queued: every connection it touched is
// flushed now.
func (b *Batch) End() {
	for _, o := range b.held {
		o.mu.Lock()
		o.batched = false
		o.kickLocked(true)
		o.mu.Unlock()
	}
	b.held = b.held[:0]
}

// Last returns the latest event of a conflated topic on this node, or nil.
func (h *Hub) Last(key string) *Event {
	t := h.lookup(key)
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last
}

// Finals returns the final messages (closed bars) a conflated topic keeps,
// oldest first.
func (h *Hub) Finals(key string) []*Event {
	t := h.lookup(key)
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.finals.list(0)
}

// MergeFinals puts final messages from elsewhere (closed bars from the
// cluster's store, for a node that started late) among those the topic
// keeps, by their Order; one from elsewhere replaces the topic's own of the
// same place (a store's complete bar over this node's partial one). The
// topic is created if needed.
func (h *Hub) MergeFinals(key string, from []*Event) error {
	t, err := h.topic(key, Conflated)
	if err != nil {
		return err
	}
	defer t.mu.Unlock()
	t.finals.merge(from, nil, h.cfg.BarHistory)
	return nil
}

// Sweep forgets reliable topics no subscription has held for the linger
// time, ending the broker watch each had. Conflated topics stay: their
// latest state is what a new subscriber is sent. It returns how many topics
// it removed.
func (h *Hub) Sweep(now time.Time) int {
	var gone []string // watched topics removed
	removed := 0
	cutoff := now.Add(-h.cfg.Linger)
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for key, t := range sh.topics {
			if t.mode != Reliable {
				continue
			}
			t.mu.Lock()
			if len(t.subs) == 0 && t.starting == 0 && !t.filling && t.idleSince.Before(cutoff) {
				t.dead = true
				delete(sh.topics, key)
				removed++
				if t.watched {
					gone = append(gone, key)
				}
			}
			t.mu.Unlock()
		}
		sh.mu.Unlock()
	}
	for _, key := range gone { // no lock held: the broker may take its own
		h.broker.Unwatch(key)
	}
	if removed > 0 {
		h.metrics.topics.Add(float64(-removed))
		h.metrics.swept.Add(removed)
	}
	return removed
}

// RunSweeper calls Sweep every interval until ctx ends.
func (h *Hub) RunSweeper(ctx context.Context, interval time.Duration) {
	Every(ctx, interval, func(now time.Time) { h.Sweep(now) })
}

// Every calls f with the time every interval until ctx ends.
func Every(ctx context.Context, interval time.Duration, f func(now time.Time)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			f(now)
		}
	}
}
