package engine

import (
	"net"
	"sync"
	"time"

	"github.com/marketcast/marketcast/engine/frame"
	"github.com/marketcast/marketcast/protocol"
)

const (
	closeSlowConsumer   = protocol.CloseSlowConsumer
	closeResumeRequired = protocol.CloseResumeRequired
)

// Outbox is the outbound side of one connection: a bounded queue of shared
// frames and an on-demand flusher that writes them, many per writev.
//
// A conflatable frame (tick, book, forming bar) replaces the frame of the
// same subscription still waiting in the queue, so market data never builds
// a backlog: at most one pending frame per subscribed topic, and it never
// counts against MaxPendingBytes. Everything else (reliable events, closed
// bars, answers) appends and counts; past MaxPendingBytes the connection is
// closed as a slow consumer (4008) and the client resumes from history.
// Nothing is dropped silently.
//
// No goroutine exists while the queue is empty: enqueue starts a flusher
// when the queue turns non-empty and the flusher exits once it drains. The
// flusher also streams the replay of resuming subscriptions from the broker
// while the queue has room (Hub.refill).
type Outbox struct {
	hub     *Hub
	conn    net.Conn
	deflate bool

	mu        sync.Mutex
	queue     []entry
	spare     []entry // the flusher's last batch, reused
	gen       uint64  // bumped whenever queue is handed to the flusher
	bytes     int     // bytes of queued frames that cannot be conflated
	conflated int     // replacements since the last flush, for metrics
	catchup   []*Subscription
	ctrl      [2]ctrlSlot // the pending pong and ping, replaced rather than queued twice
	flushing  bool
	held      bool      // flushing is set and the flusher waits for the hub's delay timer
	batched   bool      // in a Batch, which kicks the flusher when it ends
	deferKick bool      // set while a Batch queues a frame: no kick yet
	lastWrite time.Time // when the flusher last wrote
	state     outboxState
	closeCode uint16

	iov      net.Buffers // owned by the running flusher
	deadline time.Time   // the write deadline set last, owned by the flusher

	closeSent func() // told once the close frame is written (see OnCloseSent)
}

// OnCloseSent registers f, called once this outbox has written its close
// frame: the WebSocket library must then read the peer's answering close
// frame as the end of the handshake, not answer it. Set before use.
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
	sub         *Subscription
	at          time.Time // when the engine accepted the event; zero for answers and replays
	counted     bool      // counted in Outbox.bytes
	replaceable bool      // a newer frame of sub may take its place
	control     bool      // a pong or ping (Outbox.ctrl knows where)
	close       bool      // close the connection once this frame is written
	live        bool      // a live event, which may wait to share a write; nothing else does
}

// NewOutbox returns the outbound side of conn. deflate says whether the
// peer negotiated permessage-deflate.
func (h *Hub) NewOutbox(conn net.Conn, deflate bool) *Outbox {
	return &Outbox{hub: h, conn: conn, deflate: deflate}
}

// enqueue queues one live event frame for sub.
func (o *Outbox) enqueue(sub *Subscription, b []byte, mode Mode, ev *Event, batch *Batch) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.state != stateOpen {
		return
	}
	if mode == Conflated && sub.pendGen == o.gen && sub.pendIdx >= 0 {
		if e := &o.queue[sub.pendIdx]; e.replaceable {
			e.b = b
			if ev.final { // a closed bar is never replaced, and counts
				e.replaceable, e.counted = false, true
				o.bytes += len(b)
			}
			// e.at keeps the older time: lag is measured from the first
			// event the subscriber was owed.
			o.conflated++
			return
		}
	}
	replaceable := mode == Conflated && !ev.final
	e := entry{b: b, sub: sub, at: ev.env.Timestamp, replaceable: replaceable, counted: !replaceable, live: true}
	if batch == nil {
		o.appendLocked(e)
		return
	}
	// Part of a batch: queued now, written when the batch ends, with the
	// rest of what the batch brings this connection.
	o.deferKick = true
	o.appendLocked(e)
	o.deferKick = false
	if !o.batched && o.state == stateOpen {
		o.batched = true
		batch.held = append(batch.held, o)
	}
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
// pong, a ping). It is never conflated and counts against the budget like
// any unconflatable frame; client requests are rate limited as well.
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
		o.bytes = 0
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
	o.bytes = 0
	o.gen++
}

// Pending returns how many frames and counted bytes are queued.
func (o *Outbox) Pending() (frames, bytes int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queue), o.bytes
}

// kickLocked starts a flusher if none runs. It writes at once unless
// frames are arriving faster than the flush delay (this connection was
// written to less than the delay ago) and this one is a live event: then it
// holds the flush until the hub's delay timer, so the frames that follow
// share its write, as TCP autocorking does. A connection that gets a
// message now and then never waits; a busy one writes several frames per
// writev. Answers, snapshots, replays and control frames (urgent) never
// wait, and release a held flush. o.mu is held on entry.
func (o *Outbox) kickLocked(urgent bool) {
	if len(o.queue) == 0 && len(o.catchup) == 0 {
		return
	}
	if o.flushing {
		if o.held && urgent {
			o.held = false // the delay timer will find it released
			go o.flush()
		}
		return
	}
	o.flushing = true
	if d := o.hub.delayed.delay; d > 0 && !urgent {
		if now := time.Now(); now.Sub(o.lastWrite) < d {
			o.held = true
			o.hub.delayed.add(o, now)
			return
		}
	}
	go o.flush()
}

