// Package brokertest is the conformance suite of engine.Broker: one set of
// tests that every implementation runs (the memory broker in engine's
// tests, the NATS JetStream broker in engine/natsbroker's, against a real
// NATS server), so a broker is right by construction rather than by its own
// tests' idea of right. It drives each broker directly and through hubs, as
// a node does: numbering and epochs, history reads, watching, gaps filled
// from history, sweeps, idempotency keys, failures and a lost store.
//
// A test that a broker fails points at the rule in the Broker interface it
// breaks; a broker that cannot model a fault (the memory broker is never
// unreachable) says so in its Backend, and the tests that need the fault
// skip, saying why.
package brokertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/internal/testwait"
	"github.com/marketcast/marketcast/protocol"
)

// Backend is one broker implementation under test: a fresh store, the
// brokers of the nodes that share it, and the faults it can model.
type Backend interface {
	// Node returns the broker of one more node on the store. A broker that
	// serves a single node (Nodes() == 1) is returned once.
	Node(t *testing.T) engine.Broker
	// Nodes is how many nodes can share the store.
	Nodes() int
	// Advance moves the brokers' clock forward by d, ageing history, and
	// reports whether it can (false: the store keeps real time).
	Advance(d time.Duration) bool
	// Forget makes the store forget an idle, unwatched topic, as its
	// expiry does (the memory broker's sweep, a stream's maximum age).
	Forget(t *testing.T, topic string)
	// LoseStore loses every topic's history: a restart of an in-memory
	// broker, a NATS server back without its store. It reports whether the
	// brokers of existing nodes live on (false: the process that held the
	// store is gone with its nodes; make new ones with Node).
	LoseStore(t *testing.T) (nodesLive bool)
	// Break makes the store unreachable, and returns once every node's
	// broker can know it (its connection is down), until restore is
	// called; nil when the broker cannot be unreachable. A publish in
	// flight when a store goes may have an unknown outcome
	// (engine.ErrOutcomeUnknown); one made once the node knows is never
	// sent, so it is engine.ErrUnavailable.
	Break(t *testing.T) (restore func())
	// FindsLostLast reports whether the broker finds a lost live event
	// that no later event reveals (a periodic head check).
	FindsLostLast() bool
}

// Factory makes a fresh backend whose topics keep history within limits.
type Factory func(t *testing.T, limits engine.HistoryLimits) Backend

// watcher is implemented by brokers that can tell whether a topic is
// watched (both of marketcast's do).
type watcher interface{ Watching(topic string) bool }

var defaultLimits = engine.HistoryLimits{Size: 1000, TTL: 5 * time.Minute, MaxBytes: 16 << 20}

// Run runs the whole suite against the brokers factory makes.
func Run(t *testing.T, factory Factory) {
	small := defaultLimits
	small.Size = 10
	tests := []struct {
		name   string
		limits engine.HistoryLimits
		run    func(*testing.T, Backend)
	}{
		{"PublishNumbersAndStores", defaultLimits, testPublish},
		{"EmptyTopicHasNoRun", defaultLimits, testEmptyTopic},
		{"ConcurrentPublishersAreContiguous", defaultLimits, testConcurrent},
		{"HistoryPaging", defaultLimits, testPaging},
		{"HistoryBounds", small, testBounds},
		{"WatchBeforeHistoryLosesNothing", defaultLimits, testWatchBeforeHistory},
		{"WatchesAreCounted", defaultLimits, testWatchCounting},
		{"GapsAreBackfilled", defaultLimits, testGapBackfill},
		{"FailedBackfillResets", defaultLimits, testFailedBackfill},
		{"HubSweepEndsWatches", defaultLimits, testHubSweep},
		{"FailedSubscribeIsAbandoned", defaultLimits, testAbandon},
		{"ForgottenTopicStartsNewRun", defaultLimits, testForget},
		{"IdempotencyKeysPerTopic", defaultLimits, testIdempotency},
		{"ResumeDecisions", defaultLimits, testResume},
		{"HubErrors", defaultLimits, testHubErrors},
		{"UnavailableMeansNotStored", defaultLimits, testUnavailable},
		{"LostStoreStartsNewEpoch", defaultLimits, testLostStore},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, factory(t, tc.limits)) })
	}
}

