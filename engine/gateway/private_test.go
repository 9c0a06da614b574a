package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketcast/marketcast/bench/wsclient"
	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/internal/testwait"
	"github.com/marketcast/marketcast/protocol"
)

// post sends a publish request with token and returns status and body.
func (ts *testServer) post(token string, body string) (int, map[string]any) {
	ts.t.Helper()
	req, _ := http.NewRequest("POST", ts.http.URL+"/api/v1/publish", strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		ts.t.Fatalf("publish answer is not JSON: %s", b)
	}
	return resp.StatusCode, v
}

func (ts *testServer) publisher() string { return ts.token("backend", "publish") }

// epoch is the current run of a reliable topic, as a client that saw its
// messages knows it.
func (ts *testServer) epoch(topic string) string {
	ts.t.Helper()
	h, err := ts.broker.History(context.Background(), topic, 0, 0)
	if err != nil || h.Last == nil {
		ts.t.Fatalf("no run of %s: %v", topic, err)
	}
	return h.Last.Epoch()
}

// order publishes one order update for user through the API.
func (ts *testServer) order(user string, n int) uint64 {
	ts.t.Helper()
	status, v := ts.post(ts.publisher(), fmt.Sprintf(`{"channel":"orders","user_id":%q,"data":{"order_id":"ORD_%d","status":"FILLED","n":%d}}`, user, n, n))
	if status != 200 {
		ts.t.Fatalf("publish: %d %v", status, v)
	}
	return uint64(v["results"].([]any)[0].(map[string]any)["sequence"].(float64))
}

// subscribeOrders subscribes to the user's orders, resuming after since
// of epoch when since is set.
func subscribeOrders(t *testing.T, c *wsclient.Client, since *uint64, epoch string) *wsclient.Message {
	t.Helper()
	req := map[string]any{"type": "subscribe", "channel": "orders"}
	if since != nil {
		req["since"] = *since
	}
	if epoch != "" {
		req["epoch"] = epoch
	}
	mustSend(t, c, req)
	return mustType(t, c, "subscribe_response")
}

func TestPublishAPIErrors(t *testing.T) {
	ts := newTestServer(t, nil)
	pub := ts.publisher()
	f := func(token, body string, status int, mentions string) {
		t.Helper()
		got, v := ts.post(token, body)
		if got != status || !strings.Contains(fmt.Sprint(v), mentions) {
			t.Fatalf("POST %s: got %d %v; want %d mentioning %q", body, got, v, status, mentions)
		}
	}
	order := `{"channel":"orders","user_id":"1","data":{"order_id":"A"}}`
	f("", order, 401, "bearer token")
	f("garbage", order, 401, "invalid token")
	f(mustToken(t, "x", []string{"publish"}, -time.Minute), order, 401, "expired")
	f(ts.token("x", "read:market_data"), order, 403, "publish")
	f(pub, `{"channel":`, 400, "not valid JSON")
	f(pub, ``, 400, "empty body")
	f(pub, `[]`, 400, "empty array")
	f(pub, `"orders"`, 400, "object")
	f(pub, `{"channel":"trades","user_id":"1","data":{}}`, 400, "unknown channel")
	f(pub, `{"user_id":"1","data":{}}`, 400, "missing channel")
	f(pub, `{"channel":"orders","data":{}}`, 400, "missing user_id")
	f(pub, `{"channel":"orders","user_id":{"a":1},"data":{}}`, 400, "user_id")
	f(pub, `{"channel":"orders","user_id":"1","data":[1]}`, 400, "data must be a JSON object")
	f(pub, `{"channel":"orders","user_id":"1"}`, 400, "data must be a JSON object")
	f(pub, `{"channel":"strategy_signals","data":{}}`, 400, "strategy_id")
	f(pub, `{"channel":"tick","data":{}}`, 400, "symbol")
	f(pub, `{"channel":"orders","type":"x","user_id":"1","data":{}}`, 400, "type")
	f(pub, `{"channel":5}`, 400, "channel")

	f(pub, `{"channel":"orders","user_id":"1","data":{"pad":"`+strings.Repeat("x", 5<<20)+`"}}`, 413, "larger than")
	f(pub, `{"channel":"orders","user_id":"1","data":{"pad":"`+strings.Repeat("x", 70<<10)+`"}}`, 400, "at most 65536")

	// A batch with one bad message publishes nothing.
	f(pub, `[`+order+`,{"channel":"orders","data":{}}]`, 400, "message 1")
	if h, _ := ts.broker.History(context.Background(), "orders:1", 0, 0); h.Last != nil {
		t.Fatal("a rejected batch published its valid part")
	}
	status, v := ts.post(pub, `[`+order+`,`+order+`]`)
	res := v["results"].([]any)
	if status != 200 || len(res) != 2 || res[1].(map[string]any)["sequence"].(float64) != 2 ||
		res[0].(map[string]any)["topic"] != "orders:1" {
		t.Fatalf("batch: %d %v", status, v)
	}
}

