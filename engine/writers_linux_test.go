//go:build linux

package engine_test

import (
	"bufio"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketcast/marketcast/engine"
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
