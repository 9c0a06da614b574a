package engine

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// MemoryBroker is the default Broker: each reliable topic's sequence,
// epoch and history live in this process. A restart loses them, so every
// topic starts a new epoch and a resume from before the restart answers
// recovered:false. It needs no other service.
type MemoryBroker struct {
	limits  HistoryLimits
	now     func() time.Time
	handler EventHandler
	seed    maphash.Seed
	shards  [64]memoryShard
}

type memoryShard struct {
	mu      sync.Mutex
	streams map[string]*memoryStream
}

// memoryStream is one topic's run: its epoch, last sequence and history.
type memoryStream struct {
	mu       sync.Mutex
	epoch    string // "" until the first publish
	seq      uint64
	last     *Event
	ring     []*Event // history, oldest at head
	head, n  int
	bytes    int
	watchers int
	keys     map[string]*Event // idempotency keys of events still in history
	dead     bool              // forgotten by Sweep; look the topic up again
}

// NewMemoryBroker returns an empty in-memory broker.
func NewMemoryBroker(limits HistoryLimits) *MemoryBroker {
	b := &MemoryBroker{limits: limits, now: time.Now, seed: maphash.MakeSeed()}
	for i := range b.shards {
		b.shards[i].streams = make(map[string]*memoryStream)
	}
	return b
}

// SetHandler implements Broker.
func (b *MemoryBroker) SetHandler(h EventHandler) { b.handler = h }

// SetClock replaces the broker's clock (time.Now), which stamps events and
// ages history: tests move it forward instead of waiting. Call it before
// anything is published.
func (b *MemoryBroker) SetClock(now func() time.Time) { b.now = now }

// Watching reports whether some Watch of topic has not been ended.
func (b *MemoryBroker) Watching(topic string) bool {
	st := b.stream(topic, false)
	if st == nil {
		return false
	}
	defer st.mu.Unlock()
	return st.watchers > 0
}

func (b *MemoryBroker) shard(topic string) *memoryShard {
	return &b.shards[maphash.String(b.seed, topic)%uint64(len(b.shards))]
}

// stream returns the topic's stream locked, creating it if create is set;
// nil if it does not exist.
func (b *MemoryBroker) stream(topic string, create bool) *memoryStream {
	sh := b.shard(topic)
	for {
		sh.mu.Lock()
		st := sh.streams[topic]
		if st == nil && create {
			st = &memoryStream{}
			sh.streams[topic] = st
		}
		sh.mu.Unlock()
		if st == nil {
			return nil
		}
		st.mu.Lock()
		if !st.dead {
			return st
		}
		st.mu.Unlock() // swept while we looked: find its successor
	}
}

// Publish implements Broker. The handler runs with the stream locked, so a
// topic's events reach the hub in sequence order.
func (b *MemoryBroker) Publish(_ context.Context, m *Message) (*Event, error) {
	st := b.stream(m.Topic, true)
	defer st.mu.Unlock()
	if ev := st.keys[m.IdempotencyKey]; ev != nil && m.IdempotencyKey != "" {
		return ev, nil // a retry of a publish already stored
	}
	if st.epoch == "" {
		st.epoch = NewEpoch()
	}
	st.seq++
	ev := NewEvent(m, st.seq, st.epoch, b.now())
	st.last = ev
	if m.IdempotencyKey != "" {
		if st.keys == nil {
			st.keys = make(map[string]*Event)
		}
		st.keys[m.IdempotencyKey] = ev
		ev.idemKey = m.IdempotencyKey
	}
	st.add(ev, b.limits)
	st.expire(ev.Time(), b.limits.TTL)
	if b.handler != nil {
		b.handler.Apply(ev)
	}
	return ev, nil
}

