package engine

import (
	"net"
	"sync"
	"time"

	"github.com/marketcast/marketcast/engine/frame"
)

// Close codes the engine itself decides.
const (
	CloseSlowConsumer uint16 = 4008
)

// Subscriber is the outbound side of one connection: a bounded queue of
// shared frames and an on-demand flusher that writes them, many per writev.
//
// A conflatable frame replaces the frame of the same subscription still
// waiting in the queue, so market data never builds a backlog: at most one
// pending frame per subscribed topic. Other frames (private events, closed
// bars, answers) append; if they would push the queue past MaxPendingBytes,
// the subscriber is closed as a slow consumer (4008) and the client resumes
// from history. Nothing is dropped silently.
//
// No goroutine exists while the queue is empty: enqueue starts a flusher
// when the queue turns non-empty and the flusher exits once it drains.
type Subscriber struct {
	hub     *Hub
	conn    net.Conn
	deflate bool

	mu        sync.Mutex
	queue     []entry
	spare     []entry // the flusher's last batch, reused
	gen       uint64  // bumped whenever queue is handed to the flusher
	bytes     int     // bytes of live frames queued
	conflated int     // replacements since the last flush, for metrics
	flushing  bool
	state     subState
	closeCode uint16

	iov      net.Buffers // owned by the running flusher
	deadline time.Time   // the write deadline set last, owned by the flusher
}

type subState uint8

const (
	stateOpen    subState = iota
	stateClosing          // a close frame is queued; nothing more is accepted
	stateClosed           // the connection is closed
)

type entry struct {
	b           []byte
	sub         *Subscription
	at          time.Time // when the engine accepted the event; zero for answers
	replaceable bool      // a newer frame of sub may take its place
	close       bool      // close the connection once this frame is written
}

// Subscription ties a subscriber to one topic.
type Subscription struct {
	s    *Subscriber
	t    *topic
	proj *frame.Projection
	// The queue slot of this subscription's replaceable frame, valid while
	// pendGen equals s.gen. Guarded by s.mu.
	pendGen uint64
	pendIdx int
	idx     int // position in the topic's subscriber list, guarded by the topic's mu
}

// Topic is the subscribed topic's key.
func (sub *Subscription) Topic() string { return sub.t.key }

// NewSubscriber returns the outbound side of conn. deflate says whether the
// peer negotiated permessage-deflate.
func (h *Hub) NewSubscriber(conn net.Conn, deflate bool) *Subscriber {
	return &Subscriber{hub: h, conn: conn, deflate: deflate}
}

// enqueue queues one live event frame for sub.
func (s *Subscriber) enqueue(sub *Subscription, b []byte, mode Mode, ev *Event) {
	s.enqueueFrame(sub, b, mode, ev, false)
}

// enqueueReplay queues a snapshot or a history replay. Its bytes are not
// counted against MaxPendingBytes: they belong to events the topic holds
// anyway, so the queue only adds a reference, and a resume of a long backlog
// must not trip the slow-consumer limit by itself.
func (s *Subscriber) enqueueReplay(sub *Subscription, b []byte, ev *Event) {
	s.enqueueFrame(sub, b, Reliable, ev, true)
}

func (s *Subscriber) enqueueFrame(sub *Subscription, b []byte, mode Mode, ev *Event, replay bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateOpen {
		return
	}
	if mode == Conflated && sub.pendGen == s.gen && sub.pendIdx >= 0 {
		if e := &s.queue[sub.pendIdx]; e.replaceable {
			s.bytes += len(b) - len(e.b)
			e.b, e.replaceable = b, !ev.final
			// e.at keeps the older time: lag is measured from the first
			// event the subscriber was owed.
			s.conflated++
			return
		}
	}
	replaceable := mode == Conflated && !ev.final
	if !replaceable && !replay && s.bytes+len(b) > s.hub.cfg.MaxPendingBytes {
		s.closeLocked(CloseSlowConsumer, "slow consumer")
		s.hub.metrics.slowConsumers.Inc()
		return
	}
	e := entry{b: b, sub: sub, replaceable: replaceable}
	if !replay { // replays are old by nature: they would skew the lag metric
		e.at = ev.env.Timestamp
		s.bytes += len(b)
	}
	s.queue = append(s.queue, e)
	if mode == Conflated {
		sub.pendGen, sub.pendIdx = s.gen, len(s.queue)-1
	}
	s.kickLocked()
}

// Send queues a frame that belongs to this connection alone (an answer, a
// pong, a ping). It is never conflated and not counted against the slow
// consumer limit: client requests are rate limited instead.
func (s *Subscriber) Send(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateOpen {
		return
	}
	s.queue = append(s.queue, entry{b: b})
	s.bytes += len(b)
	s.kickLocked()
}

