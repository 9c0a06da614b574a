package engine

import (
	"context"
	"time"

	"github.com/marketcast/marketcast/engine/frame"
)

// Subscription ties an outbox to one topic.
type Subscription struct {
	// What a fan-out reads for every event (Hub.deliverLocked,
	// Outbox.enqueue) comes first, within 64 bytes: the fan-out meets each
	// subscription once, with its cache line long gone.
	out  *Outbox
	proj *frame.Projection

	// Guarded by t.mu.
	next   uint64 // reliable: the next sequence owed to this subscription
	closed int64  // conflated: the Order of the last final message queued

	// Set by Subscribe, read-only afterwards.
	lossless bool // conflated: every message queued in order, counted
	// ivl, for a subscription with an interval, holds its pacing (a
	// pointer: most subscriptions have none). Its fields are guarded by
	// out.mu.
	ivl *interval

	// Guarded by out.mu.
	// The queue slot of this subscription's replaceable frame, valid while
	// pendGen equals out.gen.
	pendGen uint64
	pendIdx int

	t *topic // set by Subscribe

	// Guarded by t.mu.
	epoch    string   // reliable: the run it follows ("" while the topic has none)
	snapshot *Event   // sent by Start, before anything else of the topic
	history  int      // conflated: final messages to send first
	replay   []*Event // catch-up: events read from the broker, not yet queued
	idx      int      // position in t.subs; -1 while not live
	gone     bool     // unsubscribed
}

// interval is the pacing of a subscription with a maximum frequency: when
// its next update may be written, and the update held back until then
// (replaced by newer ones), owed since deferredAt.
type interval struct {
	every      time.Duration
	nextDue    time.Time
	deferred   []byte
	deferredAt time.Time
}

// Topic is the subscribed topic's key.
func (sub *Subscription) Topic() string { return sub.t.key }

// SubscribeOptions say what a new subscription receives before live events.
type SubscribeOptions struct {
	// Projection selects data keys (ticks); nil means all.
	Projection *frame.Projection
	// Snapshot sends the topic's latest event first, marked as a snapshot,
	// unless a resume replays history instead.
	Snapshot bool
	// Since, on a reliable topic, resumes after this sequence: every event
	// after it is replayed, then live events follow with no gap and no
	// duplicate.
	Since *uint64
	// Epoch is the run Since was seen in. Without it (legacy clients) a
	// resume after Since > 0 is never recovered: a new run that has passed
	// Since would look like the old one.
	Epoch string
	// History, on a conflated topic, sends up to this many of its last
	// final messages (closed bars) first, oldest first, marked as
	// snapshots, before the current state.
	History int
	// Interval, on a conflated topic, writes at most one update per
	// interval: always the newest, and none held back longer than the
	// interval (closed bars are never held). 0: every update.
	Interval time.Duration
	// Lossless, on a conflated topic, queues every message in order instead
	// of replacing the one waiting: they count against MaxPendingBytes like
	// reliable ones, and past it the connection is closed with 4008.
	Lossless bool
}

// Resume describes where a reliable topic stood when a subscription began.
type Resume struct {
	// Position is the topic's last sequence and its epoch. A topic with no
	// run yet has sequence 0 and no epoch: its run's epoch is chosen by its
	// first message, wherever that is published, so none can be promised
	// before it.
	Position Position
	// Recovered, for a subscribe with Since, says whether every event after
	// Since follows, in order.
	Recovered bool
}

