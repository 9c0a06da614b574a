package engine

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marketcast/marketcast/engine/frame"
	"github.com/marketcast/marketcast/engine/metric"
	"github.com/marketcast/marketcast/protocol"
)

const (
	closeSlowConsumer   = protocol.CloseSlowConsumer
	closeResumeRequired = protocol.CloseResumeRequired
)

// Outbox is the outbound side of one connection: a bounded queue of shared
// frames and an on-demand flusher that writes them, many per writev, in
// chunks the kernel takes without holding more than the unsent limit.
//
// A conflatable frame (tick, book, forming bar) replaces the frame of the
// same subscription still waiting in the queue, so market data never builds
// a backlog: at most one pending frame per subscribed topic, and it never
// counts against MaxPendingBytes. Everything else (reliable events, closed
// bars, lossless ticks, answers) appends and counts; past MaxPendingBytes
// the connection is closed as a slow consumer (4008) and the client resumes
// from history. Nothing is dropped silently.
//
// Flow control: once the peer has granted credit (Credit), every pushed
// message (anything of a subscription: live, snapshot, replay) written
// uses one, and pushed messages wait in the queue while there is none —
// market data still conflating there, so credit brings the newest state —
// while answers, pings, pongs and close frames never wait. A subscription
// with an interval has at most one update written per interval: a newer
// one waits in the subscription's own slot, outside the queue, until the
// hub's interval timers release it (intervalTimers).
//
// No goroutine exists while nothing can be written: enqueue starts a
// flusher when the queue gets something writable and the flusher exits once
// it has written all it may. The flusher also streams the replay of resuming
// subscriptions from the broker while the queue has room (Hub.refill).
type Outbox struct {
	// The fields are laid out by how often they are touched, not by topic:
	// a delivery touches every connection of a fan-out once, after the
	// kernel's work for the connections before it has evicted their state
	// from the core's caches, so each cache line a write reads is a miss.
	// The first three lines hold what a fan-out's enqueue and a writer's take
	// and release read and write for every frame, the next two the batch
	// being written; the rest is read at setup, on control frames and at
	// the end. On this VM it measured level with the layout by topic,
	// within the noise (BENCHMARKS.md, "Fewer cache lines per write").
	// On a TCP connection the socket's write state comes first in the same
	// allocation (tcpOutbox). TestOutboxHotFieldsShareLines keeps it so.

	// First line: a fan-out's enqueue.
	mu        sync.Mutex
	state     outboxState
	flushing  bool
	held      bool // flushing is set and the flusher waits for the hub's delay timer
	batched   bool // in a Batch, which kicks the flusher when it ends
	deferKick bool // set while a Batch queues a frame: no kick yet
	deflate   bool // the peer negotiated permessage-deflate (which frame variant it gets)
	// Flow control: flow is set by the peer's first credit; credit is what
	// it may still receive; waiting says pushed messages wait for credit
	// (for the credit_waits metric, counted once per wait).
	flow    bool
	waiting bool
	queue   []entry
	pushed  int    // entries of subscriptions in queue (what credit pays for)
	bytes   int    // bytes of queued frames that cannot be conflated
	gen     uint64 // bumped whenever entries are handed to the flusher

	// Second line: the rest of enqueue and take.
	credit int
	// intervals counts this connection's subscriptions with an interval:
	// while > 0 the flusher notes, per subscription, when its next update
	// is due.
	intervals int
	lastWrite time.Time // when the flusher last wrote
	conflated int       // replacements since the last flush, for metrics
	hub       *Hub
	sock      *socket // the TCP socket's write state (tcpOutbox); nil: write through conn

	// Third line: take and release.
	spare   []entry // the flusher's last batch, reused
	catchup []*Subscription

	// Owned by whoever holds flushing: a writer (writers), then the
	// flusher it may hand the outbox to.
	// inflight is the Unix ns of the oldest live frame a flusher is writing;
	// 0: none. A writer's write that does not wait leaves it alone: it is
	// over within microseconds, and an atomic store is a full fence, which
	// on a cold outbox waits for every store before it (see Lag).
	inflight atomic.Int64
	deadline bool // a write deadline is set on conn
	out      outgoing
	iov      net.Buffers

	// Cold: setup, control frames, writes without a socket, the end.
	conn      net.Conn
	shard     int         // this outbox's shard of the hub's interval timers
	ctrl      [2]ctrlSlot // the pending pong and ping, replaced rather than queued twice
	closeCode uint16
	chunk     net.Buffers
	closeSent func() // told once the close frame is written (see OnCloseSent)
}

