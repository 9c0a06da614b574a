package engine

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// intervalTimers release the updates that subscriptions with a maximum
// frequency (SubscribeOptions.Interval) hold back. A held update waits in
// its subscription's slot (Subscription.deferred), where newer updates
// replace it, and the subscription waits here once, in a min-heap by due
// time, until its interval since its last write is up. Each shard has one
// runtime timer armed for its earliest due time: no timer per subscription
// or per message, and nothing runs while nothing is held. Shards keep
// connections on different cores from contending for one lock.
//
// Lock order: Outbox.mu → intervalShard.mu (an outbox adds a subscription
// with its lock held); a shard releases what is due with its own lock
// dropped.
type intervalTimers struct {
	now    func() time.Time
	shards []intervalShard
	next   atomic.Uint32 // the shard of the next outbox
}

type intervalShard struct {
	mu    sync.Mutex
	heap  []dueSub
	timer *time.Timer
	armed time.Time // when the timer fires; zero while it is not armed
}

type dueSub struct {
	at  time.Time
	sub *Subscription
}

func (t *intervalTimers) init(now func() time.Time) {
	t.now = now
	t.shards = make([]intervalShard, max(1, runtime.GOMAXPROCS(0)))
}

// shardFor picks the shard of a new outbox, round robin.
func (t *intervalTimers) shardFor() int {
	return int(t.next.Add(1) % uint32(len(t.shards)))
}

// add makes sub due at at.
func (t *intervalTimers) add(shard int, sub *Subscription, at time.Time) {
	s := &t.shards[shard]
	s.mu.Lock()
	s.push(dueSub{at, sub})
	if s.armed.IsZero() || at.Before(s.armed) {
		s.armLocked(t, at)
	}
	s.mu.Unlock()
}

func (s *intervalShard) armLocked(t *intervalTimers, at time.Time) {
	s.armed = at
	d := at.Sub(t.now())
	if s.timer == nil {
		s.timer = time.AfterFunc(d, func() { t.fire(s) })
		return
	}
	s.timer.Reset(d)
}

// fire releases every subscription of s that is due, never one early.
func (t *intervalTimers) fire(s *intervalShard) {
	now := t.now()
	var due []*Subscription
	s.mu.Lock()
	for len(s.heap) > 0 && !s.heap[0].at.After(now) {
		due = append(due, s.pop().sub)
	}
	s.armed = time.Time{}
	if len(s.heap) > 0 {
		s.armLocked(t, s.heap[0].at)
	}
	s.mu.Unlock()
	for _, sub := range due {
		sub.out.releaseDeferred(sub)
	}
}

// fireAll releases what is due in every shard now (tests drive an injected
// clock with it).
func (t *intervalTimers) fireAll() {
	for i := range t.shards {
		t.fire(&t.shards[i])
	}
}

// held is how many subscriptions wait in all shards.
func (t *intervalTimers) held() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.heap)
		s.mu.Unlock()
	}
	return n
}

func (s *intervalShard) push(d dueSub) {
	s.heap = append(s.heap, d)
	for i := len(s.heap) - 1; i > 0; {
		p := (i - 1) / 2
		if !s.heap[i].at.Before(s.heap[p].at) {
			break
		}
		s.heap[i], s.heap[p] = s.heap[p], s.heap[i]
		i = p
	}
}

func (s *intervalShard) pop() dueSub {
	top := s.heap[0]
	last := len(s.heap) - 1
	s.heap[0] = s.heap[last]
	s.heap[last] = dueSub{}
	s.heap = s.heap[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < last && s.heap[l].at.Before(s.heap[m].at) {
			m = l
		}
		if r < last && s.heap[r].at.Before(s.heap[m].at) {
			m = r
		}
		if m == i {
			break
		}
		s.heap[i], s.heap[m] = s.heap[m], s.heap[i]
		i = m
	}
	return top
}
