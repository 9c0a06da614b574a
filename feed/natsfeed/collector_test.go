package natsfeed_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/marketcast/marketcast/engine/natsbroker/natstest"
	"github.com/marketcast/marketcast/feed"
	"github.com/marketcast/marketcast/internal/testwait"
	"github.com/marketcast/marketcast/protocol"
)

// TestCTPAsItIs: what a CTP collector really sends. DBL_MAX means "no
// value" (an empty ask at limit up), not a bad tick; a time without a zone
// is exchange time; DCE's night ticks dated the next trading day
// (ActionDay) are put back on their day, counted; a turnover printed with
// more decimals than kept is rounded, and the bars count it.
func TestCTPAsItIs(t *testing.T) {
	ns := natstest.Start(t, "")
	clk := newClock(ex("2026-11-25 21:01:40")) // Wednesday night
	n := startNode(t, ns.URL(), nodeOptions{sessions: table.Lookup, clock: clk})
	pub := connect(t, ns.URL())
	publish(t, pub, "md.tick.SHFE.cu2701", `{"last_price":68000.0,"ask_price":1.7976931348623157e+308,"ask_volume":0,`+
		`"bid_price":67990.0,"bid_volume":12,"volume":100,"turnover":"34000000.0000000001","update_time":"2026-11-25 21:00:00.500"}`)
	publish(t, pub, "md.tick.SHFE.cu2701", `{"last_price":68010.0,"ask_price":1.7976931348623157e+308,"volume":120,`+
		`"turnover":"35360200.0000000003","update_time":"2026-11-25 21:00:30.000"}`)
	// DCE's night session: ActionDay is Thursday, the trading day.
	publish(t, pub, "md.tick.DCE.m2701", `{"last_price":"3000.0","volume":10,"turnover":"300000.0","update_time":"2026-11-26 21:01:35.000"}`)
	flush(t, pub)
	testwait.For(t, "both symbols", func() bool {
		return n.last(protocol.Tick, "DCE.m2701") != nil && strings.Contains(dataOf(n.last(protocol.Tick, "SHFE.cu2701")), `"volume":"120"`)
	})
	if got := dataOf(n.last(protocol.Tick, "SHFE.cu2701")); got !=
		`{"last_price":"68010.0","volume":"120","turnover":"35360200.0","update_time":"2026-11-25T13:00:30.000Z"}` {
		t.Fatalf("cu tick %s", got)
	}
	if got := dataOf(n.last(protocol.Tick, "DCE.m2701")); !strings.Contains(got, `"update_time":"2026-11-25T13:01:35.000Z"`) {
		t.Fatalf("DCE night tick %s; want Wednesday's date", got)
	}
	if got := n.metric("marketcast_feed_time_corrected_total"); got != "1" {
		t.Fatalf("corrected %s; want 1", got)
	}
	if got := n.metric("marketcast_feed_zoneless_times_total"); got != "3" {
		t.Fatalf("zone-less times %s; want 3", got)
	}
	if got := n.metric(`marketcast_feed_dropped_total{reason="type"}`); got != "0" {
		t.Fatalf("dropped as type: %s", got)
	}
	bar := dataOf(n.last(protocol.Klines[0], "SHFE.cu2701"))
	if !strings.Contains(bar, `"volume":"120","turnover":"35360200.0"`) || !strings.Contains(bar, `"high":"68010.0"`) {
		t.Fatalf("cu's forming bar %s; want the day's volume and turnover, rounded", bar)
	}
}

// TestZonelessTimesAreExchangeTime: a collector that sends its exchange's
// clock without a zone (feed.time_zone, Asia/Shanghai by default) and one
// configured for UTC (the seed's datetime.utcnow().isoformat()) both give
// the instant they mean, in UTC on the wire.
func TestZonelessTimesAreExchangeTime(t *testing.T) {
	for _, c := range []struct {
		zone *time.Location
		in   string
	}{{nil, "2026-11-25 21:01:30.500"}, {time.UTC, "2026-11-25T13:01:30.500123"}} {
		ns := natstest.Start(t, "")
		n := startNode(t, ns.URL(), nodeOptions{clock: newClock(ex("2026-11-25 21:01:31")), zone: c.zone})
		pub := connect(t, ns.URL())
		publish(t, pub, "md.tick.X.a1", `{"last_price":"1.0","timestamp":"`+c.in+`"}`)
		flush(t, pub)
		testwait.For(t, "the tick", func() bool { return n.last(protocol.Tick, "X.a1") != nil })
		if got := dataOf(n.last(protocol.Tick, "X.a1")); got != `{"last_price":"1.0","update_time":"2026-11-25T13:01:30.500Z"}` {
			t.Fatalf("%s in %v: %s", c.in, c.zone, got)
		}
	}
}

// TestPendingLimitIsHonoured: the configured limit is the subscription's,
// not a channel's 8,192: a node that stalls keeps 20,000 messages waiting
// and loses none.
func TestPendingLimitIsHonoured(t *testing.T) {
	ns := natstest.Start(t, "")
	gate := make(chan struct{})
	n := startNode(t, ns.URL(), nodeOptions{maxSymbols: 1000, pending: 50000, sink: func(s feed.Sink) feed.Sink {
		return &gatedSink{BatchSink: s.(feed.BatchSink), open: gate}
	}})
	if msgs, _ := n.src.PendingLimits(); msgs != 50000 {
		t.Fatalf("pending limit %d; want the configured 50000", msgs)
	}
	pub := connect(t, ns.URL())
	const total = 20000
	now := time.Now()
	for i := range total {
		publish(t, pub, fmt.Sprintf("md.tick.P.s%d", i%500), tick{at: now.Add(-time.Duration(total-i) * time.Millisecond),
			price: "1.0", vol: fmt.Sprint(i), to: "0"}.json())
	}
	flush(t, pub)
	testwait.For(t, "NATS to hold them", func() bool { return n.src.Pending() > 8192 })
	close(gate)
	testwait.For(t, "all of them", func() bool { return n.metric("marketcast_feed_messages_total") == fmt.Sprint(total) })
	if got := n.metric("marketcast_feed_overflow_dropped_total"); got != "0" {
		t.Fatalf("dropped %s", got)
	}
}

// TestSubjectsAreBoundedByMaxSymbols: a stranger publishing on endless
// symbols costs the node no more than limits.max_symbols of them: the rest
// are refused and counted, and nothing is kept of them.
func TestSubjectsAreBoundedByMaxSymbols(t *testing.T) {
	ns := natstest.Start(t, "")
	n := startNode(t, ns.URL(), nodeOptions{maxSymbols: 20})
	pub := connect(t, ns.URL())
	for i := range 5000 {
		publish(t, pub, fmt.Sprintf("md.tick.S.x%d", i), `{"last_price":"1.0"}`)
		publish(t, pub, fmt.Sprintf("md.depth.S.x%d", i), `{"bids":[]}`)
	}
	flush(t, pub)
	testwait.For(t, "every message counted", func() bool {
		return n.metric(`marketcast_feed_dropped_total{reason="rejected"}`) == "9960"
	})
	if n.market.SymbolCount() != 20 || n.metric("marketcast_feed_messages_total") != "40" {
		t.Fatalf("catalogue %d, ingested %s", n.market.SymbolCount(), n.metric("marketcast_feed_messages_total"))
	}
	if topics := n.hub.Stats().Topics; topics > 20*8 {
		t.Fatalf("%d topics for 20 symbols", topics)
	}
}
