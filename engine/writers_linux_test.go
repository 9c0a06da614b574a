//go:build linux

package engine_test

import (
	"bufio"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/internal/testwait"
)

// TestWritersDeliverEveryFrameInOrder: one topic fanned out to 50 real
// TCP connections, 2,000 messages published back to back, so the hub's
// writers (at most GOMAXPROCS goroutines) write every socket while more
// arrives. One peer does not read until the end: its socket fills, the
// writer hands it to a flusher of its own, and the others go on. Every
// peer, the stalled one included, gets every message once and in order.
func TestWritersDeliverEveryFrameInOrder(t *testing.T) {
	h, _ := newHub(t, func(c *engine.Config, _ *engine.HistoryLimits) {
		c.MaxUnsentBytes = 4096
		// The stalled peer waits for all the others, however long a busy
		// machine takes: it must not be closed as a slow consumer first.
		c.WriteTimeout = time.Hour
	})
	const conns, messages = 50, 2000 // 2,000 × 230 bytes: more than a loopback receive buffer
	peers := make([]*peer, conns)
	for i := range peers {
		server, client := tcpPair(t)
		o := h.NewOutbox(server, false)
		subscribe(t, h, o, "orders:u", engine.Reliable, engine.SubscribeOptions{})
		peers[i] = &peer{t: t, c: client, br: bufio.NewReader(client)}
	}
	readAll := func(p *peer) {
		for want := uint64(1); want <= messages; want++ {
			if e := p.env(); e.Sequence != want {
				t.Errorf("got sequence %d, want %d", e.Sequence, want)
				return
			}
		}
	}
	var wg sync.WaitGroup
	for _, p := range peers[1:] {
		wg.Add(1)
		go func() { defer wg.Done(); readAll(p) }()
	}
	for i := 1; i <= messages; i++ {
		publish(t, h, engine.Message{Topic: "orders:u", Mode: engine.Reliable, Type: "order_update", Channel: "orders",
			Data: []byte(`{"pad":"` + strings.Repeat("x", 200) + `"}`)})
	}
	wg.Wait()         // every reading peer got everything while one stalled
	readAll(peers[0]) // and the stalled one gets it all once it reads
}

// TestFanOutWritesItsFirstOutboxesItself: a publish to a topic writes the
// first InlineWrites subscribers' frames from the publishing goroutine,
// before Publish returns, and hands only the rest to a writer goroutine.
// A private message (one subscriber) so costs no goroutine wake-up; every
// subscriber still gets every frame once.
func TestFanOutWritesItsFirstOutboxesItself(t *testing.T) {
	h, _ := newHub(t, nil)
	h.SetWriters(1) // as on one core: no share for other cores' writers
	subscribers := engine.InlineWrites + 20
	peers := make([]*peer, subscribers)
	outs := make([]*engine.Outbox, subscribers)
	for i := range peers {
		server, client := tcpPair(t)
		outs[i] = h.NewOutbox(server, false)
		subscribe(t, h, outs[i], "signals:s", engine.Reliable, engine.SubscribeOptions{})
		peers[i] = &peer{t: t, c: client, br: bufio.NewReader(client)}
	}
	one := func(topic string) engine.Message {
		return engine.Message{Topic: topic, Mode: engine.Reliable, Type: "signal", Channel: "strategy_signals", Data: []byte(`{"x":1}`)}
	}
	before := h.WritersStarted()
	publish(t, h, one("signals:s"))
	// Written, not queued, when Publish returns: the first InlineWrites by
	// the publisher itself.
	for i, o := range outs[:engine.InlineWrites] {
		if n, _ := o.Pending(); n != 0 {
			t.Fatalf("subscriber %d: %d frames still queued after Publish returned", i, n)
		}
	}
	if h.WritersStarted() == before {
		t.Fatalf("the %d subscribers past the first %d were not handed to a writer", subscribers-engine.InlineWrites, engine.InlineWrites)
	}
	for _, p := range peers {
		if e := p.env(); e.Sequence != 1 {
			t.Fatalf("got sequence %d, want 1", e.Sequence)
		}
	}

	// One subscriber: no writer goroutine at all.
	server, client := tcpPair(t)
	o := h.NewOutbox(server, false)
	subscribe(t, h, o, "orders:u", engine.Reliable, engine.SubscribeOptions{})
	testwait.For(t, "the writers to finish the fan-out", func() bool {
		for _, o := range outs {
			if f, _ := o.FlusherState(); f {
				return false
			}
		}
		return true
	})
	before = h.WritersStarted()
	publish(t, h, one("orders:u"))
	if n, _ := o.Pending(); n != 0 || h.WritersStarted() != before {
		t.Fatalf("a private message: %d frames queued, %d writer goroutines started", n, h.WritersStarted()-before)
	}
	if e := (&peer{t: t, c: client, br: bufio.NewReader(client)}).env(); e.Sequence != 1 {
		t.Fatalf("got sequence %d, want 1", e.Sequence)
	}
}
