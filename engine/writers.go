package engine

import (
	"runtime"
	"sync"
)

// writers write what the outboxes hold, for the whole hub. An outbox with
// something to write joins one ready list, and a few writer goroutines (at
// most GOMAXPROCS) take outboxes from it and write each one's batch with a
// non-blocking writev, in the order they became ready. An outbox whose
// socket would block is handed to a flusher goroutine of its own, which
// waits for the socket (Outbox.flush); everything else costs no goroutine
// start and no wake-up per connection: a fan-out to a thousand connections
// is one writer woken, not a thousand flushers started.
//
// A fan-out (Hub.deliverLocked) writes the first outboxes it makes ready
// itself, up to inlineWrites, each as soon as it has queued to it
// (nats-server's flushClients writes from the goroutine that read the
// messages too): a private message (one subscriber) costs no wake-up of
// another goroutine at all, and a publish to a topic of a thousand
// subscribers still answers after a few dozen writes, not a thousand. With
// GOMAXPROCS > 1 it hands the first share of a large fan-out to the
// writers first, so the other cores write while it writes its own.
//
// The ready list also holds writes while the hub is busy, as TCP
// autocorking holds a segment while earlier ones are in flight: an outbox
// waits in the list until a writer reaches it, and what is published to it
// meanwhile joins its batch; one that got more while it was being written
// goes to the back of the list rather than being written again at once. So
// a connection gets one write per fan-out while the hub keeps up, and more
// frames per write as soon as it does not.
//
// Lock order: Outbox.mu → writers.mu (an outbox joins the list with its
// lock held); a writer takes outboxes from the list with only writers.mu
// held and writes each with neither held.
type writers struct {
	mu      sync.Mutex
	ready   []*Outbox // ready[head:] wait, oldest first
	head    int
	running int // writer goroutines
	max     int // GOMAXPROCS at the start
	metrics *hubMetrics
	started uint64 // writer goroutines ever started (for tests)
}

// writerTake is how many outboxes a writer takes from the list at a time:
// one lock round for many writes, few enough that other writers share the
// work of a large fan-out.
const writerTake = 64

// writerSpawn is how many ready outboxes per running writer make another
// writer start, while fewer than max run.
const writerSpawn = 2 * writerTake

func (w *writers) init(m *hubMetrics) { w.max, w.metrics = max(1, runtime.GOMAXPROCS(0)), m }

// add makes o ready. o.flushing is set: o is the list's (then a
// writer's) until a writer releases it. o.mu may be held.
func (w *writers) add(o *Outbox) {
	w.mu.Lock()
	w.ready = append(w.ready, o)
	start := w.running == 0 || (w.running < w.max && len(w.ready)-w.head > writerSpawn*w.running)
	if start {
		w.running++
		w.started++
	}
	w.mu.Unlock()
	if start {
		go w.run()
	}
}

// run writes ready outboxes until the list is empty.
func (w *writers) run() {
	var (
		mine  [writerTake]*Outbox
		tally writeTally // of the writes of one take
	)
	for {
		w.mu.Lock()
		n := copy(mine[:], w.ready[w.head:])
		if n == 0 {
			w.running--
			w.mu.Unlock()
			return
		}
		clear(w.ready[w.head : w.head+n])
		switch w.head += n; {
		case w.head == len(w.ready):
			w.ready, w.head = w.ready[:0], 0
		case w.head > len(w.ready)/2: // never empty under load: reuse the front
			left := copy(w.ready, w.ready[w.head:])
			clear(w.ready[left:])
			w.ready, w.head = w.ready[:left], 0
		}
		w.mu.Unlock()
		for i, o := range mine[:n] {
			o.writeReady(&tally)
			mine[i] = nil
		}
		tally.add(w.metrics)
	}
}