// testPublish: a topic's events are numbered 1, 2, 3… in one epoch, each
// topic on its own, and what is stored reads back as it was published.
func testPublish(t *testing.T, be Backend) {
	n := nodes(t, be, 1)[0]
	first := n.publish(msg("orders:a", 1))
	second := n.publish(msg("orders:a", 2))
	if first.Sequence() != 1 || second.Sequence() != 2 || first.Epoch() == "" || second.Epoch() != first.Epoch() {
		t.Fatalf("events %v, %v; want 1 and 2 of one epoch", first.Position(), second.Position())
	}
	other := n.publish(msg("orders:b", 1))
	if other.Sequence() != 1 || other.Epoch() == first.Epoch() {
		t.Fatalf("another topic's first event %v; want 1 of its own epoch (not %s)", other.Position(), first.Epoch())
	}
	signal := engine.Message{Topic: "signals:S1", Mode: engine.Reliable, Type: "strategy_signal", Channel: "signals",
		StrategyID: "S1", Data: []byte(`{"side":"buy"}`)}
	notice := engine.Message{Topic: "notifications:*", Mode: engine.Reliable, Type: "system_notice",
		Channel: "notifications", Broadcast: true, Data: []byte(`{"title":"t"}`)}
	for _, m := range []engine.Message{signal, notice} {
		ev := n.publish(m)
		h := n.history(m.Topic, 0, 10)
		if len(h.Events) != 1 || h.Last == nil || h.First != 1 {
			t.Fatalf("%s: history %+v; want its one event", m.Topic, h)
		}
		for _, got := range []*engine.Event{ev, h.Events[0], h.Last} {
			g := got.Message()
			if got.Topic() != m.Topic || g.Type != m.Type || g.Channel != m.Channel || g.StrategyID != m.StrategyID ||
				g.Broadcast != m.Broadcast || string(g.Data) != string(m.Data) || got.Position() != ev.Position() ||
				!got.Time().Equal(ev.Time()) {
				t.Fatalf("%s: read back %+v at %v; published %+v at %v", m.Topic, g, got.Time(), m, ev.Time())
			}
		}
	}
	h := n.history("orders:a", 0, 10)
	if !sameSeqs(seqs(h.Events), []uint64{1, 2}) || h.Head() != second.Position() || h.First != 1 {
		t.Fatalf("history %v, head %v, first %d; want 1 2, head %v, first 1", seqs(h.Events), h.Head(), h.First, second.Position())
	}
}

// testEmptyTopic: a topic nothing was published to has no run, so no
// epoch; the subscribe answer promises none, and the first event's epoch
// is then the one every answer names.
func testEmptyTopic(t *testing.T, be Backend) {
	n := nodes(t, be, 1)[0]
	h := n.history("orders:nobody", 0, 10)
	if h.Last != nil || h.First != 0 || len(h.Events) != 0 || h.Head() != (engine.Position{}) {
		t.Fatalf("history of an empty topic %+v; want nothing", h)
	}
	c, r := n.subscribe("orders:nobody", engine.SubscribeOptions{})
	if r.Position != (engine.Position{}) || r.Recovered {
		t.Fatalf("answer for an empty topic %+v; want sequence 0 and no epoch", r)
	}
	ev := n.publish(msg("orders:nobody", 1))
	c.expect(1, 1, ev.Epoch())
	if _, r := n.subscribe("orders:nobody", engine.SubscribeOptions{}); r.Position != ev.Position() {
		t.Fatalf("answer after the first event %+v; want %v", r.Position, ev.Position())
	}
}

