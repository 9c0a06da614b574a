package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/marketcast/marketcast/bench/wsclient"
	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/engine/auth"
	"github.com/marketcast/marketcast/engine/gateway"
	"github.com/marketcast/marketcast/feed"
	"github.com/marketcast/marketcast/feed/market"
	"github.com/marketcast/marketcast/protocol"
)

const testSecret = "test-secret-0123456789abcdef"

var allPerms = []string{protocol.PermReadMarketData, protocol.PermReadSignals, protocol.PermPublish}

const wait = 5 * time.Second // generous: only a broken server takes this long

type testServer struct {
	t      testing.TB
	cfg    *configs.Config
	hub    *engine.Hub
	broker *engine.MemoryBroker
	market *market.Market
	srv    *gateway.Server
	http   *httptest.Server
	ws     string // ws://127.0.0.1:port/ws
}

var testSymbols = []string{"SHFE.rb2405", "SHFE.hc2405", "DCE.m2405"}

// newTestServer starts a real gateway on a loopback port, configured by the
// embedded production defaults (tune changes keys by their config names),
// with a market that knows testSymbols. It publishes nothing: seed state
// with seedMarket.
func newTestServer(t testing.TB, tune func(*configs.Config)) *testServer {
	t.Helper()
	return newTestServerWith(t, tune, nil)
}

// newTestServerWith is newTestServer with gtune applied to the gateway's
// configuration last (a test's clock, say).
func newTestServerWith(t testing.TB, tune func(*configs.Config), gtune func(*gateway.Config)) *testServer {
	t.Helper()
	cfg := configs.Default()
	cfg.Auth.Timeout.Duration = time.Second
	cfg.DevMode = false
	if tune != nil {
		tune(cfg)
	}
	broker := engine.NewMemoryBroker(cfg.HistoryLimits())
	hub := engine.NewHub(cfg.Engine(), broker)
	// As the server builds it: bars from ticks by the configured sessions.
	mcfg, err := cfg.Market()
	if err != nil {
		t.Fatal(err)
	}
	mkt := market.New(hub, mcfg)
	if err := mkt.AddSymbols(testSymbols); err != nil {
		t.Fatal(err)
	}
	gcfg := cfg.Gateway()
	if cfg.DevMode {
		gcfg.DevTokenTTL, gcfg.DevSecret = cfg.Auth.DevTokenTTL.Duration, []byte(testSecret)
	}
	if gtune != nil {
		gtune(&gcfg)
	}
	srv := gateway.New(gcfg, hub, mkt, auth.NewVerifier([]byte(testSecret)), nil)
	srv.SetFeedReady(true)
	hs := httptest.NewUnstartedServer(nil)
	hs.Config = srv.HTTPServer(srv.Handler())
	hs.Listener = srv.Listener(hs.Listener)
	hs.Start()
	ts := &testServer{t: t, cfg: cfg, hub: hub, broker: broker, market: mkt, srv: srv, http: hs,
		ws: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		hs.Close()
	})
	return ts
}

// seedMarket publishes one tick (last price 4000.0 + i for the i-th test
// symbol) and one book per test symbol, so subscriptions have snapshots.
func (ts *testServer) seedMarket() {
	ts.t.Helper()
	for i, sym := range testSymbols {
		ts.publishTick(sym, fmt.Sprintf("%d.0", 4000+i))
		ts.publishDepth(sym)
	}
}

func (ts *testServer) token(user string, perms ...string) string {
	ts.t.Helper()
	return mustToken(ts.t, user, perms, time.Hour)
}

func mustToken(t testing.TB, user string, perms []string, ttl time.Duration) string {
	t.Helper()
	tok, err := auth.Issue([]byte(testSecret), user, perms, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// publishTick publishes a tick and returns its sequence.
func (ts *testServer) publishTick(sym, last string) uint64 {
	ts.t.Helper()
	seq, err := ts.market.Publish(context.Background(), feed.TickPublication(&feed.Tick{Symbol: sym, LastPrice: last,
		BidPrice: last, AskPrice: last, BidVolume: "1", AskVolume: "2", Volume: "100", Turnover: "4000000.0",
		OpenInterest: "5000", Change: "1.0", ChangePercent: "0.03"}))
	if err != nil {
		ts.t.Fatal(err)
	}
	return seq
}

func (ts *testServer) publishDepth(sym string) {
	ts.t.Helper()
	if _, err := ts.market.Publish(context.Background(), feed.DepthPublication(&feed.Depth{Symbol: sym, Levels: 1,
		Bids: [][2]string{{"3999.0", "10"}}, Asks: [][2]string{{"4001.0", "15"}}})); err != nil {
		ts.t.Fatal(err)
	}
}

// dial connects without authenticating.
func (ts *testServer) dial(o wsclient.Options) *wsclient.Client {
	ts.t.Helper()
	return dialURL(ts.t, ts.ws, o)
}

func dialURL(t testing.TB, url string, o wsclient.Options) *wsclient.Client {
	t.Helper()
	c, _, err := wsclient.Dial(url, o)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(c.Close)
	return c
}

// login connects with a token for user in the query and waits for success.
func (ts *testServer) login(user string, perms ...string) *wsclient.Client {
	ts.t.Helper()
	if perms == nil {
		perms = allPerms
	}
	c := dialURL(ts.t, ts.ws+"?token="+ts.token(user, perms...), wsclient.Options{})
	m := mustNext(ts.t, c)
	if m.Type != "auth_response" || m.DataMap()["status"] != "success" {
		ts.t.Fatalf("login: got %s", m.Raw)
	}
	return c
}

func mustNext(t testing.TB, c *wsclient.Client) *wsclient.Message {
	t.Helper()
	m, err := c.Next(wait)
	if err != nil {
		t.Fatalf("waiting for a message: %v", err)
	}
	return m
}

func mustType(t testing.TB, c *wsclient.Client, typ string) *wsclient.Message {
	t.Helper()
	m, err := c.WaitType(wait, typ)
	if err != nil {
		t.Fatalf("waiting for %s: %v", typ, err)
	}
	return m
}

func mustSend(t testing.TB, c *wsclient.Client, v any) {
	t.Helper()
	var err error
	if s, ok := v.(string); ok {
		err = c.SendRaw([]byte(s))
	} else {
		err = c.Send(v)
	}
	if err != nil {
		t.Fatalf("send: %v", err)
	}
}

// expectError sends req and expects an error answer with code; it then
// checks the connection still answers a ping.
func expectError(t testing.TB, c *wsclient.Client, req any, code string) *wsclient.Message {
	t.Helper()
	mustSend(t, c, req)
	m := mustNext(t, c)
	if m.Type != "error" {
		t.Fatalf("request %v: got %s; want an error %s", req, m.Raw, code)
	}
	d := m.DataMap()
	if d["code"] != code || d["message"] == "" {
		t.Fatalf("request %v: got error %s; want code %s with a message", req, m.Raw, code)
	}
	mustSend(t, c, map[string]any{"type": "ping", "id": "alive"})
	if p := mustNext(t, c); p.Type != "pong" {
		t.Fatalf("after error %s the connection did not answer ping: %s", code, p.Raw)
	}
	return m
}

func expectClose(t testing.TB, c *wsclient.Client, code uint16) {
	t.Helper()
	got, err := c.WaitClose(wait)
	if err != nil {
		t.Fatalf("waiting for close %d: %v", code, err)
	}
	if got != code {
		t.Fatalf("close code %d (%v); want %d", got, c.CloseErr(), code)
	}
}

func httpGet(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func decode(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}
