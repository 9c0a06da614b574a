package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/marketcast/marketcast/bench/wsclient"
	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/feed"
	"github.com/marketcast/marketcast/internal/testwait"
	"github.com/marketcast/marketcast/protocol"
)

// TestStalledReaderDoesNotHoldOthers: one subscriber stops reading while a
// large book is published many times; another subscriber of the same topic
// still receives the final book, and the stalled one is conflated rather
// than buffered.
func TestStalledReaderDoesNotHoldOthers(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.seedMarket()
	stalled, healthy := ts.login("1"), ts.login("2")
	for _, c := range []*wsclient.Client{stalled, healthy} {
		mustSend(t, c, map[string]any{"type": "subscribe", "channel": "depth", "symbols": []string{"SHFE.rb2405"}})
		mustType(t, c, "subscribe_response")
		mustNext(t, c) // snapshot
	}
	stalled.Stall()
	big := &feed.Depth{Symbol: "SHFE.rb2405", Levels: 2000}
	for i := 0; i < 2000; i++ {
		big.Bids = append(big.Bids, [2]string{fmt.Sprintf("%d.0", 4000-i), "10"})
	}
	var last uint64
	for i := 0; i < 400; i++ { // ~16 MB in all: far beyond socket buffers
		seq, err := ts.market.Publish(context.Background(), feed.DepthPublication(big))
		if err != nil {
			t.Fatal(err)
		}
		last = seq
	}
	m, err := healthy.WaitFor(wait, func(m *wsclient.Message) bool { return m.Sequence == last })
	if err != nil {
		t.Fatalf("healthy subscriber never got book %d while another stalled: %v", last, err)
	}
	if m.Type != "depth" {
		t.Fatalf("got %s", m.Type)
	}
	if ts.hub.Stats().Conflated == 0 {
		t.Fatal("the stalled subscriber's books were not conflated")
	}
}