// tcpOutbox is the outbox of a TCP connection with its socket's write
// state in front of it, in one allocation: a write reads both, and the
// socket's two lines and the outbox's hot ones are then adjacent lines
// (the allocation is line-aligned at this size) instead of two objects
// anywhere on the heap.
type tcpOutbox struct {
	sock socket
	Outbox
}

// OnCloseSent registers f, called once this outbox has written its close
// frame: the WebSocket library must then read the peer's answering close
// frame as the end of the handshake, not answer it. Set before use. f may
// run with hub locks held (a fan-out's own write): it must take none.
func (o *Outbox) OnCloseSent(f func()) { o.closeSent = f }

type outboxState uint8

const (
	stateOpen    outboxState = iota
	stateClosing             // a close frame is queued; nothing more is accepted
	stateClosed              // the connection is closed
)

// ctrlSlot remembers where a control frame waits in the queue, valid while
// gen equals Outbox.gen.
type ctrlSlot struct {
	gen uint64
	idx int
}

type entry struct {
	b           []byte
	sub         *Subscription // set on pushed messages: they use credit
	at          time.Time     // when the engine accepted the event; zero for answers, snapshots and replays
	counted     bool          // counted in Outbox.bytes
	replaceable bool          // a newer frame of sub may take its place
	control     bool          // a pong or ping (Outbox.ctrl knows where)
	close       bool          // close the connection once this frame is written
	live        bool          // a live event, which may wait to share a write; nothing else does
}

// NewOutbox returns the outbound side of conn. deflate says whether the
// peer negotiated permessage-deflate. On a TCP connection it caps what the
// kernel may hold unsent (Config.MaxUnsentBytes).
func (h *Hub) NewOutbox(conn net.Conn, deflate bool) *Outbox {
	var o *Outbox
	if tcp, ok := conn.(*net.TCPConn); ok {
		p := new(tcpOutbox)
		o = &p.Outbox
		if p.sock.open(tcp, h.cfg.MaxUnsentBytes) {
			o.sock = &p.sock
		}
	} else {
		o = new(Outbox)
		capUnsent(conn, h.cfg.MaxUnsentBytes)
	}
	o.hub, o.conn, o.deflate, o.shard = h, conn, deflate, h.intervals.shardFor()
	return o
}

// enqueue queues one live event frame for sub, at now (the fan-out's
// clock). It reports whether the outbox is now ready to write: then it is
// the caller's, to write itself (writeReady) or hand to the writers.
func (o *Outbox) enqueue(sub *Subscription, b []byte, mode Mode, ev *Event, batch *Batch, now time.Time) (ready bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.state != stateOpen {
		return false
	}
	conflate := mode == Conflated && !sub.lossless
	if conflate {
		if sub.pendGen == o.gen && sub.pendIdx >= 0 {
			if e := &o.queue[sub.pendIdx]; e.replaceable {
				e.b = b
				if ev.final { // a closed bar is never replaced, and counts
					e.replaceable, e.counted = false, true
					o.bytes += len(b)
				}
				// e.at keeps the older time: lag is measured from the first
				// event the subscriber was owed.
				o.conflated++
				return false
			}
		}
		if sub.ivl != nil && o.deferLocked(sub.ivl, sub, b, ev) {
			return false
		}
	}
	replaceable := conflate && !ev.final
	e := entry{b: b, sub: sub, at: ev.env.Timestamp, replaceable: replaceable, counted: !replaceable, live: true}
	o.deferKick = true
	o.appendLocked(e)
	o.deferKick = false
	if batch == nil {
		return o.readyLocked(false, now)
	}
	// Part of a batch: queued now, written when the batch ends, with the
	// rest of what the batch brings this connection.
	if !o.batched && o.state == stateOpen {
		o.batched = true
		batch.held = append(batch.held, o)
	}
	return false
}

