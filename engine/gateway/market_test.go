package gateway_test

import (
	"regexp"
	"slices"
	"testing"

	"github.com/marketcast/marketcast/bench/wsclient"
)

var wireTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

func TestSubscribeSnapshotThenLive(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.seedMarket()
	c := ts.login("1")
	mustSend(t, c, map[string]any{"type": "subscribe", "id": 7, "channel": "market_data", "symbols": []string{"SHFE.rb2405", "SHFE.hc2405"}})
	resp := mustNext(t, c)
	if resp.Type != "subscribe_response" || string(resp.ID) != "7" {
		t.Fatalf("got %s; want subscribe_response with id 7", resp.Raw)
	}
	d := resp.DataMap()
	if d["status"] != "success" || len(d["symbols"].([]any)) != 2 {
		t.Fatalf("got %s", resp.Raw)
	}
	seen := map[string]*wsclient.Message{}
	for len(seen) < 2 {
		m := mustNext(t, c)
		if m.Type != "market_data" || m.Channel != "tick" || !m.Snapshot {
			t.Fatalf("got %s; want a tick snapshot", m.Raw)
		}
		seen[m.Symbol] = m
	}
	snap := seen["SHFE.rb2405"]
	if snap.Sequence != 1 || !wireTime.MatchString(snap.Timestamp) {
		t.Fatalf("snapshot sequence %d timestamp %q", snap.Sequence, snap.Timestamp)
	}
	if got := snap.DataMap()["last_price"]; got != "4000.0" {
		t.Fatalf("last_price %v (%T); want the decimal string 4000.0", got, got)
	}

	ts.publishTick("SHFE.rb2405", "4001.0")
	live := mustNext(t, c)
	if live.Snapshot || live.Sequence != 2 || live.Symbol != "SHFE.rb2405" || live.DataMap()["last_price"] != "4001.0" {
		t.Fatalf("got %s; want live tick 2 of rb", live.Raw)
	}
	if decode(t, live.Raw)["snapshot"] != nil {
		t.Fatalf("live message carries a snapshot key: %s", live.Raw)
	}

	mustSend(t, c, map[string]any{"type": "unsubscribe", "id": "u1", "channel": "market_data", "symbols": []string{"SHFE.rb2405"}})
	if m := mustNext(t, c); m.Type != "unsubscribe_response" || string(m.ID) != `"u1"` {
		t.Fatalf("got %s; want unsubscribe_response u1", m.Raw)
	}
	ts.publishTick("SHFE.rb2405", "4002.0")
	ts.publishTick("SHFE.hc2405", "4100.0")
	m := mustNext(t, c)
	if m.Symbol != "SHFE.hc2405" {
		t.Fatalf("after unsubscribe got %s; want only hc", m.Raw)
	}
}

func TestFieldsProjection(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.seedMarket()
	c := ts.login("1")
	mustSend(t, c, map[string]any{"type": "subscribe", "channel": "market_data", "symbols": []string{"SHFE.rb2405"},
		"fields": []string{"last_price", "volume", "bid", "ask"}})
	resp := mustType(t, c, "subscribe_response")
	if got := resp.DataMap()["fields"]; len(got.([]any)) != 4 {
		t.Fatalf("accepted fields %v", got)
	}
	snap := mustNext(t, c)
	keys := make([]string, 0)
	for k := range snap.DataMap() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"ask_price", "bid_price", "last_price", "volume"}; !slices.Equal(keys, want) {
		t.Fatalf("projected keys %v; want %v", keys, want)
	}
	// A second subscriber without fields gets the full tick from the same event.
	c2 := ts.login("2")
	mustSend(t, c2, map[string]any{"type": "subscribe", "channel": "tick", "symbols": []string{"SHFE.rb2405"}})
	mustType(t, c2, "subscribe_response")
	if full := mustNext(t, c2); len(full.DataMap()) != 10 {
		t.Fatalf("full tick has %d keys: %s", len(full.DataMap()), full.Raw)
	}
}

func TestDepthAndKlineSnapshots(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.seedMarket()
	c := ts.login("1")
	mustSend(t, c, map[string]any{"type": "subscribe", "channel": "depth", "symbols": []string{"DCE.m2405"}})
	mustType(t, c, "subscribe_response")
	d := mustNext(t, c)
	if d.Type != "depth" || d.Channel != "depth" || !d.Snapshot {
		t.Fatalf("got %s; want a depth snapshot", d.Raw)
	}
	bids := d.DataMap()["bids"].([]any)
	if lvl := bids[0].([]any); lvl[0] != "3999.0" || lvl[1] != "10" {
		t.Fatalf("bids %v", bids)
	}
	// kline topics exist once bars are published; subscribing is allowed
	// for every known symbol even before the first bar.
	mustSend(t, c, map[string]any{"type": "subscribe", "channel": "kline_1m", "symbols": []string{"DCE.m2405"}})
	if m := mustNext(t, c); m.Type != "subscribe_response" {
		t.Fatalf("got %s", m.Raw)
	}
}

func TestPingPong(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial(wsclient.Options{}) // ping works before auth too
	mustSend(t, c, map[string]any{"type": "ping", "id": "p1", "timestamp": "2023-12-01T10:30:00Z"})
	m := mustNext(t, c)
	if m.Type != "pong" || string(m.ID) != `"p1"` || !wireTime.MatchString(m.Timestamp) ||
		m.DataMap()["client_timestamp"] != "2023-12-01T10:30:00Z" {
		t.Fatalf("got %s", m.Raw)
	}
}