// History implements Broker.
func (b *MemoryBroker) History(_ context.Context, topic string, after uint64, limit int) (History, error) {
	st := b.stream(topic, false)
	if st == nil {
		return History{}, nil
	}
	defer st.mu.Unlock()
	st.expire(b.now(), b.limits.TTL)
	h := History{Last: st.last}
	if st.n > 0 {
		h.First = st.ring[st.head].Sequence()
	}
	if limit <= 0 || st.n == 0 || after >= st.seq {
		return h, nil
	}
	start := 0 // index (from head) of the first event after `after`
	if after >= h.First {
		start = int(after - h.First + 1)
	}
	end := min(st.n, start+limit)
	h.Events = make([]*Event, 0, end-start)
	for i := start; i < end; i++ {
		h.Events = append(h.Events, st.ring[(st.head+i)%len(st.ring)])
	}
	return h, nil
}

// Watch implements Broker; the memory broker only counts watchers, so that
// Sweep never forgets a topic someone holds.
func (b *MemoryBroker) Watch(_ context.Context, topic string) error {
	st := b.stream(topic, true)
	st.watchers++
	st.mu.Unlock()
	return nil
}

// Unwatch implements Broker.
func (b *MemoryBroker) Unwatch(topic string) {
	if st := b.stream(topic, false); st != nil {
		st.watchers--
		st.mu.Unlock()
	}
}

// add appends e to the history ring, evicting the oldest events beyond the
// size and byte limits. The ring grows by doubling so a quiet topic holds
// little memory.
func (st *memoryStream) add(e *Event, l HistoryLimits) {
	for st.n > 0 && (st.n >= l.Size || st.bytes+e.Size() > l.MaxBytes) {
		st.dropOldest()
	}
	if st.n == len(st.ring) {
		grown := make([]*Event, min(max(2*st.n, 8), l.Size))
		for i := 0; i < st.n; i++ {
			grown[i] = st.ring[(st.head+i)%len(st.ring)]
		}
		st.ring, st.head = grown, 0
	}
	st.ring[(st.head+st.n)%len(st.ring)] = e
	st.n++
	st.bytes += e.Size()
}

func (st *memoryStream) dropOldest() {
	e := st.ring[st.head]
	if e.idemKey != "" {
		delete(st.keys, e.idemKey)
	}
	st.ring[st.head] = nil
	st.head = (st.head + 1) % len(st.ring)
	st.n--
	st.bytes -= e.Size()
}

// expire forgets events older than ttl.
func (st *memoryStream) expire(now time.Time, ttl time.Duration) {
	cutoff := now.Add(-ttl)
	for st.n > 0 && st.ring[st.head].Time().Before(cutoff) {
		st.dropOldest()
	}
}

// Sweep forgets what no one can still need: it expires history by age and
// removes topics that no node watches, whose history is empty and whose
// last event is older than the history TTL. Without it every user ever
// published to would keep a topic forever. A removed topic's next event
// starts a new epoch at sequence 1, so a client resuming from before is
// told recovered:false. It returns how many topics it removed.
func (b *MemoryBroker) Sweep(now time.Time) int {
	removed := 0
	cutoff := now.Add(-b.limits.TTL)
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		for key, st := range sh.streams {
			st.mu.Lock()
			st.expire(now, b.limits.TTL)
			idle := st.watchers == 0 && st.n == 0 && (st.last == nil || st.last.Time().Before(cutoff))
			if idle {
				st.dead = true
				delete(sh.streams, key)
				removed++
			}
			st.mu.Unlock()
		}
		sh.mu.Unlock()
	}
	return removed
}

// Topics is the number of topics the broker holds.
func (b *MemoryBroker) Topics() int {
	n := 0
	for i := range b.shards {
		b.shards[i].mu.Lock()
		n += len(b.shards[i].streams)
		b.shards[i].mu.Unlock()
	}
	return n
}

// RunSweeper calls Sweep every interval until ctx ends.
func (b *MemoryBroker) RunSweeper(ctx context.Context, interval time.Duration) {
	Every(ctx, interval, func(now time.Time) { b.Sweep(now) })
}

var _ Broker = (*MemoryBroker)(nil)