// deferLocked keeps an update of an interval subscription out of the queue
// until the subscription's interval since its last write is up, in the
// subscription's slot, where a newer update replaces it; it reports whether
// it did. A closed bar is never deferred: it is queued at once, and an
// update of its bar still waiting is dropped (the closed bar is newer). o.mu
// is held on entry.
func (o *Outbox) deferLocked(ivl *interval, sub *Subscription, b []byte, ev *Event) bool {
	if ev.final {
		if ivl.deferred != nil {
			ivl.deferred = nil
			o.conflated++
		}
		return false
	}
	if ivl.deferred != nil {
		ivl.deferred = b // deferredAt keeps the first owed time, as in the queue
		o.conflated++
		return true
	}
	if !ev.env.Timestamp.Before(ivl.nextDue) {
		return false // due: queue it now
	}
	ivl.deferred, ivl.deferredAt = b, ev.env.Timestamp
	o.hub.intervals.add(o.shard, sub, ivl.nextDue)
	return true
}

// releaseDeferred queues sub's deferred update: its interval is up. The
// hub's interval timers call it with no lock held.
func (o *Outbox) releaseDeferred(sub *Subscription) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ivl := sub.ivl
	if o.state != stateOpen || ivl.deferred == nil {
		return
	}
	e := entry{b: ivl.deferred, sub: sub, at: ivl.deferredAt, replaceable: true, live: true}
	ivl.deferred = nil
	o.deferKick = true
	o.appendLocked(e)
	o.deferKick = false
	o.kickLocked(true) // due now: it does not wait for the flush delay too
}

// enqueueSnapshot queues the state a subscription starts with. It is never
// replaced (the client must see it marked as a snapshot); a market
// snapshot does not count against the budget, being one frame per topic.
func (o *Outbox) enqueueSnapshot(sub *Subscription, b []byte, mode Mode, ev *Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.state == stateOpen {
		// Old by nature: no lag sample.
		o.appendLocked(entry{b: b, sub: sub, counted: mode == Reliable || ev.final})
	}
}

// enqueueReplay queues one replayed event of a resume; false means the
// outbox no longer accepts frames.
func (o *Outbox) enqueueReplay(sub *Subscription, b []byte, ev *Event) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.state != stateOpen {
		return false
	}
	o.appendLocked(entry{b: b, sub: sub, counted: true}) // old by nature: no lag sample
	return o.state == stateOpen
}

// replayWindow bounds what a resume queues at a time: half the budget, and
// never more than 256 KiB, so that many connections resuming long
// histories at once (or one resubscribing in a loop) hold little memory;
// the socket drains it faster than a client can use more.
func (o *Outbox) replayWindow() int { return min(o.hub.cfg.MaxPendingBytes/2, 256<<10) }

// roomForReplay reports whether a resume may queue more.
func (o *Outbox) roomForReplay() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.state == stateOpen && o.bytes < o.replayWindow()
}

// appendLocked queues e, closing the outbox as a slow consumer when a
// counted frame would pass the budget. o.mu is held on entry.
func (o *Outbox) appendLocked(e entry) {
	if e.counted {
		if o.bytes+len(e.b) > o.hub.cfg.MaxPendingBytes {
			o.closeLocked(closeSlowConsumer, "slow consumer")
			o.hub.metrics.slowConsumers.Inc()
			return
		}
		o.bytes += len(e.b)
	}
	o.queue = append(o.queue, e)
	if e.sub != nil {
		o.pushed++
	}
	if e.replaceable {
		e.sub.pendGen, e.sub.pendIdx = o.gen, len(o.queue)-1
	}
	if !o.deferKick {
		o.kickLocked(!e.live)
	}
}

// addCatchup makes the flusher stream sub's replay.
func (o *Outbox) addCatchup(sub *Subscription) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.state != stateOpen {
		return
	}
	o.catchup = append(o.catchup, sub)
	o.kickLocked(true)
}

// Send queues a frame that belongs to this connection alone (an answer, a
// pong, a ping). It is never conflated, never waits for credit, and counts
// against the budget like any unconflatable frame; client requests are
// rate limited as well.
func (o *Outbox) Send(b []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.state != stateOpen {
		return
	}
	o.appendLocked(entry{b: b, counted: true})
}

