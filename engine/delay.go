package engine

import (
	"sync"
	"time"
)

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
			o.hub.writers.add(o)
		}
	}
}