// Subscribe begins a subscription of out to the topic key, creating the
// topic when needed. For a reliable topic it registers this node's interest
// with the broker and reads where the stream stands and, with Since, the
// first page of what the client missed; no lock is held meanwhile. Nothing
// is queued yet: the caller queues its answer, then calls Start.
func (h *Hub) Subscribe(ctx context.Context, out *Outbox, key string, mode Mode, opts SubscribeOptions) (*Subscription, Resume, error) {
	t, err := h.topic(key, mode)
	if err != nil {
		return nil, Resume{}, err
	}
	sub := &Subscription{out: out, t: t, proj: opts.Projection, idx: -1, pendIdx: -1, history: opts.History}
	t.starting++ // keeps Sweep away until Start or Unsubscribe
	if mode == Conflated {
		sub.lossless = opts.Lossless
		if opts.Interval > 0 && !opts.Lossless {
			sub.ivl = &interval{every: opts.Interval}
			out.mu.Lock()
			out.intervals++
			out.mu.Unlock()
		}
		if opts.Snapshot {
			sub.snapshot = t.last // Start sends the latest instead if a newer one came
		}
		r := Resume{Position: Position{Seq: t.seq}}
		t.mu.Unlock()
		return sub, r, nil
	}
	t.mu.Unlock()

	hist, err := h.readStart(ctx, t, opts.Since)
	if err != nil {
		h.abandon(sub)
		return nil, Resume{}, err
	}
	r := Resume{Position: hist.Head()}
	cursor := r.Position.Seq
	if opts.Since != nil {
		r.Recovered = recoverable(*opts.Since, opts.Epoch, &hist)
		h.metrics.resumes.Inc()
		if r.Recovered {
			cursor = *opts.Since
		} else {
			h.metrics.resumeMisses.Inc()
		}
	}

	t.mu.Lock()
	if t.epoch == "" && hist.Last != nil && len(t.subs) == 0 {
		// The topic is new here: it stands where the stream does. Not
		// while a subscription is live: one that found the stream empty
		// waits for these events from the broker, and taking them as
		// applied would drop them as duplicates when they arrive (a
		// history read can be ahead of this node's watch).
		t.seq, t.epoch, t.last = r.Position.Seq, r.Position.Epoch, hist.Last
	}
	sub.next, sub.epoch = cursor+1, r.Position.Epoch
	if r.Recovered {
		sub.replay = hist.Events
	} else if opts.Snapshot {
		sub.snapshot = hist.Last
	}
	t.mu.Unlock()
	return sub, r, nil
}

// readStart registers interest in a reliable topic and reads its state and,
// with since, the first page after it.
func (h *Hub) readStart(ctx context.Context, t *topic, since *uint64) (History, error) {
	if err := h.watch(ctx, t); err != nil {
		return History{}, err
	}
	after, limit := uint64(0), 0
	if since != nil {
		after, limit = *since, h.cfg.ReplayPage
	}
	return h.broker.History(ctx, t.key, after, limit)
}

// recoverable decides a resume: recovered only when the server can show
// that every event after since is still held, in the run the client saw it
// in.
func recoverable(since uint64, epoch string, hist *History) bool {
	head := hist.Head()
	if since == 0 {
		// Nothing seen: the current run from its start, whatever its epoch.
		return head.Seq == 0 || hist.First == 1
	}
	switch {
	case head.Seq == 0: // the run the client saw is gone
		return false
	case epoch == "":
		// Without the run since was seen in, a new run that has passed
		// since (after a restart, a sweep, a lost store) looks the same as
		// the old one: nothing proves that no event is missing.
		return false
	case epoch != head.Epoch:
		return false
	case since > head.Seq: // the client saw more than this run has: a reset
		return false
	case since == head.Seq:
		return true
	}
	return hist.First != 0 && hist.First <= since+1
}

// watch registers this node's interest in a reliable topic once.
func (h *Hub) watch(ctx context.Context, t *topic) error {
	t.watchMu.Lock()
	defer t.watchMu.Unlock()
	t.mu.Lock()
	watched := t.watched
	t.mu.Unlock()
	if watched {
		return nil
	}
	if err := h.broker.Watch(ctx, t.key); err != nil {
		return err
	}
	t.mu.Lock()
	t.watched = true
	t.mu.Unlock()
	return nil
}

// abandon undoes a Subscribe that failed.
func (h *Hub) abandon(sub *Subscription) {
	t := sub.t
	t.mu.Lock()
	sub.gone = true
	t.starting--
	if len(t.subs) == 0 && t.starting == 0 {
		t.idleSince = h.now()
	}
	t.mu.Unlock()
}

// Start queues what a subscription receives before live events — the
// snapshot, or the replay of a resume — and makes it live. A replay is
// streamed from the broker a page at a time as the connection drains, so a
// resume of a long history never sits in memory whole; live events join it
// with no gap and no duplicate.
func (h *Hub) Start(sub *Subscription) {
	t := sub.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if sub.gone {
		return
	}
	out := sub.out
	if t.mode == Conflated {
		// History first (closed bars, oldest first), then the state: the
		// latest message unless it is final (a bar just closed: it is in
		// the history, and the next bar has not begun).
		if sub.history > 0 {
			for _, ev := range t.finals.list(sub.history) {
				out.enqueueSnapshot(sub, ev.frame(h.metrics, h.cfg.DeflateThreshold, sub.proj, out.deflate, true), Conflated, ev)
				sub.closed = ev.order
			}
		}
		if sub.snapshot != nil && t.last != nil && !t.last.final && (t.last.order == 0 || t.last.order > sub.closed) {
			ev := t.last
			out.enqueueSnapshot(sub, ev.frame(h.metrics, h.cfg.DeflateThreshold, sub.proj, out.deflate, true), Conflated, ev)
		}
		h.goLiveLocked(t, sub)
		return
	}
	if ev := sub.snapshot; ev != nil {
		out.enqueueSnapshot(sub, ev.frame(h.metrics, h.cfg.DeflateThreshold, sub.proj, out.deflate, true), Reliable, ev)
		sub.snapshot = nil
	}
	if len(sub.replay) == 0 && sub.next > t.seq {
		h.goLiveLocked(t, sub)
		return
	}
	out.addCatchup(sub)
}

