package engine

import (
	"testing"
	"time"
	"unsafe"
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

// TestOutboxHotFieldsShareLines keeps the layout the write path was
// measured with (see Outbox): what every enqueue and write touches in the
// outbox's first five cache lines, the socket's state in two whole lines in
// front of it, and a subscription's per-event fields in one line.
func TestOutboxHotFieldsShareLines(t *testing.T) {
	var o Outbox
	within := func(name string, off, size, limit uintptr) {
		t.Helper()
		if off+size > limit {
			t.Errorf("%s ends at byte %d, past %d", name, off+size, limit)
		}
	}
	within("Outbox.gen (enqueue's line)", unsafe.Offsetof(o.gen), unsafe.Sizeof(o.gen), 64)
	within("Outbox.sock (take's line)", unsafe.Offsetof(o.sock), unsafe.Sizeof(o.sock), 128)
	within("Outbox.iov (a write's lines)", unsafe.Offsetof(o.iov), unsafe.Sizeof(o.iov), 320)
	var p tcpOutbox
	if off := unsafe.Offsetof(p.Outbox); off%64 != 0 {
		t.Errorf("the outbox starts at byte %d of tcpOutbox, not on a line", off)
	}
	if size := unsafe.Sizeof(p); size <= 448 || size > 1024 {
		// An object of 449 to 1024 bytes gets a size class (512, 576,
		// 640, 704, 768, 896 or 1024) that is a multiple of 64 bytes, in a
		// span that starts on a page: it starts on a line.
		t.Errorf("tcpOutbox is %d bytes: check that its size class keeps it line-aligned", size)
	}
	var s Subscription
	within("Subscription.pendIdx (a fan-out's line)", unsafe.Offsetof(s.pendIdx), unsafe.Sizeof(s.pendIdx), 64)
}
