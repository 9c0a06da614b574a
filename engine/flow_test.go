package engine_test

import (
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/engine/frame"
	"github.com/marketcast/marketcast/internal/testwait"
	"github.com/marketcast/marketcast/protocol"
)

func noDelay(c *engine.Config, _ *engine.HistoryLimits) { c.FlushDelay = 0 }

// pending waits until o's queue holds frames frames and bytes counted
// bytes (a flusher may still be taking what it may).
func pending(t *testing.T, o *engine.Outbox, frames, bytes int) {
	t.Helper()
	testwait.Check(t, func() error {
		if f, b := o.Pending(); f != frames || b != bytes {
			return fmt.Errorf("%d frames, %d counted bytes queued; want %d and %d", f, b, frames, bytes)
		}
		return nil
	})
}

// TestCreditHoldsPushedMessagesNotAnswers: with flow control on and no
// credit, market data waits in the outbox conflated per topic, so the
// credit that comes brings the newest ticks, not a backlog; answers and
// pings go out at once all the while.
func TestCreditHoldsPushedMessagesNotAnswers(t *testing.T) {
	h, _ := newHub(t, noDelay)
	s, p := newPair(t, h, false)
	for _, sym := range []string{"A", "B"} {
		subscribe(t, h, s, "tick:"+sym, engine.Conflated, engine.SubscribeOptions{})
	}
	s.Credit(1)
	publish(t, h, tick("A", 1))
	if e := p.env(); e.Symbol != "A" || e.Sequence != 1 {
		t.Fatalf("got %+v; want A1 on the one credit", e)
	}
	for i := 2; i <= 50; i++ {
		publish(t, h, tick("A", i))
		publish(t, h, tick("B", i))
	}
	pending(t, s, 2, 0) // one per topic, not counted against the budget

	s.Send(frame.Text([]byte(`{"type":"pong"}`)))
	s.Ping(frame.Ping)
	if _, b := p.read(); string(b) != `{"type":"pong"}` {
		t.Fatalf("got %q; want the answer before the ticks waiting for credit", b)
	}
	if op, _ := p.read(); op != 0x89 {
		t.Fatalf("got opcode %#x; want the ping", op)
	}

	s.Credit(5)
	a, b := p.env(), p.env()
	if a.Symbol != "A" || a.Sequence != 50 || b.Symbol != "B" || b.Sequence != 49 {
		t.Fatalf("got %s%d %s%d; want the newest of each, A50 and B49", a.Symbol, a.Sequence, b.Symbol, b.Sequence)
	}
	publish(t, h, tick("A", 51))
	if e := p.env(); e.Sequence != 51 {
		t.Fatalf("got %+v; want A51 at once: credit is left", e)
	}
	if credit, on := s.CreditLeft(); !on || credit != 2 {
		t.Fatalf("credit %d (on %v); want 2 left of 6", credit, on)
	}
	testwait.For(t, "the wait for credit counted", func() bool { return metric(h, "marketcast_credit_waits_total") >= 1 })
}

// TestCreditIsClipped: what a peer holds is capped, however much it grants.
func TestCreditIsClipped(t *testing.T) {
	h, _ := newHub(t, noDelay)
	s, _ := newPair(t, h, false)
	s.Credit(protocol.FlowMaxCredit)
	s.Credit(protocol.FlowMaxCredit)
	if credit, _ := s.CreditLeft(); credit != protocol.FlowMaxCredit {
		t.Fatalf("credit %d; want it clipped at %d", credit, protocol.FlowMaxCredit)
	}
}

