package engine

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"time"
)

// topic is what this node holds of one stream: the subscriptions, the last
// event applied and, for reliable topics, where the stream stands. mu
// serializes everything that touches the topic, so every subscriber sees
// events in sequence order. Different topics never share a lock.
type topic struct {
	key  string
	mode Mode

	mu        sync.Mutex
	seq       uint64 // last sequence applied (conflated: numbered here)
	epoch     string // reliable: the run seq belongs to; "" until known
	last      *Event
	subs      []*Subscription // live subscriptions
	starting  int             // subscriptions not yet live (subscribing, catching up)
	idleSince time.Time       // when subs last became empty
	dead      bool            // removed from the registry by Sweep
	finals    ring            // conflated: the last final messages (closed bars)

	// Reliable topics only.
	watchMu sync.Mutex // serializes the first Watch; taken before mu, never under it
	watched bool       // guarded by mu (written under watchMu and mu)
	filling bool       // a gap backfill is running
	held    []*Event   // events that arrived past a gap, waiting for the backfill
}

// inlineWrites is how many outboxes a fan-out writes itself, at most.
const inlineWrites = 64

// deliverLocked records ev as the topic's latest and queues it to every live
// subscription. Subscribers that share a frame variant share its bytes; the
// last variant used is remembered, so the common case (everyone wants the
// same bytes) costs no lookup. t.mu is held on entry.
func (h *Hub) deliverLocked(t *topic, ev *Event, batch *Batch) {
	var (
		lastKey uint64 = ^uint64(0)
		lastB   []byte
		now     = time.Now()
		ready   int
		// The outboxes of the first handOff subscribers go to the writers
		// (on the other cores); this goroutine writes the rest itself.
		handOff = len(t.subs) * (h.writers.max - 1) / h.writers.max
		tally   writeTally // of the writes this goroutine makes
	)
	defer tally.add(h.metrics)
	for i, sub := range t.subs {
		if ev.env.Sequence < sub.next {
			continue // already sent by this subscription's catch-up
		}
		sub.next = ev.env.Sequence + 1
		if ev.order != 0 {
			if ev.order <= sub.closed {
				continue // its place is closed for this subscription (history had it)
			}
			if ev.final {
				sub.closed = ev.order
			}
		}
		key := variantKey(sub.proj, sub.out.deflate, false)
		if key != lastKey {
			lastKey, lastB = key, ev.frame(h.metrics, h.cfg.DeflateThreshold, sub.proj, sub.out.deflate, false)
		}
		if !sub.out.enqueue(sub, lastB, t.mode, ev, batch, now) {
			continue
		}
		if i < handOff || ready == inlineWrites {
			h.writers.add(sub.out)
			continue
		}
		sub.out.writeReady(&tally)
		if ready++; ready%8 == 0 {
			now = time.Now() // the writes take time; a stale clock would hold what is due
		}
	}
}