// goLiveLocked adds sub to the topic's live subscriptions. t.mu is held on
// entry.
func (h *Hub) goLiveLocked(t *topic, sub *Subscription) {
	if t.mode == Reliable && sub.epoch != "" && t.epoch != "" && sub.epoch != t.epoch {
		// The run changed between the subscribe and now.
		sub.out.Close(closeResumeRequired, "stream "+t.key+" was reset: resubscribe with since and epoch")
		sub.gone = true
		t.starting--
		return
	}
	t.starting--
	sub.idx = len(t.subs)
	t.subs = append(t.subs, sub)
	h.metrics.subscriptions.Inc()
}

// refill queues the next part of a catching-up subscription's replay. The
// outbox's flusher calls it, with no lock held, while the connection has
// room; it reports whether the subscription is done catching up (live, or
// ended).
func (h *Hub) refill(sub *Subscription) bool {
	t := sub.t
	t.mu.Lock()
	if sub.gone {
		t.mu.Unlock()
		return true
	}
	after, epoch, need := sub.next-1, sub.epoch, len(sub.replay) == 0
	t.mu.Unlock()

	var read []*Event
	if need {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		hist, err := h.broker.History(ctx, t.key, after, h.cfg.ReplayPage)
		cancel()
		if err != nil || historyLost(&hist, after, epoch) {
			h.metrics.resumeLost.Inc()
			sub.out.Close(closeResumeRequired, "history of "+t.key+" no longer reaches back: resubscribe with since and epoch")
			return true
		}
		read = hist.Events
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	if sub.gone {
		return true
	}
	if need {
		sub.replay = read
	}
	out := sub.out
	for len(sub.replay) > 0 {
		ev := sub.replay[0]
		if ev.Sequence() >= sub.next {
			if ev.Sequence() > sub.next || (sub.epoch != "" && ev.Epoch() != sub.epoch) {
				h.metrics.resumeLost.Inc()
				out.Close(closeResumeRequired, "history of "+t.key+" has a hole: resubscribe with since and epoch")
				return true
			}
			if sub.epoch == "" {
				sub.epoch = ev.Epoch()
			}
			// A replayed event keeps its original envelope.
			if !out.enqueueReplay(sub, ev.frame(h.metrics, h.cfg.DeflateThreshold, sub.proj, out.deflate, false), ev) {
				return true // the outbox closed
			}
			sub.next = ev.Sequence() + 1
		}
		sub.replay = sub.replay[1:]
		if !out.roomForReplay() {
			return false
		}
	}
	if sub.next > t.seq {
		h.goLiveLocked(t, sub)
		return true
	}
	return false
}

// historyLost reports whether a history read cannot continue a replay that
// has sent everything up to after in epoch.
func historyLost(hist *History, after uint64, epoch string) bool {
	if hist.Last == nil {
		return after > 0 // the run is gone
	}
	if epoch != "" && hist.Last.Epoch() != epoch {
		return true
	}
	if hist.Last.Sequence() <= after {
		return false // nothing newer: caught up
	}
	return len(hist.Events) == 0 || hist.Events[0].Sequence() != after+1
}

// Unsubscribe ends sub. It is safe to call twice, and at any point after
// Subscribe.
func (h *Hub) Unsubscribe(sub *Subscription) {
	t := sub.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if sub.gone {
		return
	}
	sub.gone = true
	sub.replay, sub.snapshot = nil, nil
	// What is queued for it is no longer wanted.
	sub.out.drop(sub)
	if i := sub.idx; i >= 0 && i < len(t.subs) && t.subs[i] == sub {
		// O(1): the last subscription takes the slot (order does not matter).
		last := len(t.subs) - 1
		t.subs[i] = t.subs[last]
		t.subs[i].idx = i
		t.subs[last] = nil
		t.subs = t.subs[:last]
		sub.idx = -1
		h.metrics.subscriptions.Dec()
	} else {
		t.starting--
	}
	if len(t.subs) == 0 && t.starting == 0 {
		t.idleSince = h.now()
	}
}
