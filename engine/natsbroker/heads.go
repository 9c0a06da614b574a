package natsbroker

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// head is where a topic's subject stands in the stream, for publishing.
type head struct {
	// last is the stream sequence of the subject's last message, whatever
	// wrote it: the one a publish must name to be stored next.
	last uint64
	// at is the stream sequence of the last message marketcast wrote (0:
	// none, a new run starts), seq and epoch its place in the run.
	at    uint64
	seq   uint64
	epoch string
	// id is the JetStream message id of the subject's last message.
	id string
	// prev is, for a head read from the stream, the stream sequence of the
	// message of marketcast's before the last (its Mc-Prev).
	prev uint64
}

// headCache remembers topics' heads so a publish need not read them first.
// An entry is used only while it can be trusted: a watched topic's is kept
// fresh by its live events; an unwatched one is trusted until another node
// is seen publishing to the topic (a lost race), after which that topic's
// head is read from the stream for a while. Everything is forgotten at
// once (clear) when the stream may have been replaced. It holds at most
// maxHeads entries.
type headCache struct {
	seed   maphash.Seed
	gen    atomic.Uint64 // bumped by clear: a head read before it is not put
	shards [16]headShard
}

type headShard struct {
	mu        sync.Mutex
	heads     map[string]head
	contended map[string]time.Time // subject → when another node last won a race
}

// maxHeads bounds the cache; contendedFor is how long a topic another node
// published to is read before each publish.
const (
	maxHeads     = 1 << 17
	contendedFor = time.Minute
)

func newHeadCache() *headCache {
	c := &headCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].heads = make(map[string]head)
		c.shards[i].contended = make(map[string]time.Time)
	}
	return c
}

func (c *headCache) shard(subj string) *headShard {
	return &c.shards[maphash.String(c.seed, subj)%uint64(len(c.shards))]
}

// get returns subj's cached head if it can be trusted: always for a
// watched topic, else unless another node won a race on it lately.
func (c *headCache) get(subj string, watched bool, now time.Time) (head, bool) {
	sh := c.shard(subj)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	h, ok := sh.heads[subj]
	if !ok || watched {
		return h, ok
	}
	if at, hot := sh.contended[subj]; hot {
		if now.Sub(at) < contendedFor {
			return head{}, false
		}
		delete(sh.contended, subj)
	}
	return h, true
}

// generation names the cache's current view of the stream; a head read
// under it is put with it.
func (c *headCache) generation() uint64 { return c.gen.Load() }

// put records subj's head, read in generation gen, unless the cache has a
// newer one or was cleared since.
func (c *headCache) put(subj string, h head, gen uint64) {
	sh := c.shard(subj)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if gen != c.gen.Load() {
		return
	}
	if old, ok := sh.heads[subj]; ok && old.last > h.last {
		return
	}
	if len(sh.heads) >= maxHeads/len(c.shards) {
		for k := range sh.heads { // drop one at random: Go's map order
			delete(sh.heads, k)
			break
		}
	}
	sh.heads[subj] = h
}

// lost forgets subj's head after a lost race, and reads it before each
// publish for a while.
func (c *headCache) lost(subj string, now time.Time) {
	sh := c.shard(subj)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	delete(sh.heads, subj)
	if len(sh.contended) >= maxHeads/len(c.shards) {
		clear(sh.contended)
	}
	sh.contended[subj] = now
}

// forget drops subj's head.
func (c *headCache) forget(subj string) {
	sh := c.shard(subj)
	sh.mu.Lock()
	delete(sh.heads, subj)
	sh.mu.Unlock()
}

// clear forgets every head: the stream may have been replaced.
func (c *headCache) clear() {
	c.gen.Add(1)
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		clear(sh.heads)
		sh.mu.Unlock()
	}
}