// Pong queues a pong, replacing one still waiting: a peer that sends pings
// and reads nothing costs one pending frame, not one per ping (RFC 6455
// lets a server answer only the latest ping).
func (o *Outbox) Pong(b []byte) { o.control(0, b) }

// Ping queues a server ping unless one is still waiting.
func (o *Outbox) Ping(b []byte) { o.control(1, b) }

func (o *Outbox) control(slot int, b []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.state != stateOpen {
		return
	}
	if c := &o.ctrl[slot]; c.gen == o.gen && c.idx < len(o.queue) && o.queue[c.idx].control {
		o.queue[c.idx].b = b
		return
	}
	o.ctrl[slot] = ctrlSlot{gen: o.gen, idx: len(o.queue)}
	o.queue = append(o.queue, entry{b: b, control: true})
	o.kickLocked(true)
}

// Credit grants the peer n more pushed messages. The first grant turns
// flow control on for the connection: from then on pushed messages wait
// for credit (see Outbox). What the peer holds is clipped at
// protocol.FlowMaxCredit.
func (o *Outbox) Credit(n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.state != stateOpen || n <= 0 {
		return
	}
	m := o.hub.metrics
	if !o.flow {
		o.flow = true
		m.flowConnections.Inc()
	}
	o.credit = min(o.credit+n, protocol.FlowMaxCredit)
	m.creditGranted.Add(n)
	o.kickLocked(true)
}

// drop removes what the queue holds for sub, which has ended: the client no
// longer wants it, and what it counted against the budget is free again.
// o.mu must not be held; Hub.Unsubscribe calls it with the topic locked.
func (o *Outbox) drop(sub *Subscription) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if sub.ivl != nil {
		sub.ivl.deferred = nil
		o.intervals--
	}
	for i, s := range o.catchup {
		if s == sub {
			o.catchup = append(o.catchup[:i], o.catchup[i+1:]...)
			break
		}
	}
	keep := 0
	for i := range o.queue {
		e := &o.queue[i]
		if e.sub == sub {
			if e.counted {
				o.bytes -= len(e.b)
			}
			o.pushed--
			continue
		}
		if keep != i {
			o.moveLocked(i, keep)
		}
		keep++
	}
	if dropped := len(o.queue) - keep; dropped > 0 {
		clear(o.queue[keep:])
		o.queue = o.queue[:keep]
		o.hub.metrics.droppedEnded.Add(dropped)
	}
}

// moveLocked moves the entry at from to the free slot to (< from), keeping
// what points at it right. o.mu is held on entry.
func (o *Outbox) moveLocked(from, to int) {
	e := o.queue[from]
	if e.replaceable && e.sub.pendGen == o.gen && e.sub.pendIdx == from {
		e.sub.pendIdx = to
	}
	if e.control {
		for s := range o.ctrl {
			if o.ctrl[s].gen == o.gen && o.ctrl[s].idx == from {
				o.ctrl[s].idx = to
			}
		}
	}
	o.queue[to] = e
}

// Close queues a close frame with code and reason after what is already
// queued (a slow consumer's backlog is dropped first), then closes the
// connection once it is written. Further frames are refused.
func (o *Outbox) Close(code uint16, reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closeLocked(code, reason)
}

// closeLocked implements Close. o.mu is held on entry.
func (o *Outbox) closeLocked(code uint16, reason string) {
	if o.state != stateOpen {
		return
	}
	o.state = stateClosing
	o.closeCode = code
	o.catchup = nil
	if code == closeSlowConsumer {
		clear(o.queue)
		o.queue = o.queue[:0]
		o.bytes, o.pushed = 0, 0
		o.gen++
	}
	o.queue = append(o.queue, entry{b: frame.Close(code, reason), close: true})
	// A flusher blocked on a peer that reads nothing gives up after the
	// write timeout; the backlog is already dropped, so memory stays bounded.
	o.kickLocked(true)
}

// CloseCode is the code of the close frame queued by Close, or 0.
func (o *Outbox) CloseCode() uint16 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closeCode
}

