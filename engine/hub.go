package engine

import (
	"hash/maphash"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Config tunes a Hub. The zero value of each field means its documented
// default.
type Config struct {
	// Shards is the number of registry shards. Zero means 64.
	Shards int
	// HistorySize is how many events a reliable topic keeps for resume.
	// Zero means 10000.
	HistorySize int
	// HistoryTTL is how long a reliable topic keeps an event. Zero means 5m.
	HistoryTTL time.Duration
	// DeflateThreshold is the payload size below which frames go
	// uncompressed even to deflate peers. Zero means 512 bytes.
	DeflateThreshold int
	// MaxPendingBytes bounds a subscriber's queued frames that cannot be
	// conflated; beyond it the subscriber is closed as a slow consumer.
	// Zero means 4 MiB.
	MaxPendingBytes int
	// WriteTimeout bounds one socket write; a peer that accepts nothing
	// for this long is closed. Zero means 5s.
	WriteTimeout time.Duration
	// FlushDelay holds a subscriber's first frame this long before writing,
	// so frames arriving meanwhile share its write. Zero writes at once.
	// Each write costs a syscall of several microseconds, so at high
	// message rates a delay of a millisecond or two multiplies throughput
	// per CPU; it adds at most the delay to latency.
	FlushDelay time.Duration
}

func (c *Config) setDefaults() {
	if c.Shards <= 0 {
		c.Shards = 64
	}
	if c.HistorySize <= 0 {
		c.HistorySize = 10000
	}
	if c.HistoryTTL <= 0 {
		c.HistoryTTL = 5 * time.Minute
	}
	if c.DeflateThreshold <= 0 {
		c.DeflateThreshold = 512
	}
	if c.MaxPendingBytes <= 0 {
		c.MaxPendingBytes = 4 << 20
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 5 * time.Second
	}
}

// Hub is the topic registry. It is safe for concurrent use.
type Hub struct {
	cfg     Config
	seed    maphash.Seed
	shards  []shard
	symbols sync.Map // symbol → struct{}: the market universe
	metrics *hubMetrics
	now     func() time.Time
	delayed delayedFlushes
}

type shard struct {
	mu     sync.RWMutex
	topics map[string]*topic
}

// NewHub returns an empty hub.
func NewHub(cfg Config) *Hub {
	cfg.setDefaults()
	h := &Hub{
		cfg:     cfg,
		seed:    maphash.MakeSeed(),
		shards:  make([]shard, cfg.Shards),
		metrics: newHubMetrics(),
		now:     time.Now,
	}
	h.delayed.delay = cfg.FlushDelay
	for i := range h.shards {
		h.shards[i].topics = make(map[string]*topic)
	}
	return h
}

// Metrics is the hub's metric set, for the gateway's /metrics endpoint.
func (h *Hub) Metrics() *metrics.Set { return h.metrics.set }

// AddSymbol adds a symbol to the market universe.
func (h *Hub) AddSymbol(symbol string) { h.symbols.LoadOrStore(symbol, struct{}{}) }

// HasSymbol reports whether the market universe knows symbol.
func (h *Hub) HasSymbol(symbol string) bool {
	_, ok := h.symbols.Load(symbol)
	return ok
}

// Symbols returns the market universe, unordered.
func (h *Hub) Symbols() []string {
	var out []string
	h.symbols.Range(func(k, _ any) bool {
		out = append(out, k.(string))
		return true
	})
	return out
}

func (h *Hub) shardOf(key string) *shard {
	return &h.shards[maphash.String(h.seed, key)%uint64(len(h.shards))]
}

// topic finds or creates the topic for key.
func (h *Hub) topic(key string, mode Mode) (*topic, error) {
	sh := h.shardOf(key)
	sh.mu.RLock()
	t := sh.topics[key]
	sh.mu.RUnlock()
	if t == nil {
		sh.mu.Lock()
		if t = sh.topics[key]; t == nil {
			t = newTopic(key, mode, h.cfg.HistoryTTL)
			sh.topics[key] = t
			h.metrics.topics.Inc()
		}
		sh.mu.Unlock()
	}
	if t.mode != mode {
		return nil, ErrModeMismatch
	}
	return t, nil
}

// Publish accepts m: it assigns the topic's next sequence and the
// timestamp, records the event as the topic's latest (and in history for
// reliable topics), and queues it to every subscriber.
func (h *Hub) Publish(m Message) (Published, error) {
	if m.Topic == "" {
		return Published{}, ErrMissingTopic
	}
	var ev *Event
	for ev == nil { // nil: the topic was swept between lookup and lock
		t, err := h.topic(m.Topic, m.Mode)
		if err != nil {
			return Published{}, err
		}
		ev = t.publish(h, &m)
	}
	h.metrics.published.Inc()
	return Published{Topic: m.Topic, Sequence: ev.env.Sequence, Timestamp: ev.env.Timestamp}, nil
}

// Last returns the latest event of a topic, or nil.
func (h *Hub) Last(key string) *Event {
	sh := h.shardOf(key)
	sh.mu.RLock()
	t := sh.topics[key]
	sh.mu.RUnlock()
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last
}

// TopicKeys returns the keys of every topic whose key starts with prefix.
func (h *Hub) TopicKeys(prefix string) []string {
	var out []string
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		for k := range sh.topics {
			if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
				out = append(out, k)
			}
		}
		sh.mu.RUnlock()
	}
	return out
}