func TestPrivateIsolationAndShapes(t *testing.T) {
	ts := newTestServer(t, nil)
	a1, a2, b := ts.login("A"), ts.login("A"), ts.login("B")
	for _, c := range []*wsclient.Client{a1, a2, b} {
		if r := subscribeOrders(t, c, nil, ""); r.DataMap()["status"] != "success" {
			t.Fatalf("got %s", r.Raw)
		}
	}
	expectError(t, b, map[string]any{"type": "subscribe", "channel": "orders", "user_id": "A"}, "FORBIDDEN")
	ts.order("A", 1)
	ts.order("B", 2)
	for _, c := range []*wsclient.Client{a1, a2} {
		m := mustNext(t, c)
		if m.Type != "order_update" || m.Channel != "orders" || m.Sequence != 1 || m.DataMap()["order_id"] != "ORD_1" {
			t.Fatalf("user A got %s", m.Raw)
		}
	}
	if m := mustNext(t, b); m.DataMap()["order_id"] != "ORD_2" {
		t.Fatalf("user B got %s; want only its own order", m.Raw)
	}

	// Seed shapes of the other private channels; numeric user_id accepted.
	types := map[string]string{"positions": "position_update", "account": "account_update", "notifications": "risk_alert"}
	for ch, typ := range types {
		mustSend(t, b, map[string]any{"type": "subscribe", "channel": ch, "user_id": "B"})
		mustType(t, b, "subscribe_response")
		status, v := ts.post(ts.publisher(), fmt.Sprintf(`{"channel":%q,"user_id":"B","data":{"symbol":"SHFE.rb2405"}}`, ch))
		if status != 200 {
			t.Fatalf("%d %v", status, v)
		}
		if m := mustNext(t, b); m.Type != typ || m.Channel != ch {
			t.Fatalf("%s: got %s; want %s", ch, m.Raw, typ)
		}
	}
	n := ts.login("9")
	mustSend(t, n, map[string]any{"type": "subscribe", "channel": "positions", "user_id": 9})
	if r := mustType(t, n, "subscribe_response"); r.DataMap()["user_id"] != "9" {
		t.Fatalf("numeric user_id: %s", r.Raw)
	}
}

func TestSnapshotsOfStateChannels(t *testing.T) {
	ts := newTestServer(t, nil)
	for i := 1; i <= 3; i++ {
		ts.post(ts.publisher(), fmt.Sprintf(`{"channel":"positions","user_id":"1","data":{"quantity":"%d.0"}}`, i))
	}
	ts.order("1", 1)
	c := ts.login("1")
	mustSend(t, c, map[string]any{"type": "subscribe", "channel": "positions"})
	mustType(t, c, "subscribe_response")
	if m := mustNext(t, c); !m.Snapshot || m.Sequence != 3 || m.DataMap()["quantity"] != "3.0" {
		t.Fatalf("positions snapshot: %s", m.Raw)
	}
	// Orders are events: no snapshot without since.
	subscribeOrders(t, c, nil, "")
	mustSend(t, c, map[string]any{"type": "ping"})
	if m := mustNext(t, c); m.Type != "pong" {
		t.Fatalf("orders sent %s on subscribe", m.Raw)
	}
}