// Detach drops everything queued and refuses further frames. The gateway
// calls it when the connection is gone.
func (o *Outbox) Detach() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.state = stateClosed
	clear(o.queue)
	o.queue = o.queue[:0]
	o.catchup = nil
	o.bytes, o.pushed = 0, 0
	o.gen++
	if o.flow {
		o.flow = false
		o.hub.metrics.flowConnections.Dec()
	}
}

// Pending returns how many frames and counted bytes are queued.
func (o *Outbox) Pending() (frames, bytes int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queue), o.bytes
}

// Lag is the age of the oldest live message this connection owes its
// client: being written by a flusher, or queued (waiting for the socket or
// for credit). A batch a writer is writing without waiting is not seen:
// its write is over within microseconds, or it goes to a flusher and is.
// Snapshots, replays and updates an interval holds back do not count; 0
// when nothing live is owed. The first live message in the queue stands
// for the queue: events are queued in the order they were accepted, and a
// conflated one keeps its first time.
func (o *Outbox) Lag(now time.Time) time.Duration {
	var oldest time.Time
	if ns := o.inflight.Load(); ns != 0 {
		oldest = time.Unix(0, ns)
	}
	o.mu.Lock()
	for i := range o.queue {
		if at := o.queue[i].at; !at.IsZero() {
			if oldest.IsZero() || at.Before(oldest) {
				oldest = at
			}
			break
		}
	}
	o.mu.Unlock()
	if oldest.IsZero() || !now.After(oldest) {
		return 0
	}
	return now.Sub(oldest)
}

// idleAfter is how long an outbox goes without writing before TrimIdle
// lets its buffers go.
const idleAfter = time.Second

// TrimIdle lets an idle outbox's buffers go: the arrays of its queue, of
// its last batch and of its iovecs, which a connection that wrote one
// burst (its subscribe answers and snapshots) would otherwise keep for its
// whole life — 300-odd bytes of every idle terminal. One that wrote within
// idleAfter keeps them, so a busy connection allocates nothing per write.
func (o *Outbox) TrimIdle(now time.Time) {
	o.mu.Lock()
	if !o.flushing && len(o.queue) == 0 && now.Sub(o.lastWrite) >= idleAfter {
		// Not flushing: no writer owns iov and chunk now.
		o.queue, o.spare, o.iov, o.chunk = nil, nil, nil, nil
	}
	o.mu.Unlock()
}

// writableLocked reports whether the queue holds anything the flusher may
// write now: anything but a pushed message, or a pushed message while flow
// control is off or there is credit. o.mu is held on entry.
func (o *Outbox) writableLocked() bool {
	if len(o.queue) > o.pushed {
		return true
	}
	if o.flow && o.credit == 0 {
		return false
	}
	return o.pushed > 0 || len(o.catchup) > 0
}

// kickLocked hands the outbox to the hub's writers (writers) when it is
// ready to write (readyLocked). o.mu is held on entry.
func (o *Outbox) kickLocked(urgent bool) {
	if o.readyLocked(urgent, time.Time{}) {
		o.hub.writers.add(o)
	}
}

// readyLocked reports whether the outbox is ready to write now: something
// may be written and no writer has it; flushing is then set, and the
// caller hands it to the writers (kickLocked) or, a fan-out, writes it
// itself (Hub.deliverLocked). It is ready at once unless frames are
// arriving faster than the flush delay (this connection was written to
// less than the delay before now; a zero now reads the clock) and this one
// is a live event: then it holds the flush until the hub's delay timer, so
// the frames that follow share its write, as TCP autocorking does. A
// connection that gets a message now and then never waits; a busy one
// writes several frames per writev. Answers, snapshots, replays and
// control frames (urgent) never wait, and release a held flush. o.mu is
// held on entry.
func (o *Outbox) readyLocked(urgent bool, now time.Time) bool {
	if !o.writableLocked() {
		return false
	}
	if o.flushing {
		if o.held && urgent {
			o.held = false // the delay timer will find it released
			return true
		}
		return false // what was queued joins the batch of the write to come
	}
	o.flushing = true
	if d := o.hub.delayed.delay; d > 0 && !urgent {
		if now.IsZero() {
			now = time.Now()
		}
		if now.Sub(o.lastWrite) < d {
			o.held = true
			o.hub.delayed.add(o, now)
			return false
		}
	}
	return true
}

