package natsfeed_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marketcast/marketcast/engine/natsbroker/natstest"
	"github.com/marketcast/marketcast/feed"
	"github.com/marketcast/marketcast/feed/natsfeed"
	"github.com/marketcast/marketcast/feed/sim"
	"github.com/marketcast/marketcast/internal/testwait"
	"github.com/marketcast/marketcast/protocol"
)

// TestRestartKeepsSymbolsAndFormingBars: a single node with a data
// directory (its NATS store on disk) stops in the middle of a bar, and
// NATS with it. Started again, before the collector says anything, it
// knows its symbols (no UNKNOWN_SYMBOL) and serves their forming bars; the
// ticks that follow complete the very bars it was building, as one node
// that never stopped would have.
func TestRestartKeepsSymbolsAndFormingBars(t *testing.T) {
	ns := natstest.Start(t, t.TempDir())
	symbols := []string{"SHFE.rb2701", "DCE.m2701"}
	ticks := map[string][]tick{
		symbols[0]: stream(ex("2026-11-23 21:00:00.500"), 200, 5),
		symbols[1]: stream(ex("2026-11-23 21:00:00.500"), 200, 6),
	}
	clk := newClock(ex("2026-11-23 21:00:00.500"))
	send := func(n *node, from, to int) {
		pub := connect(t, ns.URL())
		for i := from; i < to; i++ {
			for _, s := range symbols {
				clk.Set(ticks[s][i].at)
				publish(t, pub, "md.tick."+s, ticks[s][i].json())
			}
		}
		flush(t, pub)
		testwait.For(t, "the ticks", func() bool {
			for _, s := range symbols {
				if !strings.Contains(dataOf(n.last(protocol.Tick, s)), ticks[s][to-1].at.UTC().Format(protocol.TimeLayout)) {
					return false
				}
			}
			return true
		})
	}
	// A reference node that never stops, on a server of its own.
	ref := natstest.Start(t, "")
	refClock := newClock(ticks[symbols[0]][199].at)
	refNode := startNode(t, ref.URL(), nodeOptions{sessions: table.Lookup, clock: refClock})
	rpub := connect(t, ref.URL())
	for i := range 200 {
		for _, s := range symbols {
			publish(t, rpub, "md.tick."+s, ticks[s][i].json())
		}
	}
	flush(t, rpub)
	testwait.For(t, "the reference's ticks", func() bool {
		for _, s := range symbols { // then the wall clock moves: it closes idle bars
			if !strings.Contains(dataOf(refNode.last(protocol.Tick, s)), ticks[s][199].at.UTC().Format(protocol.TimeLayout)) {
				return false
			}
		}
		return true
	})
	refClock.Set(ex("2026-11-23 23:00:00"))

	a := startNode(t, ns.URL(), nodeOptions{sessions: table.Lookup, clock: clk, checkpoints: true, store: true})
	send(a, 0, 110) // 21:00:00.5 to 21:00:55: mid-bar
	forming := dataOf(a.last(protocol.Klines[0], symbols[0]))
	if err := a.market.Stop(t.Context()); err != nil { // as the node does when it stops
		t.Fatal(err)
	}
	a.stop()
	ns.Restart(false) // the same store

	b := startNode(t, ns.URL(), nodeOptions{sessions: table.Lookup, clock: clk, checkpoints: true, store: true})
	for _, s := range symbols {
		if !b.market.HasSymbol(s) {
			t.Fatalf("%s unknown after the restart, before its collector spoke", s)
		}
	}
	if got := dataOf(b.last(protocol.Klines[0], symbols[0])); got != forming {
		t.Fatalf("forming bar after the restart:\n%s\nwas\n%s", got, forming)
	}
	send(b, 110, 200)
	clk.Set(ex("2026-11-23 23:00:00")) // the night session's bars close
	for _, s := range symbols {
		want := refNode.waitClosed(t, 0, s, 2)
		got := b.waitClosed(t, 0, s, 2)
		if strings.Join(got[:2], "\n") != strings.Join(want[:2], "\n") {
			t.Fatalf("%s after a restart mid-bar:\n%s\nwithout one:\n%s", s, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	if got := b.metric("marketcast_feed_restored_symbols_total"); got != "2" {
		t.Fatalf("restored %s symbols", got)
	}
}

// TestRestartAfterAGapKeepsTheBar: a node restarted after its symbol
// traded on without it marks the bar it was building partial (it missed
// ticks), keeps it in the store all the same (no permanent gap), and a
// complete copy from a node that saw all of it is preferred.
func TestRestartAfterAGapKeepsTheBar(t *testing.T) {
	ns := natstest.Start(t, t.TempDir())
	const s = "DCE.m2701"
	ticks := stream(ex("2026-11-23 21:00:00.500"), 240, 9)
	clk := newClock(ticks[0].at)
	a := startNode(t, ns.URL(), nodeOptions{sessions: table.Lookup, clock: clk, checkpoints: true, store: true})
	pub := connect(t, ns.URL())
	for _, k := range ticks[:60] { // to 21:00:30
		clk.Set(k.at)
		publish(t, pub, "md.tick."+s, k.json())
	}
	flush(t, pub)
	testwait.For(t, "the ticks", func() bool {
		return strings.Contains(dataOf(a.last(protocol.Tick, s)), ticks[59].at.UTC().Format(protocol.TimeLayout))
	})
	if err := a.market.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	a.stop()
	// 20 s of trading pass without the node.
	clk.Set(ticks[100].at)
	b := startNode(t, ns.URL(), nodeOptions{sessions: table.Lookup, clock: clk, checkpoints: true, store: true})
	if got := dataOf(b.last(protocol.Klines[0], s)); !strings.Contains(got, `"partial":true`) {
		t.Fatalf("forming bar restored after a gap: %s; want partial", got)
	}
	for _, k := range ticks[100:] {
		clk.Set(k.at)
		publish(t, pub, "md.tick."+s, k.json())
	}
	flush(t, pub)
	bars := b.waitClosed(t, 0, s, 1)
	if !strings.Contains(bars[0], `"partial":true`) {
		t.Fatalf("the 21:00 bar %s; want partial", bars[0])
	}
	// A node that starts now loads history from the store: the partial
	// 21:00 bar is there (no gap), the 21:01 one whole.
	late := startNode(t, ns.URL(), nodeOptions{sessions: table.Lookup, store: true})
	testwait.For(t, "the stored bars", func() bool {
		late.market.WarmBars(context.Background(), protocol.Klines[0], s)
		return len(late.closed(0, s)) >= 1
	})
	if got := late.closed(0, s); !strings.Contains(got[0], `"start_time":"2026-11-23T13:00:00.000Z"`) {
		t.Fatalf("history after the restart: %v", got)
	}
}

// TestSimulatorRestartRepeatsThePastThroughNATS: the simulator as
// `marketcast feed` runs it, publishing to NATS; restarted an hour later,
// its backfill makes the node build exactly the bars the live run made.
// Its start-up burst (the backfill, thousands of ticks at once) is taken
// whole by a node that is slow to start reading: NATS holds it within the
// configured pending limit, far beyond the 8,192 a channel once allowed.
func TestSimulatorRestartRepeatsThePastThroughNATS(t *testing.T) {
	// 02:40 in Shanghai: the simulator computes its day from 00:00, and
	// backfills from 00:10.
	symbols := sim.Universe(20)
	start := time.Date(2026, 11, 23, 18, 40, 0, 0, time.UTC)
	const live = 5 * time.Minute
	run := func(t *testing.T, at time.Time, live time.Duration) *node {
		ns := natstest.Start(t, "")
		clk := newClock(at.Add(live))
		gate := make(chan struct{})
		n := startNode(t, ns.URL(), nodeOptions{clock: clk, maxSymbols: 100, sink: func(s feed.Sink) feed.Sink {
			return &gatedSink{BatchSink: s.(feed.BatchSink), open: gate}
		}})
		s, err := sim.New(sim.Config{Symbols: symbols, Seed: 9, Backfill: 150 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		pub := connect(t, ns.URL())
		bus := &countingBus{Bus: natsfeed.NewBus(pub)}
		s.Start(context.Background(), bus, at)
		for g := at.Truncate(s.Interval()).Add(s.Interval()); !g.After(at.Add(live)); g = g.Add(s.Interval()) {
			s.Step(context.Background(), bus, g)
		}
		flush(t, pub)
		if bus.n <= 8192 {
			t.Fatalf("a burst of %d messages; the test needs more than 8,192", bus.n)
		}
		// The workers' queues are full; NATS holds the rest.
		testwait.For(t, "NATS to hold the burst", func() bool { return n.src.Pending() > 0 })
		close(gate)
		testwait.For(t, "every message", func() bool {
			return n.metric("marketcast_feed_messages_total") == strconv.Itoa(bus.n)
		})
		if got := n.metric("marketcast_feed_overflow_dropped_total"); got != "0" {
			t.Fatalf("NATS dropped %s messages of the burst", got)
		}
		clk.Set(at.Add(live + time.Hour))
		n.waitClosed(t, 0, symbols[0], 10)
		return n
	}
	a := run(t, start, live)
	b := run(t, start.Add(live+time.Minute), 0)
	compared := 0
	for _, s := range symbols {
		bb := map[string]string{}
		for _, v := range b.closed(0, s) {
			bb[between(v, `"start_time":"`, `"`)] = v
		}
		for _, v := range a.closed(0, s) {
			w, ok := bb[between(v, `"start_time":"`, `"`)]
			if end, _ := time.Parse(time.RFC3339, between(v, `"end_time":"`, `"`)); end.After(start.Add(live)) {
				continue // the first run stopped during this bar
			}
			if !ok || strings.Contains(v, "partial") || strings.Contains(w, "partial") {
				continue
			}
			compared++
			if v != w {
				t.Fatalf("%s after the restart:\n%s\nwas\n%s", s, w, v)
			}
		}
	}
	if compared < len(symbols)*140 {
		t.Fatalf("compared %d bars", compared)
	}
}

// gatedSink holds every batch until open is closed: a node slow to start.
type gatedSink struct {
	feed.BatchSink
	open chan struct{}
}

func (g *gatedSink) Publish(ctx context.Context, p *protocol.Publication) (uint64, error) {
	<-g.open
	return g.BatchSink.Publish(ctx, p)
}

func (g *gatedSink) PublishBatch(ctx context.Context, ps []*protocol.Publication) (int, error) {
	<-g.open
	return g.BatchSink.PublishBatch(ctx, ps)
}

// countingBus counts what the simulator publishes.
type countingBus struct {
	*natsfeed.Bus
	n int
}

func (c *countingBus) Publish(ctx context.Context, p *protocol.Publication) (uint64, error) {
	c.n++
	return c.Bus.Publish(ctx, p)
}

// TestCheckpointsLoadEveryKey: a node restores every symbol kept in the
// bucket even when the key-value watch says it is done too early, as it
// did once on a NATS server that had just restarted (a symbol was lost):
// what the watch did not send is read key by key.
func TestCheckpointsLoadEveryKey(t *testing.T) {
	ns := natstest.Start(t, t.TempDir())
	cp := natsfeed.NewCheckpoints(connect(t, ns.URL()), 1)
	ctx := t.Context()
	if err := cp.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for i := range 5 {
		s := "SHFE.rb27" + strconv.Itoa(10+i)
		want[s] = "state of " + s
		cp.Save(s, []byte(want[s]))
	}
	if err := cp.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	ns.Restart(false)
	natsfeed.CutWatch(t, 3) // the watch ends after two keys
	got := map[string]string{}
	testwait.Check(t, func() error { // the client reconnects by itself
		clear(got)
		return natsfeed.NewCheckpoints(connect(t, ns.URL()), 1).Load(ctx, func(s string, state []byte) { got[s] = string(state) })
	})
	if len(got) != len(want) {
		t.Fatalf("loaded %v; want %v", got, want)
	}
	for s, v := range want {
		if got[s] != v {
			t.Fatalf("%s loaded as %q; want %q", s, got[s], v)
		}
	}
}