func TestSignalsAndBroadcast(t *testing.T) {
	ts := newTestServer(t, nil)
	noSig := ts.login("1", "read:market_data")
	expectError(t, noSig, map[string]any{"type": "subscribe", "channel": "strategy_signals", "strategy_id": "S1"}, "FORBIDDEN")
	c := ts.login("2")
	expectError(t, c, map[string]any{"type": "subscribe", "channel": "strategy_signals"}, "INVALID_MESSAGE")
	mustSend(t, c, map[string]any{"type": "subscribe", "channel": "strategy_signals", "strategy_id": "STR_20231201_001"})
	mustType(t, c, "subscribe_response")
	status, _ := ts.post(ts.publisher(), `{"channel":"strategy_signals","strategy_id":"STR_20231201_001","data":{"signal":"BUY","confidence":0.85,"price":"4000.0"}}`)
	if status != 200 {
		t.Fatal(status)
	}
	m := mustNext(t, c)
	if m.Type != "strategy_signal" || m.Channel != "signals" || m.StrategyID != "STR_20231201_001" || m.DataMap()["confidence"] != 0.85 {
		t.Fatalf("got %s", m.Raw)
	}

	// A broadcast notice is one event of the broadcast stream, which every
	// notifications subscriber follows beside its own.
	d := ts.login("3")
	for _, x := range []*wsclient.Client{c, d} {
		mustSend(t, x, map[string]any{"type": "subscribe", "channel": "notifications"})
		r := mustType(t, x, "subscribe_response")
		b, _ := r.DataMap()["broadcast"].(map[string]any)
		if b == nil || b["epoch"] != nil || b["sequence"] != 0.0 {
			t.Fatalf("answer %s; want the broadcast stream's position: no run yet, so sequence 0 and no epoch", r.Raw)
		}
	}
	status, v := ts.post(ts.publisher(), `{"channel":"notifications","data":{"title":"maintenance at 16:00"}}`)
	res := v["results"].([]any)[0].(map[string]any)
	if status != 200 || res["topic"] != "notifications:*" || res["sequence"] != 1.0 || res["epoch"] == "" {
		t.Fatalf("broadcast: %d %v", status, v)
	}
	for _, x := range []*wsclient.Client{c, d} {
		m := mustNext(t, x)
		if m.Type != "system_notice" || m.Channel != "notifications" || m.Sequence != 1 || !strings.Contains(string(m.Raw), `"broadcast":true`) {
			t.Fatalf("got %s", m.Raw)
		}
	}
	status, _ = ts.post(ts.publisher(), `{"channel":"notifications","user_id":"3","type":"margin_call","data":{"level":"CRITICAL"}}`)
	if m := mustNext(t, d); status != 200 || m.Type != "margin_call" || m.Sequence != 1 || strings.Contains(string(m.Raw), "broadcast") {
		t.Fatalf("typed alert: %s", m.Raw)
	}
}

func TestResumeSince(t *testing.T) {
	ts := newTestServer(t, nil)
	for i := 1; i <= 10; i++ {
		ts.order("1", i)
	}
	c := ts.login("1")
	since := uint64(4)
	r := subscribeOrders(t, c, &since, ts.epoch("orders:1"))
	if r.DataMap()["recovered"] != true {
		t.Fatalf("got %s; want recovered true", r.Raw)
	}
	for want := uint64(5); want <= 10; want++ {
		if m := mustNext(t, c); m.Sequence != want || m.Snapshot {
			t.Fatalf("replay got %s; want sequence %d", m.Raw, want)
		}
	}
	ts.order("1", 11)
	if m := mustNext(t, c); m.Sequence != 11 {
		t.Fatalf("live after replay got %s", m.Raw)
	}
	// A sequence from the future (a server restart reset the topic): not recovered.
	c2 := ts.login("1")
	future := uint64(99)
	if r := subscribeOrders(t, c2, &future, ts.epoch("orders:1")); r.DataMap()["recovered"] != false {
		t.Fatalf("got %s; want recovered false", r.Raw)
	}
}