// takeLocked hands the flusher what it may write now, in queue order. In
// the common case that is the whole queue, swapped out in one step; with
// flow control short of credit, or subscriptions with an interval, the
// queue is walked: pushed messages beyond the credit stay queued, in order
// (conflating there still), and each interval subscription written notes
// when its next update is due. o.mu is held on entry.
func (o *Outbox) takeLocked() []entry {
	short := o.flow && o.credit < o.pushed
	if !short && o.intervals == 0 {
		batch := o.queue
		o.queue, o.spare = o.spare[:0], nil
		if o.flow {
			o.credit -= o.pushed
		}
		o.pushed, o.bytes = 0, 0
		o.gen++
		o.waiting = false
		return batch
	}
	var now time.Time
	if o.intervals > 0 {
		now = o.hub.now()
	}
	batch := o.spare[:0]
	o.spare = nil
	gen := o.gen + 1
	keep, bytes := 0, 0
	for i := range o.queue {
		e := &o.queue[i]
		if e.sub != nil {
			if o.flow {
				if o.credit == 0 {
					// Waits for credit, in order; the replaceable one
					// stays where a newer frame of its topic finds it.
					if e.replaceable {
						e.sub.pendGen, e.sub.pendIdx = gen, keep
					}
					if e.counted {
						bytes += len(e.b)
					}
					o.queue[keep] = *e
					keep++
					continue
				}
				o.credit--
			}
			if ivl := e.sub.ivl; ivl != nil {
				ivl.nextDue = now.Add(ivl.every)
			}
		}
		batch = append(batch, *e)
	}
	clear(o.queue[keep:])
	o.queue = o.queue[:keep]
	o.gen = gen
	o.pushed, o.bytes = keep, bytes
	if keep > 0 && !o.waiting {
		o.hub.metrics.creditWaits.Inc()
	}
	o.waiting = keep > 0
	return batch
}

// refillCatchup lets each resuming subscription queue more of its replay
// while there is room. It runs on the flusher, with no lock held.
func (o *Outbox) refillCatchup() {
	for {
		o.mu.Lock()
		if len(o.catchup) == 0 || o.state != stateOpen || o.bytes >= o.replayWindow() {
			o.mu.Unlock()
			return
		}
		sub := o.catchup[0]
		o.mu.Unlock()
		done := o.hub.refill(sub)
		o.mu.Lock()
		if done && len(o.catchup) > 0 && o.catchup[0] == sub {
			o.catchup = o.catchup[1:]
		}
		o.mu.Unlock()
		if !done {
			return // out of room: the next batch's write makes some
		}
	}
}

// outgoing is a batch taken from the queue and being written: what is left
// of its frames, and what its write records once done.
type outgoing struct {
	batch      []entry     // nil: none
	rest       net.Buffers // what is left to write, in o.iov's backing array
	partial    bool        // rest[0] is the remainder of a frame begun
	closeNow   bool        // the batch ends with the close frame
	deliveries int         // pushed messages in it
	size       int
	conflated  int
	started    time.Time
}

// writeReady writes what the outbox holds, for a writer (writers): one
// batch, without waiting. A connection that needs waiting — its socket is
// full, it has no socket of its own (TLS), or a resume's replay is read from
// the broker — is handed to a flusher goroutine of its own (flush). One that
// got more while being written goes to the back of the ready list.
func (o *Outbox) writeReady(t *writeTally) {
	took, handoff := o.take(true)
	switch {
	case handoff:
		go o.flush()
		return
	case !took:
		return
	}
	if blocked, _ := o.send(true, t); blocked {
		go o.flush() // it finishes the batch, waiting for the socket
	}
}

// flush writes batches until nothing more may be written, waiting for the
// socket as long as the peer makes progress, then exits: the outbox's own
// goroutine, for what a writer cannot do without waiting. It first finishes
// a batch a writer began.
func (o *Outbox) flush() {
	var t writeTally
	for {
		if o.out.batch != nil {
			_, ended := o.send(false, &t)
			t.add(o.hub.metrics) // now: this goroutine may wait long for the next
			if ended {
				return
			}
		}
		o.refillCatchup()
		if took, _ := o.take(false); !took {
			return
		}
	}
}