// TestReliableWaitsForCreditInOrderThen4008: private messages are never
// conflated or dropped while a client has no credit: they wait in order,
// counted, and arrive whole once credit comes; past the budget the
// connection is closed with 4008, with a close frame.
func TestReliableWaitsForCreditInOrderThen4008(t *testing.T) {
	h, _ := newHub(t, func(c *engine.Config, _ *engine.HistoryLimits) { c.FlushDelay, c.MaxPendingBytes = 0, 64<<10 })
	s, p := newPair(t, h, false)
	subscribe(t, h, s, "orders:1", engine.Reliable, engine.SubscribeOptions{})
	s.Credit(1)
	publish(t, h, order("1", 1))
	if e := p.env(); e.Sequence != 1 {
		t.Fatalf("got %+v", e)
	}
	for i := 2; i <= 20; i++ {
		publish(t, h, order("1", i))
	}
	if frames, bytes := s.Pending(); frames != 19 || bytes == 0 {
		t.Fatalf("%d frames (%d bytes) queued; want all 19 waiting, counted", frames, bytes)
	}
	s.Credit(100)
	for i := 2; i <= 20; i++ {
		if e := p.env(); e.Sequence != uint64(i) {
			t.Fatalf("got %+v; want sequence %d", e, i)
		}
	}

	// Now credit runs out and they pile up past the budget.
	s2, p2 := newPair(t, h, false)
	subscribe(t, h, s2, "orders:2", engine.Reliable, engine.SubscribeOptions{})
	s2.Credit(1)
	pad := strings.Repeat("x", 1000)
	for i := 0; s2.CloseCode() == 0; i++ {
		if i > 1000 {
			t.Fatal("never closed past the budget")
		}
		publish(t, h, engine.Message{Topic: "orders:2", Mode: engine.Reliable, Type: "order_update", Channel: "orders",
			Data: fmt.Appendf(nil, `{"n":%d,"pad":%q}`, i, pad)})
		if i == 0 {
			flusherTook(t, s2) // the one credit paid for it: it is being written
		}
	}
	if e := p2.env(); e.Sequence != 1 {
		t.Fatalf("got %+v; want the one message credit paid for", e)
	}
	op, payload := p2.read()
	if op != 0x88 || binary.BigEndian.Uint16(payload) != protocol.CloseSlowConsumer {
		t.Fatalf("got opcode %#x payload %q; want close 4008", op, payload)
	}
}

// TestEndedSubscriptionLeavesTheOutbox: what waits for credit for a
// subscription that ends is dropped, and its bytes are no longer counted.
func TestEndedSubscriptionLeavesTheOutbox(t *testing.T) {
	h, _ := newHub(t, noDelay)
	s, p := newPair(t, h, false)
	orders, _ := subscribe(t, h, s, "orders:1", engine.Reliable, engine.SubscribeOptions{})
	ticks, _ := subscribe(t, h, s, "tick:A", engine.Conflated, engine.SubscribeOptions{})
	subscribe(t, h, s, "tick:B", engine.Conflated, engine.SubscribeOptions{})
	s.Credit(1)
	publish(t, h, tick("B", 1))
	p.env()
	publish(t, h, order("1", 1))
	publish(t, h, tick("A", 1))
	publish(t, h, order("1", 2))
	publish(t, h, tick("B", 2))
	if frames, bytes := s.Pending(); frames != 4 || bytes == 0 {
		t.Fatalf("%d frames (%d bytes) queued; want 4 waiting for credit", frames, bytes)
	}
	h.Unsubscribe(orders)
	h.Unsubscribe(ticks)
	if frames, bytes := s.Pending(); frames != 1 || bytes != 0 {
		t.Fatalf("%d frames (%d counted bytes) left; want B's tick, nothing counted", frames, bytes)
	}
	s.Ping(frame.Ping)
	if op, _ := p.read(); op != 0x89 {
		t.Fatalf("got opcode %#x; want the ping first (never held)", op)
	}
	publish(t, h, tick("B", 3)) // still conflates in the slot that moved
	s.Credit(10)
	if e := p.env(); e.Symbol != "B" || e.Sequence != 3 {
		t.Fatalf("got %+v; want B3, the only subscription left", e)
	}
	if frames, _ := s.Pending(); frames != 0 {
		t.Fatalf("%d frames left", frames)
	}
}

// TestLosslessTicksInOrder: conflate:false queues every tick in order,
// counted against the budget: nothing replaced while the client has no
// credit, and 4008 with a close frame past the budget.
func TestLosslessTicksInOrder(t *testing.T) {
	h, _ := newHub(t, func(c *engine.Config, _ *engine.HistoryLimits) { c.FlushDelay, c.MaxPendingBytes = 0, 64<<10 })
	s, p := newPair(t, h, false)
	subscribe(t, h, s, "tick:A", engine.Conflated, engine.SubscribeOptions{Lossless: true})
	s.Credit(1)
	publish(t, h, tick("A", 1))
	p.env()
	for i := 2; i <= 30; i++ {
		publish(t, h, tick("A", i))
	}
	if frames, bytes := s.Pending(); frames != 29 || bytes == 0 {
		t.Fatalf("%d frames (%d bytes) queued; want 29, counted", frames, bytes)
	}
	s.Credit(1000)
	for i := 2; i <= 30; i++ {
		if e := p.env(); e.Sequence != uint64(i) {
			t.Fatalf("got %+v; want sequence %d: every tick, in order", e, i)
		}
	}
	// Credit runs out; the backlog passes the budget.
	s.Credit(1)
	for s.CreditLeft(); ; {
		if c, _ := s.CreditLeft(); c == 0 {
			break
		}
		publish(t, h, tick("A", 0))
		p.env()
	}
	big := tick("A", 0)
	big.Data = []byte(`{"last_price":"1.0","pad":"` + strings.Repeat("x", 2000) + `"}`)
	for i := 0; s.CloseCode() == 0; i++ {
		if i > 1000 {
			t.Fatal("never closed past the budget")
		}
		publish(t, h, big)
	}
	op, payload := p.read()
	if op != 0x88 || binary.BigEndian.Uint16(payload) != protocol.CloseSlowConsumer {
		t.Fatalf("got opcode %#x payload %q; want close 4008", op, payload)
	}
}