// testConcurrent: publishers on several nodes at once give one topic the
// sequence 1..N with no gap and no duplicate, in one epoch, and a
// subscriber on another node gets every event in order.
func testConcurrent(t *testing.T, be Backend) {
	ns := nodes(t, be, 4)
	watcher := ns[3]
	c, _ := watcher.subscribe("orders:u", engine.SubscribeOptions{})
	const per = 40
	var (
		mu     sync.Mutex
		got    []uint64
		epochs = map[string]bool{}
		wg     sync.WaitGroup
	)
	for i, n := range ns[:3] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range per {
				ev, err := n.hub.Publish(context.Background(), msg("orders:u", 1000*i+j))
				if err != nil {
					t.Errorf("publisher %d: %v", i, err)
					return
				}
				mu.Lock()
				got = append(got, ev.Sequence())
				epochs[ev.Epoch()] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	slices.Sort(got)
	if !sameSeqs(got, span(1, 3*per)) || len(epochs) != 1 {
		t.Fatalf("sequences %v in epochs %v; want 1..%d in one", got, epochs, 3*per)
	}
	var epoch string
	for e := range epochs {
		epoch = e
	}
	c.expect(1, 3*per, epoch)
	h := watcher.history("orders:u", 0, 1000)
	if !sameSeqs(seqs(h.Events), span(1, 3*per)) {
		t.Fatalf("history %v; want 1..%d", seqs(h.Events), 3*per)
	}
}

// testPaging: History reads at most limit events after `after`, oldest
// first; limit 0 reads only the stream's state; First and Last say what is
// held.
func testPaging(t *testing.T, be Backend) {
	n := nodes(t, be, 1)[0]
	var last *engine.Event
	for i := 1; i <= 25; i++ {
		last = n.publish(msg("orders:p", i))
	}
	for _, c := range []struct {
		after uint64
		limit int
		want  []uint64
	}{
		{0, 10, span(1, 10)}, {10, 10, span(11, 20)}, {20, 10, span(21, 25)}, {3, 1, []uint64{4}},
		{24, 10, []uint64{25}}, {25, 10, nil}, {30, 10, nil}, {0, 0, nil}, {5, 0, nil},
	} {
		h := n.history("orders:p", c.after, c.limit)
		if !sameSeqs(seqs(h.Events), c.want) || h.First != 1 || h.Last == nil || h.Last.Position() != last.Position() {
			t.Fatalf("after %d limit %d: events %v first %d last %v; want %v, first 1, last %v",
				c.after, c.limit, seqs(h.Events), h.First, h.Head(), c.want, last.Position())
		}
		for i, ev := range h.Events {
			if want := fmt.Sprintf(`{"n":%d}`, c.want[i]); string(ev.Message().Data) != want {
				t.Fatalf("event %d carries %s; want %s", ev.Sequence(), ev.Message().Data, want)
			}
		}
	}
}

// testBounds: history keeps the last Size events (First moves on, Last
// stays the head) and, where the clock can be moved, forgets events older
// than TTL while the run goes on.
func testBounds(t *testing.T, be Backend) {
	n := nodes(t, be, 1)[0]
	var last *engine.Event
	for i := 1; i <= 25; i++ {
		last = n.publish(msg("orders:b", i))
	}
	h := n.history("orders:b", 3, 100)
	if h.First != 16 || h.Head() != last.Position() || !sameSeqs(seqs(h.Events), span(16, 25)) {
		t.Fatalf("after 25 events with room for 10: first %d, head %v, events after 3 %v; want 16, %v, 16..25",
			h.First, h.Head(), seqs(h.Events), last.Position())
	}
	if !be.Advance(3 * time.Minute) { // TTL is 5 minutes
		t.Log("the store keeps real time: the age bound is tested by the broker's own tests")
		return
	}
	for i := 26; i <= 28; i++ {
		last = n.publish(msg("orders:b", i))
	}
	be.Advance(3 * time.Minute) // 16..25 are 6 minutes old, 26..28 3 minutes
	h = n.history("orders:b", 0, 100)
	if h.First != 26 || h.Head() != last.Position() || !sameSeqs(seqs(h.Events), span(26, 28)) {
		t.Fatalf("after the TTL: first %d, head %v, events %v; want 26, %v, 26..28", h.First, h.Head(), seqs(h.Events), last.Position())
	}
	be.Advance(6 * time.Minute) // everything is too old; the run is kept
	h = n.history("orders:b", 0, 100)
	if h.First != 0 || len(h.Events) != 0 || h.Head() != last.Position() {
		t.Fatalf("all expired: first %d, events %v, head %v; want none held and the run at %v", h.First, seqs(h.Events), h.Head(), last.Position())
	}
	if next := n.publish(msg("orders:b", 29)); next.Sequence() != 29 || next.Epoch() != last.Epoch() {
		t.Fatalf("after expiry the run continues: got %v; want 29 of %s", next.Position(), last.Epoch())
	}
}

// testWatchBeforeHistory: a node that watches a topic and then reads its
// history misses nothing published meanwhile: every event is in the read
// or reaches the node after it.
func testWatchBeforeHistory(t *testing.T, be Backend) {
	ns := nodes(t, be, 2)
	pub, reader := ns[0], ns[1]
	const total = 60
	published := make(chan uint64, total)
	go func() {
		defer close(published)
		for i := 1; i <= total; i++ {
			ev, err := pub.hub.Publish(context.Background(), msg("orders:w", i))
			if err != nil {
				t.Errorf("publish %d: %v", i, err)
				return
			}
			published <- ev.Sequence()
		}
	}()
	for s := range published { // watch while publishing goes on
		if s >= total/3 {
			break
		}
	}
	if err := reader.broker.Watch(context.Background(), "orders:w"); err != nil {
		t.Fatal(err)
	}
	defer reader.broker.Unwatch("orders:w")
	h := reader.history("orders:w", 0, 1000)
	for range published { // the publisher's end
	}
	if t.Failed() {
		return
	}
	if len(h.Events) == 0 || !sameSeqs(seqs(h.Events), span(1, h.Events[len(h.Events)-1].Sequence())) {
		t.Fatalf("history read after watching: %v; want 1..k", seqs(h.Events))
	}
	read := h.Events[len(h.Events)-1].Sequence()
	testwait.Check(t, func() error {
		got := reader.line.got("orders:w")
		for s := read + 1; s <= total; s++ {
			if !slices.Contains(got, s) {
				return fmt.Errorf("history read up to %d, event %d has not reached the watching node (it has %v)", read, s, got)
			}
		}
		return nil
	})
}

// testWatchCounting: watches are counted; each Unwatch ends one.
func testWatchCounting(t *testing.T, be Backend) {
	ns := nodes(t, be, 2)
	pub, n := ns[0], ns[1]
	w, ok := n.broker.(watcher)
	if !ok {
		t.Skip("the broker cannot say what it watches")
	}
	ctx := context.Background()
	for range 2 {
		if err := n.broker.Watch(ctx, "orders:c"); err != nil {
			t.Fatal(err)
		}
	}
	n.broker.Unwatch("orders:c")
	if !w.Watching("orders:c") {
		t.Fatal("one of two watches ended and the topic is no longer watched")
	}
	ev := pub.publish(msg("orders:c", 1))
	testwait.For(t, "the event to reach the node still watching", func() bool { return slices.Contains(n.line.got("orders:c"), ev.Sequence()) })
	n.broker.Unwatch("orders:c")
	if w.Watching("orders:c") {
		t.Fatal("both watches ended and the topic is still watched")
	}
	n.broker.Unwatch("orders:never-watched") // harmless
	if w.Watching("orders:never-watched") {
		t.Fatal("an Unwatch without a Watch made a watch")
	}
}

// testGapBackfill: events lost or repeated on the way to a node are read
// back from the store (Hub.backfill) before anything after them is
// delivered, and repeats are delivered once.
func testGapBackfill(t *testing.T, be Backend) {
	ns := nodes(t, be, 2)
	pub, sub := ns[0], ns[1]
	c, _ := sub.subscribe("orders:g", engine.SubscribeOptions{})
	lose := []uint64{3, 4}
	if be.FindsLostLast() {
		lose = append(lose, 7) // the last: no later event shows the gap
	}
	sub.line.loseFirst("orders:g", lose, []uint64{2, 6})
	var epoch string
	for i := 1; i <= 7; i++ {
		epoch = pub.publish(msg("orders:g", i)).Epoch()
	}
	c.expect(1, 7, epoch) // a lost 7 arrives by the head check
	pub.publish(msg("orders:g", 8))
	c.expect(8, 8, epoch) // nothing repeated in between
	if g, bf := metric(sub.hub, "marketcast_stream_gaps_total"), metric(sub.hub, "marketcast_stream_backfills_total"); g < 1 || bf < 1 {
		t.Fatalf("gaps %v, backfills %v; want both counted", g, bf)
	}
}

// testFailedBackfill: when the store cannot be read to fill a gap, the
// node cannot continue the run unbroken: its subscribers are told to
// resume (4009), and a resume tells them what is missing.
func testFailedBackfill(t *testing.T, be Backend) {
	ns := nodes(t, be, 2)
	pub, sub := ns[0], ns[1]
	c, _ := sub.subscribe("orders:f", engine.SubscribeOptions{})
	epoch := pub.publish(msg("orders:f", 1)).Epoch()
	c.expect(1, 1, epoch)
	sub.line.loseFirst("orders:f", []uint64{2}, nil)
	sub.line.failReads.Store(1)
	pub.publish(msg("orders:f", 2))
	pub.publish(msg("orders:f", 3))
	c.expectClose(protocol.CloseResumeRequired)
	since := uint64(1)
	again, r := sub.subscribe("orders:f", engine.SubscribeOptions{Since: &since, Epoch: epoch})
	if !r.Recovered || r.Position.Seq != 3 {
		t.Fatalf("resume after the reset: %+v; want recovered to 3", r)
	}
	again.expect(2, 3, epoch)
}

// testHubSweep: the hub forgets a reliable topic no subscription has held
// for its linger time, and ends its broker watch; a held topic stays.
func testHubSweep(t *testing.T, be Backend) {
	n := nodes(t, be, 1)[0]
	w, canTell := n.broker.(watcher)
	out := n.hub.NewOutbox(nil, false)
	sub, _, err := n.hub.Subscribe(context.Background(), out, "orders:s", engine.Reliable, engine.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.hub.Start(sub)
	held, _ := n.subscribe("orders:held", engine.SubscribeOptions{})
	if canTell && !w.Watching("orders:s") {
		t.Fatal("a subscribed topic is not watched")
	}
	n.hub.Unsubscribe(sub)
	if removed := n.hub.Sweep(time.Now()); removed != 0 {
		t.Fatalf("swept %d topics within the linger time", removed)
	}
	if removed := n.hub.Sweep(time.Now().Add(linger + time.Second)); removed != 1 {
		t.Fatalf("swept %d topics after the linger time; want the one nobody holds", removed)
	}
	if canTell && w.Watching("orders:s") {
		t.Fatal("a swept topic is still watched")
	}
	if canTell && !w.Watching("orders:held") {
		t.Fatal("the sweep ended the watch of a held topic")
	}
	ev := n.publish(msg("orders:held", 1))
	held.expect(1, 1, ev.Epoch())
	// A swept topic comes back as any other.
	c, _ := n.subscribe("orders:s", engine.SubscribeOptions{})
	ev = n.publish(msg("orders:s", 1))
	c.expect(1, 1, ev.Epoch())
}

// testAbandon: a subscribe whose broker read fails answers the error and
// leaves nothing behind: the topic can be swept (its watch ended), and a
// later subscribe works.
func testAbandon(t *testing.T, be Backend) {
	n := nodes(t, be, 1)[0]
	n.line.failReads.Store(1)
	_, _, err := n.trySubscribe("orders:x", engine.SubscribeOptions{})
	if !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("subscribe with a failing read: %v; want ErrUnavailable", err)
	}
	if removed := n.hub.Sweep(time.Now().Add(linger + time.Second)); removed != 1 {
		t.Fatalf("swept %d topics; want the one whose subscribe failed", removed)
	}
	if w, ok := n.broker.(watcher); ok && w.Watching("orders:x") {
		t.Fatal("the failed subscribe's watch outlived the sweep")
	}
	c, _ := n.subscribe("orders:x", engine.SubscribeOptions{})
	ev := n.publish(msg("orders:x", 1))
	c.expect(1, 1, ev.Epoch())
}

// testForget: a topic the store forgot starts a new run at 1 under a new
// epoch, and a resume from the old run is never taken for the new one.
func testForget(t *testing.T, be Backend) {
	n := nodes(t, be, 1)[0]
	var old *engine.Event
	for i := 1; i <= 3; i++ {
		old = n.publish(msg("orders:o", i))
	}
	be.Forget(t, "orders:o")
	var fresh *engine.Event
	for i := 1; i <= 5; i++ {
		fresh = n.publish(msg("orders:o", i))
	}
	if fresh.Sequence() != 5 || fresh.Epoch() == old.Epoch() {
		t.Fatalf("after the topic was forgotten: %v; want 5 of a new epoch (not %s)", fresh.Position(), old.Epoch())
	}
	for _, since := range []uint64{1, 3} {
		_, r := n.subscribe("orders:o", engine.SubscribeOptions{Since: &since, Epoch: old.Epoch()})
		if r.Recovered || r.Position != fresh.Position() {
			t.Fatalf("resume from %d of the forgotten run: %+v; want recovered false at %v", since, r, fresh.Position())
		}
	}
}

// testIdempotency: a publish retried with the same key (on any node) is
// stored once and answered with the first's position; keys are per topic,
// so the same key on another topic is another message.
func testIdempotency(t *testing.T, be Backend) {
	ns := nodes(t, be, 2)
	a, b := ns[0], ns[1]
	m := msg("orders:i", 1)
	m.IdempotencyKey = "fill-77"
	first := a.publish(m)
	a.publish(msg("orders:i", 2))
	again := b.publish(m)
	if again.Position() != first.Position() || string(again.Message().Data) != string(m.Data) {
		t.Fatalf("retry answered %v %s; want the original %v", again.Position(), again.Message().Data, first.Position())
	}
	if next := a.publish(msg("orders:i", 3)); next.Sequence() != 3 {
		t.Fatalf("next sequence %d; want 3: the retry must not be stored", next.Sequence())
	}
	// The same key for another user's orders and for this user's positions:
	// two other messages, both stored.
	for _, topic := range []string{"orders:j", "positions:i"} {
		other := msg(topic, 1)
		other.IdempotencyKey = "fill-77"
		ev := b.publish(other)
		h := a.history(topic, 0, 10)
		if ev.Topic() != topic || ev.Sequence() != 1 || len(h.Events) != 1 || string(h.Events[0].Message().Data) != `{"n":1}` {
			t.Fatalf("%s with a key used on orders:i: answered %s %v, stored %v; want its own first event", topic, ev.Topic(), ev.Position(), seqs(h.Events))
		}
	}
	if h := a.history("orders:i", 0, 10); !sameSeqs(seqs(h.Events), []uint64{1, 2, 3}) {
		t.Fatalf("orders:i holds %v; want 1 2 3", seqs(h.Events))
	}
}

// testResume: the decisions of a resume with since (and epoch), made on a
// node other than the one published to, and the replay streamed page by
// page (four events a page) before live events join with no gap and no
// duplicate.
func testResume(t *testing.T, be Backend) {
	ns := nodes(t, be, 2)
	pub, n := ns[0], ns[1]
	var epoch string
	for i := 1; i <= 10; i++ {
		epoch = pub.publish(msg("orders:r", i)).Epoch()
	}
	head := uint64(10)
	for _, c := range []struct {
		since     uint64
		epoch     string
		recovered bool
	}{
		{3, epoch, true},          // replayed from 4
		{10, epoch, true},         // nothing missed
		{0, "", true},             // nothing seen: the run from its start
		{0, "another-run", true},  // likewise, whatever the epoch
		{1000, epoch, false},      // beyond the run: it was reset
		{3, "another-run", false}, // another run's position means nothing here
		{3, "", false},            // no run named: nothing proves it is this one
		{10, "", false},           // likewise at the head
	} {
		since := c.since
		cl, r := n.subscribe("orders:r", engine.SubscribeOptions{Since: &since, Epoch: c.epoch})
		if r.Recovered != c.recovered || r.Position != (engine.Position{Seq: head, Epoch: epoch}) {
			t.Fatalf("since %d epoch %q: %+v; want recovered %v at %d of %s", c.since, c.epoch, r, c.recovered, head, epoch)
		}
		if c.recovered {
			cl.expect(c.since+1, head, epoch)
		}
		head++
		pub.publish(msg("orders:r", int(head)))
		cl.expect(head, head, epoch) // live, right after the replay (or from now on)
	}
}

// testHubErrors: what the hub refuses before asking the broker.
func testHubErrors(t *testing.T, be Backend) {
	n := nodes(t, be, 1)[0]
	if _, err := n.hub.Publish(context.Background(), engine.Message{Mode: engine.Reliable}); !errors.Is(err, engine.ErrMissingTopic) {
		t.Fatalf("publish without a topic: %v; want ErrMissingTopic", err)
	}
	n.publish(msg("orders:m", 1))
	n.subscribe("orders:m", engine.SubscribeOptions{}) // the hub holds it as reliable
	out := n.hub.NewOutbox(nil, false)
	if _, _, err := n.hub.Subscribe(context.Background(), out, "orders:m", engine.Conflated, engine.SubscribeOptions{}); !errors.Is(err, engine.ErrModeMismatch) {
		t.Fatalf("subscribe to a reliable topic as conflated: %v; want ErrModeMismatch", err)
	}
}

// testUnavailable: while the store cannot be reached, publishes fail with
// ErrUnavailable and are not stored; afterwards the run goes on from where
// it stood.
func testUnavailable(t *testing.T, be Backend) {
	n := nodes(t, be, 1)[0]
	first := n.publish(msg("orders:u", 1))
	restore := be.Break(t)
	if restore == nil {
		t.Skip("the broker's store cannot be unreachable")
	}
	failed := msg("orders:u", 99)
	if _, err := n.hub.Publish(context.Background(), failed); !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("publish with the store unreachable: %v; want ErrUnavailable", err)
	}
	if _, _, err := n.trySubscribe("orders:v", engine.SubscribeOptions{}); !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("subscribe with the store unreachable: %v; want ErrUnavailable", err)
	}
	restore()
	var next *engine.Event
	testwait.Check(t, func() (err error) { // until the node is back
		next, err = n.hub.Publish(context.Background(), msg("orders:u", 2))
		return err
	})
	if next.Sequence() != 2 || next.Epoch() != first.Epoch() {
		t.Fatalf("after the store came back: %v; want 2 of %s", next.Position(), first.Epoch())
	}
	h := n.history("orders:u", 0, 10)
	for _, ev := range h.Events {
		if string(ev.Message().Data) == string(failed.Data) {
			t.Fatalf("a publish answered ErrUnavailable was stored as %d", ev.Sequence())
		}
	}
	if !sameSeqs(seqs(h.Events), []uint64{1, 2}) {
		t.Fatalf("history %v; want 1 2", seqs(h.Events))
	}
}