// Apply receives an event of a reliable topic from the broker (it
// implements EventHandler). Events arrive in order per topic as far as the
// broker can tell; Apply drops what it already has, fills a gap from the
// broker's history before going on, and treats a new epoch as the end of the
// old run: the subscribers of the old run are told to resume (4009), since
// events they were owed may be gone.
func (h *Hub) Apply(ev *Event) {
	t := h.lookup(ev.topic)
	if t == nil || t.mode != Reliable {
		return // nobody here holds the topic
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dead {
		return
	}
	h.applyLocked(t, ev)
}

// applyLocked implements Apply. t.mu is held on entry.
func (h *Hub) applyLocked(t *topic, ev *Event) {
	seq, epoch := ev.env.Sequence, ev.env.Epoch
	switch {
	case t.filling:
		t.held = append(t.held, ev)
		if len(t.held) > maxHeld {
			h.resetLocked(t, ev) // the backfill cannot keep up: start over
		}
	case t.epoch != "" && epoch != t.epoch:
		h.resetLocked(t, ev)
	case seq <= t.seq:
		h.metrics.duplicates.Inc()
	case seq == t.seq+1 || (t.epoch == "" && t.seq == 0 && seq == 1):
		t.seq, t.epoch, t.last = seq, epoch, ev
		h.deliverLocked(t, ev, nil)
	default:
		h.metrics.gaps.Inc()
		if t.epoch == "" {
			t.epoch = epoch
		}
		t.filling = true
		t.held = append(t.held, ev)
		go h.backfill(t)
	}
}

// maxHeld bounds the events a topic holds while a backfill runs.
const maxHeld = 10000

// resetLocked ends the topic's run: every subscriber of it is closed with
// 4009 (resume required: it reconnects and resubscribes with since and
// epoch, and is told recovered:false), and the topic continues with ev's
// run. t.mu is held on entry.
func (h *Hub) resetLocked(t *topic, ev *Event) {
	h.metrics.resets.Inc()
	for _, sub := range t.subs {
		sub.out.Close(closeResumeRequired, "stream "+t.key+" was reset: resubscribe with since and epoch")
		sub.idx = -1
		h.metrics.subscriptions.Dec()
	}
	clear(t.subs)
	t.subs = t.subs[:0]
	t.idleSince = h.now()
	t.held = nil
	t.filling = false
	t.seq, t.epoch, t.last = ev.env.Sequence, ev.env.Epoch, ev
}

// backfill reads the events a topic missed from the broker and applies
// them, then the events held meanwhile, in order. If history no longer holds
// what was missed, the run cannot continue unbroken: reset.
func (h *Hub) backfill(t *topic) {
	h.metrics.backfills.Inc()
	for {
		t.mu.Lock()
		after, epoch := t.seq, t.epoch
		t.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		hist, err := h.broker.History(ctx, t.key, after, h.cfg.ReplayPage)
		cancel()

		t.mu.Lock()
		if t.dead || !t.filling {
			t.mu.Unlock()
			return
		}
		if err != nil || hist.Last == nil || hist.Last.Epoch() != epoch ||
			(len(hist.Events) > 0 && hist.Events[0].Sequence() != after+1) ||
			(len(hist.Events) == 0 && hist.Last.Sequence() > after) {
			held := t.held[len(t.held)-1]
			h.resetLocked(t, held)
			t.mu.Unlock()
			return
		}
		for _, ev := range hist.Events {
			if ev.Sequence() == t.seq+1 {
				t.seq, t.last = ev.Sequence(), ev
				h.deliverLocked(t, ev, nil)
			}
		}
		// Apply what arrived meanwhile, in order; stop at the next gap.
		done := true
		for len(t.held) > 0 {
			ev := t.held[0]
			if ev.Epoch() != t.epoch {
				break
			}
			if ev.Sequence() > t.seq+1 {
				done = false
				break
			}
			t.held = t.held[1:]
			if ev.Sequence() == t.seq+1 {
				t.seq, t.last = ev.Sequence(), ev
				h.deliverLocked(t, ev, nil)
			} else {
				h.metrics.duplicates.Inc()
			}
		}
		if done && len(t.held) > 0 { // a new epoch waits behind the old run
			ev := t.held[0]
			t.held = t.held[1:]
			t.filling = false
			h.applyLocked(t, ev)
			rest := t.held
			t.held = nil
			for _, ev := range rest {
				h.applyLocked(t, ev)
			}
			t.mu.Unlock()
			return
		}
		if done {
			t.held, t.filling = nil, false
			t.mu.Unlock()
			return
		}
		t.mu.Unlock()
	}
}

// ring keeps the last events of a kind, oldest first, bounded; it grows
// by doubling so a quiet topic holds little.
type ring struct {
	buf     []*Event
	head, n int
}

func (r *ring) add(e *Event, size int) {
	if e.order != 0 && r.n > 0 {
		if newest := r.buf[(r.head+r.n-1)%len(r.buf)]; e.order <= newest.order {
			// An earlier place (this node lagging the store it merged):
			// keep one per place, in order.
			r.merge(nil, []*Event{e}, size)
			return
		}
	}
	if r.n == len(r.buf) && len(r.buf) < size {
		grown := make([]*Event, min(max(2*r.n, 8), size))
		copy(grown, r.list(0))
		r.buf, r.head = grown, 0
	}
	if r.n < len(r.buf) {
		r.buf[(r.head+r.n)%len(r.buf)] = e
		r.n++
		return
	}
	r.buf[r.head] = e // full: overwrite the oldest
	r.head = (r.head + 1) % len(r.buf)
}

// list returns the last n events (all when n is 0), oldest first.
func (r *ring) list(n int) []*Event {
	if n <= 0 || n > r.n {
		n = r.n
	}
	out := make([]*Event, 0, n)
	for i := r.n - n; i < r.n; i++ {
		out = append(out, r.buf[(r.head+i)%len(r.buf)])
	}
	return out
}

// merge puts events among the ring's, by Order: those of from replace the
// ring's of the same place when they differ (a store's record over this
// node's partial bar); those of keep do not. At most size of the newest are
// kept.
func (r *ring) merge(from, keep []*Event, size int) {
	byOrder := make(map[int64]*Event, r.n+len(from)+len(keep))
	for _, e := range r.list(0) {
		byOrder[e.order] = e
	}
	for _, e := range keep {
		if _, ok := byOrder[e.order]; !ok {
			byOrder[e.order] = e
		}
	}
	for _, e := range from {
		if have, ok := byOrder[e.order]; ok && bytes.Equal(have.data, e.data) {
			continue // the same bar: keep this node's, numbered here
		}
		byOrder[e.order] = e
	}
	orders := make([]int64, 0, len(byOrder))
	for o := range byOrder {
		orders = append(orders, o)
	}
	slices.Sort(orders)
	if len(orders) > size {
		orders = orders[len(orders)-size:]
	}
	*r = ring{}
	for _, o := range orders {
		r.add(byOrder[o], size)
	}
}
