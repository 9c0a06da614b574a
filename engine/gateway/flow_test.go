package gateway_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/marketcast/marketcast/bench/wsclient"
	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/internal/testwait"
	"github.com/marketcast/marketcast/protocol"
)

// TestCreditIsAnsweredWithNothing: a valid credit, with or without an id,
// before authentication or after, gets no answer (a client probing with an
// id learns the server knows credit from the silence); an invalid one gets
// INVALID_MESSAGE with its id.
func TestCreditIsAnsweredWithNothing(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial(wsclient.Options{})
	mustSend(t, c, map[string]any{"type": "credit", "n": 32}) // before auth
	mustSend(t, c, map[string]any{"type": "auth", "data": map[string]any{"token": ts.token("1", allPerms...)}})
	if m := mustNext(t, c); m.Type != "auth_response" {
		t.Fatalf("got %s; want only the auth answer", m.Raw)
	}
	mustSend(t, c, map[string]any{"type": "credit", "id": 9, "n": 1000000})
	mustSend(t, c, map[string]any{"type": "ping", "id": "after"})
	if m := mustNext(t, c); m.Type != "pong" || string(m.ID) != `"after"` {
		t.Fatalf("got %s; want the pong next: credit is not answered", m.Raw)
	}
	for _, bad := range []string{
		`{"type":"credit","id":1}`,
		`{"type":"credit","id":2,"n":0}`,
		`{"type":"credit","id":3,"n":-5}`,
		`{"type":"credit","id":4,"n":1000001}`,
		`{"type":"credit","id":5,"n":"5"}`,
		`{"type":"credit","id":6,"n":1.5}`,
	} {
		m := expectError(t, c, bad, protocol.CodeInvalidMessage)
		if want := bad[len(`{"type":"credit","id":`) : len(`{"type":"credit","id":`)+1]; string(m.ID) != want {
			t.Fatalf("%s: answer id %s; want %s", bad, m.ID, want)
		}
	}
}

// TestCreditIsNotRateLimited: a client grants as fast as its application
// handles messages; credit never counts against the request rate limit.
func TestCreditIsNotRateLimited(t *testing.T) {
	ts := newTestServer(t, func(c *configs.Config) { c.Limits.RatePerMinute, c.Limits.RateBurst = 10, 3 })
	c := ts.login("1")
	for range 100 {
		mustSend(t, c, map[string]any{"type": "credit", "n": 8})
	}
	mustSend(t, c, map[string]any{"type": "ping", "id": "alive"})
	if m := mustNext(t, c); m.Type != "pong" {
		t.Fatalf("got %s; want a pong: 100 credits are not 100 requests", m.Raw)
	}
}

// TestFlowControlOverTheWire: with no credit left, ticks wait on the server
// (conflated) while answers still come; a grant brings the newest tick.
func TestFlowControlOverTheWire(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.seedMarket()
	c := ts.login("1")
	mustSend(t, c, map[string]any{"type": "credit", "n": 1}) // the snapshot takes it
	mustSend(t, c, map[string]any{"type": "subscribe", "id": 1, "channel": "market_data", "symbols": []string{"SHFE.rb2405"}})
	mustType(t, c, "subscribe_response")
	if m := mustNext(t, c); !m.Snapshot {
		t.Fatalf("got %s; want the snapshot", m.Raw)
	}
	var last uint64
	for i := range 20 {
		last = ts.publishTick("SHFE.rb2405", fmt.Sprintf("%d.0", 4100+i))
	}
	mustSend(t, c, map[string]any{"type": "ping", "id": "p"})
	if m := mustNext(t, c); m.Type != "pong" {
		t.Fatalf("got %s; want the pong while ticks wait for credit", m.Raw)
	}
	mustSend(t, c, map[string]any{"type": "credit", "n": 10})
	m := mustNext(t, c)
	if m.Type != "market_data" || m.Sequence != last {
		t.Fatalf("got %s; want the newest tick, sequence %d", m.Raw, last)
	}
	mustSend(t, c, map[string]any{"type": "ping", "id": "q"})
	if m := mustNext(t, c); m.Type != "pong" {
		t.Fatalf("got %s; want nothing but the pong: the rest was conflated away", m.Raw)
	}
}