// testLostStore: after the store is lost, every topic starts a new run
// under a new epoch, on every node; a node's subscribers of the old run
// are told to resume (4009), and a resume from the old run is not
// recovered.
func testLostStore(t *testing.T, be Backend) {
	n := nodes(t, be, 1)[0]
	n.publish(msg("orders:l", 1))
	old := n.publish(msg("orders:l", 2))
	c, _ := n.subscribe("orders:l", engine.SubscribeOptions{})
	live := be.LoseStore(t)
	if !live {
		n = newNode(t, be.Node(t)) // the process that held the store restarted
	}
	var fresh *engine.Event
	testwait.Check(t, func() (err error) { // until the node is back
		fresh, err = n.hub.Publish(context.Background(), msg("orders:l", 1))
		return err
	})
	if fresh.Sequence() != 1 || fresh.Epoch() == old.Epoch() {
		t.Fatalf("first publish after the store was lost: %v; want 1 of a new epoch (not %s)", fresh.Position(), old.Epoch())
	}
	if live {
		c.expectClose(protocol.CloseResumeRequired) // the old run's subscriber
	}
	since := old.Sequence()
	if _, r := n.subscribe("orders:l", engine.SubscribeOptions{Since: &since, Epoch: old.Epoch()}); r.Recovered || r.Position != fresh.Position() {
		t.Fatalf("resume from the lost run: %+v; want recovered false at %v", r, fresh.Position())
	}
}
