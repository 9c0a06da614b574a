package gateway_test

import (
	"strings"
	"testing"

	"github.com/marketcast/marketcast/bench/wsclient"
	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/protocol"
)

func TestBadInputKeepsConnection(t *testing.T) {
	ts := newTestServer(t, func(c *configs.Config) { c.Limits.RateBurst = 1000 })
	c := ts.login("1")
	sub := func(extra map[string]any) map[string]any {
		m := map[string]any{"type": "subscribe", "id": "x", "channel": "market_data", "symbols": []string{"SHFE.rb2405"}}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	f := func(req any, code, mentions string) {
		t.Helper()
		m := expectError(t, c, req, code)
		if !strings.Contains(string(m.Raw), mentions) {
			t.Fatalf("error %s should mention %q", m.Raw, mentions)
		}
	}
	f(`{"type":"subscribe",`, "INVALID_JSON", "not valid JSON")
	f(`[{"type":"ping"}]`, "INVALID_MESSAGE", "JSON object")
	f(`"ping"`, "INVALID_MESSAGE", "JSON object")
	f(`{"id":"q","channel":"tick"}`, "INVALID_MESSAGE", "missing type")
	f(sub(map[string]any{"symbols": "SHFE.rb2405"}), "INVALID_MESSAGE", "symbols")
	f(sub(map[string]any{"type": 5}), "INVALID_MESSAGE", "type")
	f(sub(map[string]any{"since": -1}), "INVALID_MESSAGE", "since")
	f(sub(map[string]any{"id": []int{1}}), "INVALID_MESSAGE", "id")
	f(sub(map[string]any{"type": "subscribe_all"}), "UNKNOWN_TYPE", "subscribe_all")
	f(sub(map[string]any{"channel": "quotes"}), "UNKNOWN_CHANNEL", "quotes")
	f(sub(map[string]any{"channel": "kline_2m"}), "UNKNOWN_CHANNEL", "kline_2m")
	f(sub(map[string]any{"channel": ""}), "UNKNOWN_CHANNEL", "missing channel")
	f(sub(map[string]any{"symbols": []string{"SHFE.rb2405", "NOPE.x1"}}), "UNKNOWN_SYMBOL", "NOPE.x1")
	f(sub(map[string]any{"symbols": []string{}}), "INVALID_MESSAGE", "symbols")
	f(sub(map[string]any{"fields": []string{"last_price", "colour"}}), "UNKNOWN_FIELD", "colour")
	f(sub(map[string]any{"channel": "depth", "fields": []string{"bids"}}), "INVALID_MESSAGE", "fields")

	// The failed requests subscribed nothing: a publish reaches no one.
	ts.publishTick("SHFE.rb2405", "4100.0")
	mustSend(t, c, map[string]any{"type": "ping", "id": "last"})
	if m := mustNext(t, c); m.Type != "pong" {
		t.Fatalf("a failed subscribe delivered %s", m.Raw)
	}
	// An error echoes the request id even when the request was bad.
	m := expectError(t, c, `{"id":"keep","type":"subscribe","symbols":"x"}`, "INVALID_MESSAGE")
	if string(m.ID) != `"keep"` {
		t.Fatalf("id not echoed: %s", m.Raw)
	}
}

func TestTooManySubscriptions(t *testing.T) {
	ts := newTestServer(t, func(c *configs.Config) { c.Limits.MaxSubscriptions = 2 })
	ts.seedMarket()
	c := ts.login("1")
	mustSend(t, c, map[string]any{"type": "subscribe", "channel": "tick", "symbols": []string{"SHFE.rb2405", "SHFE.hc2405"}})
	mustType(t, c, "subscribe_response")
	mustNext(t, c)
	mustNext(t, c)
	expectError(t, c, map[string]any{"type": "subscribe", "channel": "depth", "symbols": []string{"DCE.m2405"}}, "TOO_MANY_SUBSCRIPTIONS")
	// Re-subscribing to what it has needs no room.
	mustSend(t, c, map[string]any{"type": "subscribe", "channel": "tick", "symbols": []string{"SHFE.rb2405"}})
	mustType(t, c, "subscribe_response")
}

func TestRateLimit(t *testing.T) {
	ts := newTestServer(t, func(c *configs.Config) {
		c.Limits.RatePerMinute, c.Limits.RateBurst, c.Limits.RateStrikes = 60, 5, 3
	})
	c := ts.login("1")
	for i := 0; i < 5; i++ {
		mustSend(t, c, map[string]any{"type": "ping"})
		if m := mustNext(t, c); m.Type != "pong" {
			t.Fatalf("within burst got %s", m.Raw)
		}
	}
	mustSend(t, c, map[string]any{"type": "ping", "id": 9})
	m := mustNext(t, c)
	if m.Type != "error" || m.DataMap()["code"] != "RATE_LIMITED" || string(m.ID) != "9" {
		t.Fatalf("over the limit got %s; want RATE_LIMITED", m.Raw)
	}
	mustSend(t, c, map[string]any{"type": "ping"})
	mustSend(t, c, map[string]any{"type": "ping"})
	expectClose(t, c, protocol.CloseRateLimited)
}

func TestOversizedFrameCloses1009(t *testing.T) {
	ts := newTestServer(t, func(c *configs.Config) { c.Limits.MaxFrameBytes = 1024 })
	c := ts.login("1")
	mustSend(t, c, `{"type":"ping","pad":"`+strings.Repeat("x", 2000)+`"}`)
	expectClose(t, c, protocol.CloseTooLarge)
}

func TestDeflateNegotiatedAndNot(t *testing.T) {
	ts := newTestServer(t, func(c *configs.Config) { c.Delivery.DeflateThreshold = 64 })
	ts.seedMarket()
	plain := ts.login("1")
	z := dialURL(t, ts.ws+"?token="+ts.token("2", allPerms...), wsclient.Options{Deflate: true})
	mustType(t, z, "auth_response")
	for _, c := range []*wsclient.Client{plain, z} {
		mustSend(t, c, map[string]any{"type": "subscribe", "channel": "tick", "symbols": []string{"SHFE.rb2405"}})
		mustType(t, c, "subscribe_response")
		mustNext(t, c) // snapshot
	}
	for i := 0; i < 5; i++ {
		ts.publishTick("SHFE.rb2405", "4200.0")
		a, b := mustNext(t, plain), mustNext(t, z)
		if string(a.Raw) != string(b.Raw) {
			t.Fatalf("deflate peer decoded %s; plain peer got %s", b.Raw, a.Raw)
		}
	}
	if st := ts.hub.Stats(); st.DeflateIn == 0 || st.DeflateOut >= st.DeflateIn {
		t.Fatalf("deflate counters in=%d out=%d; want compressed frames", st.DeflateIn, st.DeflateOut)
	}
}