// TestSubscribeDeliveryOptions: interval_ms and conflate are for market
// channels; what does not apply is refused with INVALID_REQUEST, and what
// is taken is named in the answer.
func TestSubscribeDeliveryOptions(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.login("1")
	md := func(extra map[string]any) map[string]any {
		m := map[string]any{"type": "subscribe", "channel": "market_data", "symbols": []string{"SHFE.rb2405"}}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	for _, req := range []map[string]any{
		{"type": "subscribe", "channel": "orders", "interval_ms": 100},
		{"type": "subscribe", "channel": "strategy_signals", "strategy_id": "S1", "interval_ms": 100},
		{"type": "subscribe", "channel": "orders", "conflate": false},
		md(map[string]any{"interval_ms": 5}),
		md(map[string]any{"interval_ms": 60001}),
		md(map[string]any{"interval_ms": -1}),
		md(map[string]any{"conflate": false, "interval_ms": 100}),
		{"type": "subscribe", "channel": "depth", "symbols": []string{"SHFE.rb2405"}, "conflate": false},
		{"type": "subscribe", "channel": "kline_1m", "symbols": []string{"SHFE.rb2405"}, "conflate": false},
	} {
		expectError(t, c, req, protocol.CodeInvalidRequest)
	}
	expectError(t, c, md(map[string]any{"interval_ms": "100"}), protocol.CodeInvalidMessage)

	mustSend(t, c, md(map[string]any{"interval_ms": 250}))
	if d := mustType(t, c, "subscribe_response").DataMap(); d["interval_ms"] != float64(250) || d["conflate"] != nil {
		t.Fatalf("answer %v; want interval_ms 250", d)
	}
	mustSend(t, c, md(map[string]any{"conflate": false, "interval_ms": 0}))
	if d := mustType(t, c, "subscribe_response").DataMap(); d["conflate"] != false || d["interval_ms"] != nil {
		t.Fatalf("answer %v; want conflate false", d)
	}
	mustSend(t, c, map[string]any{"type": "subscribe", "channel": "depth", "symbols": []string{"SHFE.rb2405"}, "conflate": true, "interval_ms": 10})
	if d := mustType(t, c, "subscribe_response").DataMap(); d["interval_ms"] != float64(10) {
		t.Fatalf("answer %v", d)
	}
}

// TestLosslessOverflowCloses4008: conflate:false ticks are never replaced;
// a client that takes none has them pile up against
// delivery.max_pending_bytes and is closed with 4008, with a close frame.
func TestLosslessOverflowCloses4008(t *testing.T) {
	ts := newTestServer(t, func(c *configs.Config) { c.Delivery.MaxPendingBytes = 64 << 10 })
	ts.seedMarket()
	c := ts.login("1")
	mustSend(t, c, map[string]any{"type": "credit", "n": 1}) // the snapshot takes it
	mustSend(t, c, map[string]any{"type": "subscribe", "channel": "market_data", "symbols": []string{"SHFE.rb2405"}, "conflate": false})
	mustType(t, c, "subscribe_response")
	mustNext(t, c)       // the snapshot
	for i := range 400 { // ~130 KB of ticks against a 64 KiB budget
		ts.publishTick("SHFE.rb2405", fmt.Sprintf("%d.0", 4000+i))
		if m := poll(c); m != nil {
			t.Fatalf("got %s while the client granted nothing", m.Raw)
		}
	}
	expectClose(t, c, protocol.CloseSlowConsumer)
}

// TestIntervalOverTheWire: with interval_ms, a burst of ticks comes down to
// a few, the last of them the newest.
func TestIntervalOverTheWire(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.seedMarket()
	c := ts.login("1")
	mustSend(t, c, map[string]any{"type": "subscribe", "channel": "market_data", "symbols": []string{"SHFE.rb2405"}, "interval_ms": 200})
	mustType(t, c, "subscribe_response")
	mustNext(t, c) // the snapshot
	var last uint64
	const burst = 200
	for i := range burst {
		last = ts.publishTick("SHFE.rb2405", fmt.Sprintf("%d.0", 4000+i))
	}
	got := 0
	testwait.Check(t, func() error {
		m := poll(c)
		if m == nil {
			return fmt.Errorf("%d ticks so far, the newest not yet", got)
		}
		got++
		if m.Sequence != last {
			return fmt.Errorf("%d ticks so far, the last %d of %d", got, m.Sequence, last)
		}
		return nil
	})
	if got > burst/2 {
		t.Fatalf("%d of %d ticks delivered; want them conflated to a few", got, burst)
	}
	t.Logf("%d ticks of a burst of %d, the last the newest", got, burst)
	if _, body := httpGet(t, ts.http.URL+"/metrics"); strings.Contains(body, "marketcast_conflated_total 0\n") {
		t.Fatal("nothing counted as conflated")
	}
}

// poll returns the message c has received, if any, without waiting.
func poll(c *wsclient.Client) *wsclient.Message {
	select {
	case m := <-c.Messages:
		return m
	default:
		return nil
	}
}