// take takes what may be written now into o.out, or releases the outbox
// (flushing is cleared) when nothing may; it reports whether it took. For a
// writer (writer set), an outbox that must be written by a flusher of its
// own (no socket, or a replay to read) is not taken: handoff is set.
func (o *Outbox) take(writer bool) (took, handoff bool) {
	o.mu.Lock()
	if o.state == stateClosed || !o.writableLocked() {
		if len(o.catchup) > 0 && o.state == stateOpen && writer {
			o.mu.Unlock()
			return false, true
		}
		o.flushing = false
		o.mu.Unlock()
		return false, false
	}
	if writer && (o.sock == nil || len(o.catchup) > 0) {
		o.mu.Unlock()
		return false, true
	}
	batch := o.takeLocked()
	conflated := o.conflated
	o.conflated = 0
	o.mu.Unlock()

	out := &o.out
	*out = outgoing{batch: batch, conflated: conflated, started: time.Now()}
	iov := o.iov[:0]
	for i := range batch {
		e := &batch[i]
		iov = append(iov, e.b)
		out.size += len(e.b)
		if e.sub != nil {
			out.deliveries++
		}
		if e.close {
			out.closeNow = true
			break // nothing goes after a close frame
		}
	}
	// The write consumes rest (it advances the slice as it writes), so
	// keep our own header of the backing array.
	o.iov = iov[:0]
	out.rest = iov
	if !writer {
		o.inflight.Store(oldestLive(batch))
	}
	return true, false
}

// oldestLive is the Unix ns of the oldest live frame of batch; 0: none.
func oldestLive(batch []entry) int64 {
	var oldest int64
	for i := range batch {
		if at := batch[i].at; !at.IsZero() && (oldest == 0 || at.UnixNano() < oldest) {
			oldest = at.UnixNano()
		}
	}
	return oldest
}

// send writes what is left of o.out: with nowait only what the socket
// takes now (blocked: the rest waits in o.out), otherwise waiting for the
// socket as long as the peer makes progress. Once the batch is written it
// records the write, and with nowait (a writer's write) releases the
// outbox or puts it back in the ready list; on an error, a write timeout
// or the close frame it ends the connection (ended).
func (o *Outbox) send(nowait bool, t *writeTally) (blocked, ended bool) {
	m := o.hub.metrics
	out := &o.out
	rest, partial, blocked, err := o.write(out.rest, out.partial, nowait)
	if blocked && err == nil {
		out.rest, out.partial = rest, partial
		if nowait {
			// Its flusher finishes it, waiting for the socket: the client
			// is owed these frames meanwhile (Lag).
			o.inflight.Store(oldestLive(out.batch))
		}
		return true, false
	}
	// A batch written at once (a writer's attempt that did not block)
	// was written when it was taken, to the lag's resolution, and was
	// never in flight for Lag; only one that waited for the socket reads
	// the clock again.
	done := out.started
	if !nowait {
		o.inflight.Store(0)
		done = time.Now()
	}
	t.record(m, out.batch, out.deliveries, out.size, out.conflated, done)
	batch := out.batch
	if err != nil || out.closeNow {
		switch {
		case err == nil:
			o.closeAfterFrame()
		case errors.Is(err, os.ErrDeadlineExceeded):
			// The peer took nothing for the write timeout: a slow
			// consumer. Say so with a close frame if one still fits.
			m.writeTimeouts.Inc()
			m.slowConsumers.Inc()
			if o.giveUp(rest, partial, out.closeNow) {
				o.closeAfterFrame()
			} else {
				_ = o.conn.Close()
			}
		default:
			m.writeErrors.Inc()
			_ = o.conn.Close()
		}
		clear(batch)
		clear(o.iov[:cap(o.iov)])
		o.out = outgoing{}
		o.mu.Lock()
		o.state = stateClosed
		o.flushing = false
		clear(o.queue)
		o.queue = o.queue[:0]
		o.catchup = nil
		o.mu.Unlock()
		return false, true
	}
	clear(batch)
	// take put one buffer per entry of the batch at most into o.iov, and
	// every write clears what it used: the rest holds no frame.
	clear(o.iov[:min(len(batch), cap(o.iov))])
	started := out.started
	o.out = outgoing{}
	o.mu.Lock()
	o.spare = batch[:0]
	o.lastWrite = started
	if nowait {
		// A writer's write: the outbox goes to the back of the ready list
		// if more came meanwhile, else it is released.
		if o.state != stateClosed && (o.writableLocked() || len(o.catchup) > 0) {
			o.hub.writers.add(o)
		} else {
			o.flushing = false
		}
	}
	o.mu.Unlock()
	return false, false
}