// delayedFlushes releases held outboxes from one timer for the whole hub,
// so holding costs a timer per delay slice rather than one per connection.
// Each outbox is held for the full delay (less holdSlack), as a per-
// connection timer would: a shared window that released everything at once
// would hold a connection that joined it late for almost nothing, and make
// fewer frames per write at the rates the delay is for.
type delayedFlushes struct {
	delay   time.Duration
	mu      sync.Mutex
	pending []heldOutbox // in the order held, so the due ones come first
	timer   *time.Timer
	armed   bool
}

type heldOutbox struct {
	o     *Outbox
	since time.Time
}

// holdSlack releases a hold this much early to share a timer firing with
// the holds just after it.
func (d *delayedFlushes) holdSlack() time.Duration { return d.delay / 8 }

func (d *delayedFlushes) add(o *Outbox, now time.Time) {
	d.mu.Lock()
	d.pending = append(d.pending, heldOutbox{o, now})
	if !d.armed {
		d.armLocked(d.delay)
	}
	d.mu.Unlock()
}

func (d *delayedFlushes) armLocked(after time.Duration) {
	d.armed = true
	if d.timer == nil {
		d.timer = time.AfterFunc(after, d.fire)
		return
	}
	d.timer.Reset(after)
}

func (d *delayedFlushes) fire() {
	now := time.Now()
	d.mu.Lock()
	cut := now.Add(d.holdSlack() - d.delay) // held at or before cut: due
	n := 0
	for n < len(d.pending) && !d.pending[n].since.After(cut) {
		n++
	}
	due := make([]*Outbox, n)
	for i := range due {
		due[i] = d.pending[i].o
	}
	left := copy(d.pending, d.pending[n:])
	clear(d.pending[left:])
	d.pending = d.pending[:left]
	if left > 0 {
		d.armLocked(max(d.pending[0].since.Add(d.delay).Sub(now), d.holdSlack()))
	} else {
		d.armed = false
	}
	d.mu.Unlock()
	for _, o := range due {
		o.mu.Lock()
		release := o.held
		o.held = false
		o.mu.Unlock()
		if release { // else an urgent frame released it already
			go o.flush()
		}
	}
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

// flush writes batches until the queue is empty, then exits.
func (o *Outbox) flush() {
	m := o.hub.metrics
	for {
		o.refillCatchup()
		o.mu.Lock()
		if len(o.queue) == 0 || o.state == stateClosed {
			o.flushing = false
			o.mu.Unlock()
			return
		}
		batch := o.queue
		o.queue, o.spare = o.spare[:0], nil
		o.gen++
		o.bytes = 0
		conflated := o.conflated
		o.conflated = 0
		o.mu.Unlock()

		iov := o.iov[:0]
		var (
			n, size  int
			closeNow bool
		)
		for i := range batch {
			e := &batch[i]
			iov = append(iov, e.b)
			size += len(e.b)
			if e.sub != nil {
				n++
			}
			if e.close {
				closeNow = true
				break // nothing goes after a close frame
			}
		}
		// WriteTo consumes its receiver (it advances the slice as it
		// writes), so keep our own header of the backing array first.
		o.iov = iov[:0]
		// Moving the deadline costs a runtime timer update per write; a
		// deadline still at least half the timeout away is good enough.
		now := time.Now()
		if o.deadline.Sub(now) < o.hub.cfg.WriteTimeout/2 {
			o.deadline = now.Add(o.hub.cfg.WriteTimeout)
			_ = o.conn.SetWriteDeadline(o.deadline)
		}
		_, err := iov.WriteTo(o.conn)
		o.recordFlush(batch, n, size, conflated)
		clear(batch)
		clear(o.iov[:cap(o.iov)])

		if err != nil || closeNow {
			if err != nil {
				m.writeErrors.Inc()
				_ = o.conn.Close()
			} else {
				o.closeAfterFrame()
			}
			o.mu.Lock()
			o.state = stateClosed
			o.flushing = false
			clear(o.queue)
			o.queue = o.queue[:0]
			o.catchup = nil
			o.mu.Unlock()
			return
		}
		o.mu.Lock()
		o.spare = batch[:0]
		o.lastWrite = now
		o.mu.Unlock()
	}
}

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

// recordFlush updates the metrics of one write: counters per flush, and
// the publish-to-write lag of every live delivery in it (each frame's own,
// so the histogram weighs deliveries, not writes).
func (o *Outbox) recordFlush(batch []entry, deliveries, size, conflated int) {
	m := o.hub.metrics
	m.framesOut.Add(len(batch))
	m.delivered.Add(deliveries)
	m.bytesOut.Add(size)
	m.batchSize.Update(float64(len(batch)))
	if conflated > 0 {
		m.conflated.Add(conflated)
	}
	var done time.Time
	for i := range batch {
		if at := batch[i].at; !at.IsZero() {
			if done.IsZero() {
				done = time.Now()
			}
			m.lag.Update(done.Sub(at).Seconds())
		}
	}
}