// clock is a settable clock for the hub.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// TestIntervalSendsNewestNeverLate: a subscription with an interval gets at
// most one update per interval, always the newest, and an update waits at
// most until the interval since the last write is up — never past it. Time
// is the hub's injected clock; the interval timers are driven with it.
func TestIntervalSendsNewestNeverLate(t *testing.T) {
	h, _ := newHub(t, noDelay)
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	t0 := c.Now()
	h.SetClock(c.Now)
	at := func(ms int) { c.set(t0.Add(time.Duration(ms) * time.Millisecond)) }
	s, p := newPair(t, h, false)
	sub, _ := subscribe(t, h, s, "tick:A", engine.Conflated, engine.SubscribeOptions{Interval: 100 * time.Millisecond})

	publish(t, h, tick("A", 1)) // at 0: written at once; the next is due at 100
	if e := p.env(); e.Sequence != 1 {
		t.Fatalf("got %+v", e)
	}
	at(10)
	publish(t, h, tick("A", 2))
	at(20)
	publish(t, h, tick("A", 3))
	if d := sub.Deferred(); d == nil || h.HeldByIntervals() != 1 {
		t.Fatalf("deferred %q, %d held; want tick 3 held until 100", d, h.HeldByIntervals())
	}
	at(99)
	h.FireIntervals()
	if sub.Deferred() == nil {
		t.Fatal("released at 99, before its interval was up")
	}
	// The newest replaces what waits. (Published before the clock reaches
	// 100: from there the shard's real timer, re-armed for 1 ms by the
	// firing at 99, may release what waits at any moment.)
	publish(t, h, tick("A", 4))
	at(100)
	h.FireIntervals()
	if e := p.env(); e.Sequence != 4 {
		t.Fatalf("got %+v; want 4, the newest, at 100", e)
	}
	testwait.For(t, "the interval's write", func() bool { f, _ := s.Pending(); return f == 0 && sub.Deferred() == nil })

	at(150)
	publish(t, h, tick("A", 5)) // due at 200 (written at 100)
	at(200)
	h.FireIntervals()
	if e := p.env(); e.Sequence != 5 {
		t.Fatalf("got %+v; want 5 at 200", e)
	}
	at(450) // a quiet spell: the next update is due at once
	publish(t, h, tick("A", 6))
	if e := p.env(); e.Sequence != 6 {
		t.Fatalf("got %+v; want 6 at once", e)
	}
	if n := h.HeldByIntervals(); n != 0 {
		t.Fatalf("%d still held", n)
	}
}

// TestIntervalNeverHoldsAClosedBar: a closed bar goes at once, and the
// forming update of its bar held back is dropped (the closed bar is newer).
func TestIntervalNeverHoldsAClosedBar(t *testing.T) {
	h, _ := newHub(t, noDelay)
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	h.SetClock(c.Now)
	s, p := newPair(t, h, false)
	sub, _ := subscribe(t, h, s, "kline_1m:X", engine.Conflated, engine.SubscribeOptions{Interval: time.Second})
	publish(t, h, bar(1, false))
	p.env()
	publish(t, h, bar(2, false)) // held: within the second
	publish(t, h, bar(3, true))
	if e := p.env(); e.Sequence != 3 {
		t.Fatalf("got %+v; want the closed bar at once", e)
	}
	if sub.Deferred() != nil {
		t.Fatal("the forming update of the closed bar is still held")
	}
}

// TestUnsubscribeDropsWhatAnIntervalHolds: an update held for a
// subscription's interval is not written after the subscription ends.
func TestUnsubscribeDropsWhatAnIntervalHolds(t *testing.T) {
	h, _ := newHub(t, noDelay)
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	h.SetClock(c.Now)
	s, p := newPair(t, h, false)
	a, _ := subscribe(t, h, s, "tick:A", engine.Conflated, engine.SubscribeOptions{Interval: time.Second})
	publish(t, h, tick("A", 1))
	p.env()
	publish(t, h, tick("A", 2))
	h.Unsubscribe(a)
	c.set(c.Now().Add(time.Second))
	h.FireIntervals()
	s.Ping(frame.Ping)
	if op, b := p.read(); op != 0x89 {
		t.Fatalf("got %#x %q; want only the ping: the held tick belongs to an ended subscription", op, b)
	}
}
