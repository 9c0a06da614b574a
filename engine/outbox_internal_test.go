package engine

import (
	"testing"
	"time"
)

// TestHeldFlushWaitsItsOwnDelay: the hub's delay timer releases only the
// outboxes held for the delay (less the slack), keeps the ones held since,
// and is armed again for the first of those. A shared window that released
// everyone at once would hold a late joiner for almost nothing.
func TestHeldFlushWaitsItsOwnDelay(t *testing.T) {
	d := &delayedFlushes{delay: time.Hour}
	early, late := &Outbox{}, &Outbox{} // not held: fire starts no flusher
	now := time.Now()
	d.add(early, now.Add(-time.Hour))
	d.add(late, now.Add(-time.Minute))
	defer d.timer.Stop()
	d.fire()
	if len(d.pending) != 1 || d.pending[0].o != late {
		t.Fatalf("after the first hold is due, pending %v; want only the later one", d.pending)
	}
	if !d.armed {
		t.Fatal("the timer is not armed for the hold still waiting")
	}
	d.pending[0].since = now.Add(-time.Hour)
	d.fire()
	if len(d.pending) != 0 || d.armed {
		t.Fatalf("pending %v, armed %v after every hold is due", d.pending, d.armed)
	}
}
