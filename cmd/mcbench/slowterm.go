package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/marketcast/marketcast/bench/load"
	"github.com/marketcast/marketcast/protocol"
)

// slowterm measures application-limited terminals among fast ones (issue
// 19): o.subs terminals all subscribed to the ticks of o.termSymbols
// symbols, each ticking o.tickRate times a second, of which the first
// o.slow are application-limited as a busy browser tab or an asyncio
// strategy is: they read the socket eagerly into a queue that their
// handler drains at o.handler per message, slower than the feed. With
// o.flow they use flow control as marketcast's clients do (32 credits
// first, then the window their handler gets through in 250 ms, topped up
// at half); without, they are the seed's clients.
//
// Three phases of o.duration: the fast terminals alone (the reference),
// with the limited ones connected (limited from the start), then with the
// limited ones closed (a bracket against drift). Per phase: the fast terminals' latency and the
// server's CPU; for the limited phase, the age of each tick when the
// limited terminals' handler takes it (p50, p99, max) and, at the end of
// the phase, the age of the newest tick each has handled.
func slowterm(ctx context.Context, o options) error {
	if o.slow >= o.subs {
		return fmt.Errorf("slowterm: -slow %d of -subs %d", o.slow, o.subs)
	}
	if o.subs > perProcess {
		return fmt.Errorf("slowterm: at most %d terminals (one process)", perProcess)
	}
	b, err := start(ctx, o, load.BaseConfig(0, 0))
	if err != nil {
		return err
	}
	defer b.close()
	topics := topicsFor(o, 0)
	seed := make([]load.Outgoing, len(topics))
	for i, t := range topics {
		seed[i] = load.Outgoing{Topic: t, Data: payload(time.Now(), 0, o.payload)}
	}
	if err := b.t.Publish(seed); err != nil { // the symbols exist, with a snapshot
		return err
	}
	// Terminals 0..fast-1 handle at once; fast..subs-1 are limited, and
	// connect after the reference phase, limited from the start.
	fast := o.subs - o.slow
	terms := make([]*limitedTerm, o.slow)
	for k := range terms {
		terms[k] = newLimitedTerm(b, fast+k, o)
	}
	b.route = func(i int, msg []byte) bool {
		if i < fast {
			return false // a fast terminal: the recorder takes it
		}
		terms[i-fast].receive(msg)
		return true
	}
	if err := b.connect(ctx, fast); err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond) // snapshots drain before measuring
	rate := o.termSymbols * o.tickRate
	phase := func(name string) (sample, error) {
		var published int
		s, err := b.measure("[slowterm "+name+"]", func() error {
			sent, err := b.publish(ctx, rate, o.duration, topics)
			for _, n := range sent {
				published += n
			}
			return err
		})
		report(fmt.Sprintf("SlowTerm/flow=%v/subs=%d/slow=%d/handler=%v/rate=%d/phase=%s", o.flow, o.subs, o.slow, o.handler, rate, name),
			s, 0, fmt.Sprintf("(latency: the %d fast terminals; %d messages published)", fast, published))
		return s, err
	}
	if _, err := phase("fast-only"); err != nil {
		return err
	}
	ages := hdrhistogram.New(1, 600_000_000, 3)
	if err := connectLimited(ctx, b, terms, ages); err != nil {
		return err
	}
	if _, err := phase("limited"); err != nil {
		return err
	}
	now := time.Now()
	var endAges []float64
	var handled, backlog int64
	for _, t := range terms {
		a, h, q := t.stop(now)
		endAges = append(endAges, a.Seconds()*1000)
		handled += h
		backlog += int64(q)
	}
	var worst, sum float64
	for _, a := range endAges {
		worst = max(worst, a)
		sum += a
	}
	q := load.Summarise(ages)
	name := fmt.Sprintf("SlowTermAge/flow=%v/subs=%d/slow=%d/handler=%v/rate=%d", o.flow, o.subs, o.slow, o.handler, rate)
	if label != "" {
		name += "/variant=" + label
	}
	fmt.Printf("Benchmark%s 1 %.3f age-p50-ms %.3f age-p99-ms %.3f age-max-ms %.3f end-age-mean-ms %.3f end-age-max-ms %d handled %d queued-at-end\n",
		name, q.P50, q.P99, q.Max, sum/float64(len(endAges)), worst, handled, backlog)
	for _, t := range terms {
		t.c().Close()
	}
	_, err = phase("limited-closed")
	return err
}