func TestResumeBeyondHistory(t *testing.T) {
	ts := newTestServer(t, func(c *configs.Config) { c.History.Size = 5 })
	for i := 1; i <= 10; i++ {
		ts.order("1", i)
	}
	c := ts.login("1")
	since := uint64(2)
	if r := subscribeOrders(t, c, &since, ts.epoch("orders:1")); r.DataMap()["recovered"] != false {
		t.Fatalf("got %s; want recovered false", r.Raw)
	}
	since = 5 // history holds 6..10: complete
	c2 := ts.login("1")
	if r := subscribeOrders(t, c2, &since, ts.epoch("orders:1")); r.DataMap()["recovered"] != true {
		t.Fatalf("got %s; want recovered true", r.Raw)
	}
	if m := mustNext(t, c2); m.Sequence != 6 {
		t.Fatalf("got %s", m.Raw)
	}
}

func TestResumeBeyondHistoryAge(t *testing.T) {
	ts := newTestServer(t, func(c *configs.Config) { c.History.TTL.Duration = 100 * time.Millisecond })
	ts.order("1", 1)
	ts.order("1", 2)
	testwait.For(t, "history to age out", func() bool {
		h, err := ts.broker.History(context.Background(), "orders:1", 0, 0)
		return err == nil && h.First == 0
	})
	c := ts.login("1")
	since := uint64(1)
	if r := subscribeOrders(t, c, &since, ts.epoch("orders:1")); r.DataMap()["recovered"] != false {
		t.Fatalf("got %s; want recovered false once history aged out", r.Raw)
	}
}

// TestSlowConsumerOverflowThenResume: a client that stops reading is closed
// with 4008 once its backlog passes the limit, and a new connection resumes
// every order it missed.
func TestSlowConsumerOverflowThenResume(t *testing.T) {
	ts := newTestServer(t, func(c *configs.Config) { c.Delivery.MaxPendingBytes = 256 << 10 })
	c := ts.login("1")
	subscribeOrders(t, c, nil, "")
	pad := strings.Repeat("x", 8000)
	publish := func(n int) {
		body := fmt.Sprintf(`{"channel":"orders","user_id":"1","data":{"n":%d,"pad":%q}}`, n, pad)
		if status, v := ts.post(ts.publisher(), body); status != 200 {
			t.Fatalf("%d %v", status, v)
		}
	}
	publish(1)
	first := mustNext(t, c)
	c.Stall()
	publish(2) // the read loop freezes on this one
	for n := 3; ts.hub.Stats().SlowConsumers == 0; n++ {
		if n > 5000 {
			t.Fatal("a stalled client never overflowed")
		}
		publish(n)
	}
	// Reading again, the client drains what reached it, then the 4008.
	c.Unstall()
	for {
		m, err := c.Next(wait)
		if err != nil {
			break
		}
		if m.Sequence != first.Sequence+1 {
			t.Fatalf("before the close got sequence %d after %d", m.Sequence, first.Sequence)
		}
		first = m
	}
	expectClose(t, c, protocol.CloseSlowConsumer)
	h, _ := ts.broker.History(context.Background(), "orders:1", 0, 0)
	last := h.Last.Sequence()
	r := ts.login("1")
	since := first.Sequence
	if resp := subscribeOrders(t, r, &since, ts.epoch("orders:1")); resp.DataMap()["recovered"] != true {
		t.Fatalf("got %s", resp.Raw)
	}
	for want := first.Sequence + 1; want <= last; want++ {
		if m := mustNext(t, r); m.Sequence != want {
			t.Fatalf("resume got sequence %d; want %d", m.Sequence, want)
		}
	}
}

