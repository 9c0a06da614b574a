package engine

import "time"

// FlusherState tells a test what the outbox's flusher is doing: whether one
// runs and whether it is held for the hub's delay timer. Tests wait on it
// instead of sleeping while a flusher takes a frame.
func (o *Outbox) FlusherState() (flushing, held bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.flushing, o.held
}

// SetClock makes the hub read the time from now: when events are accepted,
// and when a subscription with an interval is next due.
func (h *Hub) SetClock(now func() time.Time) { h.now = now }

// FireIntervals releases what the interval timers hold that is due by the
// hub's clock (tests with a clock of their own drive the timers with it).
func (h *Hub) FireIntervals() { h.intervals.fireAll() }

// HeldByIntervals is how many subscriptions wait in the interval timers.
func (h *Hub) HeldByIntervals() int { return h.intervals.held() }

// CreditLeft is what the peer may still receive, and whether flow control
// is on.
func (o *Outbox) CreditLeft() (credit int, on bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.credit, o.flow
}

// Deferred is the update sub's interval holds back, or nil.
func (sub *Subscription) Deferred() []byte {
	sub.out.mu.Lock()
	defer sub.out.mu.Unlock()
	return sub.ivl.deferred
}

// Buffers is how many queue entries and iovecs the outbox keeps room for.
func (o *Outbox) Buffers() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return cap(o.queue) + cap(o.spare) + cap(o.iov) + cap(o.chunk)
}

// SetWriters makes the hub run at most n writer goroutines, and fan-outs
// hand their writes to them as they would with GOMAXPROCS n.
func (h *Hub) SetWriters(n int) {
	h.writers.mu.Lock()
	defer h.writers.mu.Unlock()
	h.writers.max = n
}

// WritersStarted is how many writer goroutines the hub ever started.
func (h *Hub) WritersStarted() uint64 {
	h.writers.mu.Lock()
	defer h.writers.mu.Unlock()
	return h.writers.started
}

// InlineWrites is how many outboxes a fan-out writes itself, at most.
const InlineWrites = inlineWrites