// connectLimited connects the limited terminals, each with its handler
// running (and, with flow control, its first grant), and waits until every
// one is subscribed.
func connectLimited(ctx context.Context, b *bench, terms []*limitedTerm, ages *hdrhistogram.Histogram) error {
	want := b.t.Ready()
	b.clients = append(b.clients, make([]*load.RawConn, len(terms))...)
	b.counts = append(b.counts, make([]atomic.Int64, len(terms))...)
	for _, t := range terms {
		t.limit(ages)
		tp := topicsFor(b.o, t.i)
		c, err := b.t.Dial(sourceIP(t.i), "u"+strconv.Itoa(t.i), tp, b.o.deflate, b.onData(t.i))
		if err != nil {
			return fmt.Errorf("dial limited terminal %d: %w", t.i, err)
		}
		b.clients[t.i] = c
		if t.flow {
			t.grant(protocol.FlowInitialCredit)
		}
		want += int64(len(tp))
	}
	for deadline := time.Now().Add(60 * time.Second); b.t.Ready() < want; {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("only %d of %d subscriptions confirmed", b.t.Ready(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	progress("%d limited terminals connected (flow control %v)", len(terms), b.o.flow)
	return nil
}

// limitedTerm is an application-limited terminal: its connection's read
// loop queues every message at once (as a browser or an asyncio client
// reads its socket), and a handler takes one every o.handler.
type limitedTerm struct {
	b    *bench
	i    int
	o    options
	flow bool

	mu       sync.Mutex
	cond     *sync.Cond
	queue    [][]byte
	limited  bool
	stopped  bool
	ages     *hdrhistogram.Histogram // shared; under agesMu
	newest   time.Time               // the sent time of the newest tick handled
	handled  int64
	granted  int64
	handleMs float64 // moving average of the handler's time per message

	running atomic.Bool
}

var agesMu sync.Mutex

func newLimitedTerm(b *bench, i int, o options) *limitedTerm {
	t := &limitedTerm{b: b, i: i, o: o, flow: o.flow}
	t.cond = sync.NewCond(&t.mu)
	return t
}

func (t *limitedTerm) c() *load.RawConn { return t.b.clients[t.i] }

// receive is the read loop's: queue, or handle at once while not limited.
func (t *limitedTerm) receive(msg []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	if !t.limited {
		t.handledLocked(msg, 0)
		return
	}
	t.queue = append(t.queue, append([]byte(nil), msg...))
	t.cond.Signal()
}

// limit starts the handler: from now on each message takes o.handler.
func (t *limitedTerm) limit(ages *hdrhistogram.Histogram) {
	t.mu.Lock()
	t.limited, t.ages = true, ages
	t.mu.Unlock()
	if t.running.Swap(true) {
		return
	}
	go func() {
		for {
			t.mu.Lock()
			for len(t.queue) == 0 && !t.stopped {
				t.cond.Wait()
			}
			if t.stopped {
				t.mu.Unlock()
				return
			}
			msg := t.queue[0]
			t.queue[0] = nil
			t.queue = t.queue[1:]
			t.mu.Unlock()
			start := time.Now()
			time.Sleep(t.o.handler) // the application's work: not the load generator's CPU
			t.mu.Lock()
			t.handledLocked(msg, time.Since(start))
			t.mu.Unlock()
		}
	}()
}

// handledLocked counts a message handled, records its age while limited,
// and, with flow control, grants what the client policy grants. t.mu is
// held on entry.
func (t *limitedTerm) handledLocked(msg []byte, took time.Duration) {
	t.handled++
	if sent, ok := load.SentAt(msg); ok && t.limited {
		if sent.After(t.newest) {
			t.newest = sent
		}
		agesMu.Lock()
		_ = t.ages.RecordValue(time.Since(sent).Microseconds())
		agesMu.Unlock()
	}
	ms := took.Seconds() * 1000
	if t.handled == 1 {
		t.handleMs = ms
	} else {
		t.handleMs += 0.2 * (ms - t.handleMs)
	}
	if !t.flow || t.granted == 0 {
		return
	}
	window := int64(protocol.FlowMaxGrant)
	if t.handleMs > 0 {
		window = min(int64(protocol.FlowMaxGrant), max(int64(protocol.FlowMinGrant), int64(float64(protocol.FlowGrantMillis)/t.handleMs)))
	}
	if outstanding := t.granted - t.handled; outstanding*2 <= window {
		t.grantLocked(window - outstanding)
	}
}

func (t *limitedTerm) grant(n int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.grantLocked(n)
}

func (t *limitedTerm) grantLocked(n int64) {
	t.granted += n
	_ = t.c().Send([]byte(`{"type":"credit","n":` + strconv.FormatInt(n, 10) + `}`))
}

// stop ends the handler; it returns the age of the newest tick handled at
// now, how many it handled and how many were still queued.
func (t *limitedTerm) stop(now time.Time) (time.Duration, int64, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	t.cond.Broadcast()
	age := time.Duration(0)
	if !t.newest.IsZero() {
		age = now.Sub(t.newest)
	}
	return age, t.handled, len(t.queue)
}