// TestSoakResumeExactlyOnce publishes thousands of orders to one user while
// the user's client drops and resumes at random points; every order must
// arrive exactly once, in sequence order.
func TestSoakResumeExactlyOnce(t *testing.T) {
	ts := newTestServer(t, nil)
	const total = 3000
	done := make(chan struct{})
	// The publisher stays at most 300 orders ahead of what the client has
	// read, so drops and resumes fall all along the stream.
	ahead := make(chan struct{}, 300)
	go func() {
		defer close(done)
		for i := 1; i <= total; i++ {
			ahead <- struct{}{}
			if _, err := ts.hub.Publish(context.Background(), engine.Message{Topic: "orders:u", Mode: engine.Reliable, Type: "order_update",
				Channel: "orders", Data: []byte(fmt.Sprintf(`{"n":%d}`, i))}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	rng := rand.New(rand.NewPCG(1, 2))
	var last uint64
	got := 0
	reconnects := 0
	for last < total {
		c := ts.login("u")
		since, epoch := last, "" // 0 the first time: everything from the start
		if last > 0 {
			epoch = ts.epoch("orders:u")
		}
		if r := subscribeOrders(t, c, &since, epoch); r.DataMap()["recovered"] != true {
			t.Fatalf("resume from %d: %s", last, r.Raw)
		}
		quota := 1 + rng.IntN(400)
		for i := 0; i < quota && last < total; i++ {
			m := mustNext(t, c)
			if m.Sequence != last+1 {
				t.Fatalf("got sequence %d after %d: a gap or a duplicate", m.Sequence, last)
			}
			var d struct{ N uint64 }
			_ = json.Unmarshal(m.Data, &d)
			if d.N != m.Sequence {
				t.Fatalf("sequence %d carries order %d", m.Sequence, d.N)
			}
			last = m.Sequence
			got++
			<-ahead
		}
		c.Close()
		reconnects++
	}
	<-done
	if got != total || reconnects < 3 {
		t.Fatalf("received %d of %d over %d connections", got, total, reconnects)
	}
}

func TestConcurrentIsolation(t *testing.T) {
	ts := newTestServer(t, nil)
	users := []string{"u1", "u2", "u3", "u4"}
	clients := map[string]*wsclient.Client{}
	for _, u := range users {
		clients[u] = ts.login(u)
		subscribeOrders(t, clients[u], nil, "")
	}
	const per = 200
	var wg sync.WaitGroup
	for _, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; i <= per; i++ {
				body := fmt.Sprintf(`[{"channel":"orders","user_id":%q,"data":{"owner":%q,"n":%d}}]`, u, u, i)
				req, _ := http.NewRequest("POST", ts.http.URL+"/api/v1/publish", bytes.NewBufferString(body))
				req.Header.Set("Authorization", "Bearer "+ts.publisher())
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	for _, u := range users {
		for i := 1; i <= per; i++ {
			m := mustNext(t, clients[u])
			if owner := m.DataMap()["owner"]; owner != u || m.Sequence != uint64(i) {
				t.Fatalf("user %s got %s", u, m.Raw)
			}
		}
	}
}

func TestTokenExpiryAndReauth(t *testing.T) {
	ts := newTestServer(t, nil)
	short := mustToken(t, "1", allPerms, 2*time.Second)

	expiring := dialURL(t, ts.ws+"?token="+short, wsclient.Options{})
	mustType(t, expiring, "auth_response")

	renewed := dialURL(t, ts.ws+"?token="+short, wsclient.Options{})
	mustType(t, renewed, "auth_response")
	subscribeOrders(t, renewed, nil, "")
	mustSend(t, renewed, map[string]any{"type": "auth", "data": map[string]any{"token": ts.token("1", allPerms...)}})
	if m := mustType(t, renewed, "auth_response"); m.DataMap()["status"] != "success" {
		t.Fatalf("re-auth: %s", m.Raw)
	}
	// Changing user on a connection is refused.
	mustSend(t, renewed, map[string]any{"type": "auth", "data": map[string]any{"token": ts.token("2", allPerms...)}})
	if m := mustType(t, renewed, "auth_response"); m.DataMap()["code"] != "FORBIDDEN" {
		t.Fatalf("user switch: %s", m.Raw)
	}

	expectClose(t, expiring, protocol.CloseTokenExpired)
	ts.order("1", 1)
	if m := mustNext(t, renewed); m.Type != "order_update" {
		t.Fatalf("after re-auth got %s; want the order on the kept subscription", m.Raw)
	}
	select {
	case <-renewed.Closed():
		t.Fatalf("re-authenticated connection closed: %v", renewed.CloseErr())
	default:
	}
}

// TestIdempotentPublish: a back end that retries a publish (its first
// answer was lost) with the same key gets the first position back, and the
// message is stored once.
func TestIdempotentPublish(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.login("1")
	subscribeOrders(t, c, nil, "")
	body := `{"channel":"orders","user_id":"1","idempotency_key":"ORD-7/fill-1","data":{"order_id":"ORD-7"}}`
	_, first := ts.post(ts.publisher(), body)
	_, again := ts.post(ts.publisher(), body)
	if fmt.Sprint(first["results"]) != fmt.Sprint(again["results"]) {
		t.Fatalf("retry answered %v; want the first answer %v", again, first)
	}
	req, _ := http.NewRequest("POST", ts.http.URL+"/api/v1/publish", strings.NewReader(`{"channel":"orders","user_id":"1","data":{"order_id":"ORD-8"}}`))
	req.Header.Set("Authorization", "Bearer "+ts.publisher())
	req.Header.Set("Idempotency-Key", "ORD-8/fill-1")
	for range 2 {
		resp, err := http.DefaultClient.Do(req.Clone(context.Background()))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		req.Body = io.NopCloser(strings.NewReader(`{"channel":"orders","user_id":"1","data":{"order_id":"ORD-8"}}`))
	}
	if m := mustNext(t, c); m.Sequence != 1 {
		t.Fatalf("got %s", m.Raw)
	}
	if m := mustNext(t, c); m.Sequence != 2 || m.DataMap()["order_id"] != "ORD-8" {
		t.Fatalf("got %s", m.Raw)
	}
	mustSend(t, c, map[string]any{"type": "ping", "id": "end"})
	if m := mustNext(t, c); m.Type != "pong" {
		t.Fatalf("a retried publish was delivered twice: %s", m.Raw)
	}
	if status, v := ts.post(ts.publisher(), `{"channel":"tick","symbol":"SHFE.rb2405","idempotency_key":"k","data":{}}`); status != 400 {
		t.Fatalf("idempotency key on market data: %d %v", status, v)
	}
}

// TestIdempotencyHeaderKeysReliableMessagesOnly: the Idempotency-Key header
// keys the private messages of a request, never its market data, so a back
// end's batch may mix ticks with order updates (the seed's publisher does),
// and a retry of the batch stores the order once and the tick again (it is
// state: the latest, again).
func TestIdempotencyHeaderKeysReliableMessagesOnly(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.seedMarket()
	body := `[{"channel":"tick","symbol":"SHFE.rb2405","data":{"last_price":"4001.0"}},
	          {"channel":"orders","user_id":"1","data":{"order_id":"ORD-9"}}]`
	send := func() map[string]any {
		req, _ := http.NewRequest("POST", ts.http.URL+"/api/v1/publish", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+ts.publisher())
		req.Header.Set("Idempotency-Key", "batch-9")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&v)
		if resp.StatusCode != 200 {
			t.Fatalf("a batch of a tick and an order with Idempotency-Key: %d %v", resp.StatusCode, v)
		}
		return v
	}
	first, again := send(), send()
	order := func(v map[string]any) any { return v["results"].([]any)[1] }
	if fmt.Sprint(order(first)) != fmt.Sprint(order(again)) {
		t.Fatalf("the retried order answered %v; want the first answer %v", order(again), order(first))
	}
	if h, _ := ts.broker.History(context.Background(), "orders:1", 0, 10); len(h.Events) != 1 {
		t.Fatalf("the order is stored %d times; want once", len(h.Events))
	}
	req, _ := http.NewRequest("POST", ts.http.URL+"/api/v1/publish", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+ts.publisher())
	req.Header.Set("Idempotency-Key", strings.Repeat("k", protocol.MaxIDBytes))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("a key too long once /1 is appended: %d; want 400", resp.StatusCode)
	}
}