// Close queues a close frame with code and reason after what is already
// queued (a slow consumer's backlog is dropped first), then closes the
// connection once it is written. Further frames are refused.
func (s *Subscriber) Close(code uint16, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked(code, reason)
}

// closeLocked implements Close. s.mu is held on entry.
func (s *Subscriber) closeLocked(code uint16, reason string) {
	if s.state != stateOpen {
		return
	}
	s.state = stateClosing
	s.closeCode = code
	if code == CloseSlowConsumer {
		clear(s.queue)
		s.queue = s.queue[:0]
		s.bytes = 0
		s.gen++
	}
	s.queue = append(s.queue, entry{b: frame.Close(code, reason), close: true})
	// A flusher blocked on a peer that reads nothing gives up after the
	// write timeout; the backlog is already dropped, so memory stays bounded.
	s.kickLocked()
}

// CloseCode is the code of the close frame queued by Close, or 0.
func (s *Subscriber) CloseCode() uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeCode
}

// Detach drops everything queued and refuses further frames. The gateway
// calls it when the connection is gone.
func (s *Subscriber) Detach() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = stateClosed
	clear(s.queue)
	s.queue = s.queue[:0]
	s.bytes = 0
	s.gen++
}

// Pending returns how many frames and bytes are queued.
func (s *Subscriber) Pending() (frames, bytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue), s.bytes
}

// kickLocked starts a flusher if none runs, at once or after the hub's
// flush delay. s.mu is held on entry.
func (s *Subscriber) kickLocked() {
	if !s.flushing && len(s.queue) > 0 {
		s.flushing = true
		if s.hub.delayed.delay > 0 {
			s.hub.delayed.add(s)
			return
		}
		go s.flush()
	}
}

// delayedFlushes starts the flushers of every subscriber kicked during one
// delay window together, from one timer, so a flush delay costs a timer per
// window rather than one per subscriber.
type delayedFlushes struct {
	delay   time.Duration
	mu      sync.Mutex
	pending []*Subscriber
	armed   bool
}

func (d *delayedFlushes) add(s *Subscriber) {
	d.mu.Lock()
	d.pending = append(d.pending, s)
	if !d.armed {
		d.armed = true
		time.AfterFunc(d.delay, d.fire)
	}
	d.mu.Unlock()
}

func (d *delayedFlushes) fire() {
	d.mu.Lock()
	due := d.pending
	d.pending, d.armed = nil, false
	d.mu.Unlock()
	for _, s := range due {
		go s.flush()
	}
}

// flush writes batches until the queue is empty, then exits.
func (s *Subscriber) flush() {
	m := s.hub.metrics
	for {
		s.mu.Lock()
		if len(s.queue) == 0 || s.state == stateClosed {
			s.flushing = false
			s.mu.Unlock()
			return
		}
		batch := s.queue
		s.queue, s.spare = s.spare[:0], nil
		s.gen++
		s.bytes = 0
		conflated := s.conflated
		s.conflated = 0
		s.mu.Unlock()

		iov := s.iov[:0]
		var (
			n, size  int
			oldest   time.Time
			closeNow bool
		)
		for i := range batch {
			e := &batch[i]
			iov = append(iov, e.b)
			size += len(e.b)
			if e.sub != nil {
				n++
				if !e.at.IsZero() && (oldest.IsZero() || e.at.Before(oldest)) {
					oldest = e.at
				}
			}
			if e.close {
				closeNow = true
				break // nothing goes after a close frame
			}
		}
		s.iov = iov[:0]
		// Moving the deadline costs a runtime timer update per write; a
		// deadline still at least half the timeout away is good enough.
		now := time.Now()
		if s.deadline.Sub(now) < s.hub.cfg.WriteTimeout/2 {
			s.deadline = now.Add(s.hub.cfg.WriteTimeout)
			_ = s.conn.SetWriteDeadline(s.deadline)
		}
		_, err := iov.WriteTo(s.conn)

		m.framesOut.Add(len(batch))
		m.delivered.Add(n)
		m.bytesOut.Add(size)
		m.batchSize.Update(float64(len(batch)))
		if conflated > 0 {
			m.conflated.Add(conflated)
		}
		if !oldest.IsZero() {
			m.lag.UpdateDuration(oldest)
		}
		clear(batch)
		clear(s.iov[:cap(s.iov)])

		if err != nil || closeNow {
			if err != nil {
				m.writeErrors.Inc()
			}
			_ = s.conn.Close()
			s.mu.Lock()
			s.state = stateClosed
			s.flushing = false
			clear(s.queue)
			s.queue = s.queue[:0]
			s.mu.Unlock()
			return
		}
		s.mu.Lock()
		s.spare = batch[:0]
		s.mu.Unlock()
	}
}