func TestHealthStatsMetrics(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.seedMarket()
	c := ts.login("1")
	mustSend(t, c, map[string]any{"type": "subscribe", "channel": "tick", "symbols": []string{"SHFE.rb2405"}})
	mustType(t, c, "subscribe_response")
	mustNext(t, c)
	expectError(t, c, `{"type":"nope"}`, "UNKNOWN_TYPE")
	ts.publishTick("SHFE.rb2405", "4321.0")
	mustNext(t, c) // a live delivery feeds the publish→flush histogram

	if code, body := httpGet(t, ts.http.URL+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("healthz %d %q", code, body)
	}
	if code, _ := httpGet(t, ts.http.URL+"/readyz"); code != 200 {
		t.Fatalf("readyz %d", code)
	}
	ts.srv.SetFeedReady(false)
	if code, body := httpGet(t, ts.http.URL+"/readyz"); code != 503 || !strings.Contains(body, "feed") {
		t.Fatalf("readyz without feed %d %q", code, body)
	}
	ts.srv.SetFeedReady(true)

	code, body := httpGet(t, ts.http.URL+"/ws/stats")
	st := decode(t, []byte(body))
	if code != 200 || st["active_connections"].(float64) != 1 || st["total_connections"].(float64) != 1 ||
		st["messages_received"].(float64) < 3 || st["messages_sent"].(float64) < 4 || st["errors"].(float64) < 1 ||
		st["subscriptions"].(float64) != 1 {
		t.Fatalf("stats %d %s", code, body)
	}

	// The flusher records its metrics just after the write the client saw.
	testwait.For(t, "the flush metrics", func() bool {
		_, body = httpGet(t, ts.http.URL+"/metrics")
		return strings.Contains(body, "marketcast_publish_to_flush_seconds_bucket")
	})
	for _, name := range []string{
		"marketcast_connections 1", "marketcast_connections_total", "marketcast_subscriptions 1",
		"marketcast_messages_sent_total", "marketcast_sent_bytes_total", "marketcast_flush_batch_frames_bucket",
		"marketcast_publish_to_flush_seconds_bucket", `marketcast_errors_by_code_total{code="UNKNOWN_TYPE"} 1`,
		"marketcast_slow_consumer_closes_total", "marketcast_deflate_in_bytes_total", "process_resident_memory_bytes",
	} {
		if !strings.Contains(body, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

func TestShutdownClosesClientsWith1001(t *testing.T) {
	ts := newTestServer(t, nil)
	a, b := ts.login("1"), ts.dial(wsclient.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	expectClose(t, a, protocol.CloseGoingAway)
	expectClose(t, b, protocol.CloseGoingAway)
	if code, _ := httpGet(t, ts.http.URL+"/readyz"); code != 503 {
		t.Fatalf("readyz while draining: %d", code)
	}
	if _, _, err := wsclient.Dial(ts.ws, wsclient.Options{}); err == nil {
		t.Fatal("a draining server accepted a connection")
	}
	if status, _ := ts.post(ts.publisher(), `{"channel":"orders","user_id":"1","data":{}}`); status != 503 {
		t.Fatalf("publish while draining: %d", status)
	}
}

func TestKeepalivePingsAndIdleClose(t *testing.T) {
	ts := newTestServer(t, func(c *configs.Config) { c.Keepalive.PingInterval.Duration = 300 * time.Millisecond })
	// A client that answers pings (gws does) stays connected across many intervals.
	c := ts.login("1")
	testwait.For(t, "three keepalive pings answered", func() bool { return c.Pings() >= 3 })
	mustSend(t, c, map[string]any{"type": "ping"})
	if m := mustNext(t, c); m.Type != "pong" {
		t.Fatalf("got %s", m.Raw)
	}
	// A client that goes silent (reads nothing, so answers no ping) is
	// dropped after two intervals.
	s := ts.login("2")
	s.Stall()
	mustSend(t, s, map[string]any{"type": "ping"}) // its pong freezes the read loop
	ts.waitConnections(1)                          // the silent one dropped
	mustSend(t, c, map[string]any{"type": "ping"})
	if m := mustNext(t, c); m.Type != "pong" {
		t.Fatalf("the live client was dropped too: %s", m.Raw)
	}
}

func TestSymbolsAndDevToken(t *testing.T) {
	ts := newTestServer(t, nil)
	code, body := httpGet(t, ts.http.URL+"/api/v1/symbols")
	if code != 200 || body != `{"symbols":["DCE.m2405","SHFE.hc2405","SHFE.rb2405"]}`+"\n" {
		t.Fatalf("symbols %d %s", code, body)
	}
	// Without a development TTL the token endpoint does not exist.
	if code, _ := httpGet(t, ts.http.URL+"/dev/token"); code != 404 {
		t.Fatalf("dev token endpoint in a non-dev config: %d", code)
	}
	dev := newTestServer(t, func(c *configs.Config) { c.DevMode, c.Auth.DevTokenTTL.Duration = true, time.Hour })
	code, body = httpGet(t, dev.http.URL+"/dev/token?user=7")
	tok, _ := decode(t, []byte(body))["token"].(string)
	if code != 200 || tok == "" {
		t.Fatalf("dev token %d %s", code, body)
	}
	c := dialURL(t, dev.ws+"?token="+tok, wsclient.Options{})
	if m := mustNext(t, c); m.DataMap()["user_id"] != "7" {
		t.Fatalf("dev token does not authenticate: %s", m.Raw)
	}
	if code, _ := httpGet(t, dev.http.URL+"/dev/token?user=%20bad"); code != 400 {
		t.Fatalf("invalid user: %d", code)
	}
	// DNS rebinding: a name that resolves here is not asked for tokens.
	req, _ := http.NewRequest("GET", dev.http.URL+"/dev/token?user=victim&permissions=publish", nil)
	req.Host = "attacker.example"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("dev token for Host attacker.example: %d; want 403", resp.StatusCode)
	}
	// A peer that is not on this machine (development mode on a container's
	// :8000, reached by IP) gets none, whatever Host it names.
	rec := httptest.NewRecorder()
	far := httptest.NewRequest("GET", "/dev/token?user=1&permissions=publish", nil)
	far.RemoteAddr, far.Host = "203.0.113.7:50000", "203.0.113.9:8000"
	dev.srv.Handler().ServeHTTP(rec, far)
	if rec.Code != 403 || !strings.Contains(rec.Body.String(), "loopback") {
		t.Fatalf("dev token for a remote peer: %d %s; want 403", rec.Code, rec.Body.String())
	}
}