// giveUp ends a connection whose peer took nothing for the write timeout
// with a close frame, when the stream can still take one: the rest of the
// frame the timeout cut (rest[0], when partial), then the batch's own close
// frame (withClose: the last of rest) or a 4008, all at once or not at all,
// with no more waiting. It reports whether the close frame was written.
func (o *Outbox) giveUp(rest net.Buffers, partial, withClose bool) bool {
	var last net.Buffers
	if partial {
		last = append(last, rest[0])
	}
	switch {
	case withClose && partial && len(rest) == 1: // the cut frame is the close frame
	case withClose:
		last = append(last, rest[len(rest)-1])
	default:
		o.mu.Lock()
		o.closeCode = closeSlowConsumer
		o.mu.Unlock()
		last = append(last, frame.Close(closeSlowConsumer, "slow consumer: nothing read for "+o.hub.cfg.WriteTimeout.String()))
	}
	want := 0
	for _, b := range last {
		want += len(b)
	}
	if o.sock != nil {
		return o.sock.writeLast(last) == want
	}
	_ = o.conn.SetWriteDeadline(time.Now().Add(lastWriteTimeout))
	n, err := last.WriteTo(o.conn)
	return err == nil && int(n) == want
}

// lastWriteTimeout bounds the write of a close frame after a write timeout
// on a connection without a socket of its own (TLS).
const lastWriteTimeout = 100 * time.Millisecond

// closeGrace is how long the peer has to answer our close frame before the
// connection is closed under it.
const closeGrace = time.Second

// closeAfterFrame ends the connection once its close frame is written, as
// RFC 6455 (7.1.1) has it: after the closing handshake. The peer gets
// closeGrace to answer with its own close frame, which the connection's read
// loop reads, ending the connection; then it is closed regardless. Closing
// at once, or half-closing, lets a peer busy with earlier frames (a browser
// or Node parsing a burst of ticks) see the end of the stream before it has
// read our close frame, and report 1006 instead of our code.
func (o *Outbox) closeAfterFrame() {
	if o.closeSent != nil {
		o.closeSent()
	}
	_ = o.conn.SetReadDeadline(time.Now().Add(closeGrace))
	time.AfterFunc(closeGrace, func() { _ = o.conn.Close() })
}

// writeTally gathers the metrics of a run of writes (record) and adds them
// to the hub's at once (add): a writer's 64 outboxes, or the writes a
// fan-out makes itself, then cost a few atomic adds together instead of
// seven each. A flusher adds after each of its writes.
type writeTally struct {
	frames, deliveries, bytes, conflated int
	batch, lag                           metric.Tally
}

// record notes one write: counters per write, and the publish-to-write
// lag of every live delivery in it (each frame's own, so the histogram
// weighs deliveries, not writes).
func (t *writeTally) record(m *hubMetrics, batch []entry, deliveries, size, conflated int, done time.Time) {
	t.frames += len(batch)
	t.deliveries += deliveries
	t.bytes += size
	t.conflated += conflated
	m.batchSize.Observe(&t.batch, float64(len(batch)))
	for i := range batch {
		if at := batch[i].at; !at.IsZero() {
			m.lag.Observe(&t.lag, done.Sub(at).Seconds())
		}
	}
}

// add adds what t gathered to the hub's metrics, and empties t.
func (t *writeTally) add(m *hubMetrics) {
	if t.frames == 0 {
		return
	}
	m.framesOut.Add(t.frames)
	m.delivered.Add(t.deliveries)
	m.bytesOut.Add(t.bytes)
	if t.conflated > 0 {
		m.conflated.Add(t.conflated)
	}
	m.batchSize.Add(&t.batch)
	m.lag.Add(&t.lag)
	t.frames, t.deliveries, t.bytes, t.conflated = 0, 0, 0, 0
}
