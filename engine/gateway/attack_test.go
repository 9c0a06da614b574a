package gateway_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/internal/testwait"
	"github.com/marketcast/marketcast/protocol"
)

// heapMB is the live heap after a collection, in MiB.
func heapMB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}

// waitConnections waits until the server holds n WebSocket connections.
func (ts *testServer) waitConnections(n int) {
	ts.t.Helper()
	testwait.Check(ts.t, func() error {
		if got := ts.srv.ActiveConnections(); got != n {
			return fmt.Errorf("%d connections; want %d", got, n)
		}
		return nil
	})
}

// TestPingFloodWithoutReading is the report's worst case: an
// unauthenticated client sends WebSocket pings as fast as it can and reads
// nothing (it took the server from 19 MB to 846 MB in 5 s). Pings count
// against the rate limit, pongs do not pile up, and the connection is gone
// within seconds.
func TestPingFloodWithoutReading(t *testing.T) {
	ts := newTestServer(t, nil)
	before := heapMB()
	r := dialRaw(t, ts.ws)
	ping := clientFrame(0x89, []byte("0123456789abcdef"))
	batch := []byte(strings.Repeat(string(ping), 1000))
	var sent atomic.Int64
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			_ = r.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			if _, err := r.c.Write(batch); err != nil {
				return
			}
			sent.Add(1000)
		}
	}()
	ts.waitConnections(0)
	<-stopped
	growth := heapMB() - before
	t.Logf("%d pings sent; heap %+.1f MiB", sent.Load(), growth)
	if growth > 32 {
		t.Fatalf("heap grew %.1f MiB under a ping flood", growth)
	}
	if n := ts.metric(`marketcast_closes_total{code="4029"}`); n != 1 {
		t.Fatalf("4029 closes %v; want 1", n)
	}
}

// TestPingFloodWhileReading: an authenticated client that reads and pings
// without pause (13.1 M pings in 12 s were never closed) gets 4029 once
// past its frame budget.
func TestPingFloodWhileReading(t *testing.T) {
	ts := newTestServer(t, nil)
	r := dialRaw(t, ts.ws+"?token="+ts.token("1", allPerms...))
	if b, err := r.text(wait); err != nil || !strings.Contains(string(b), `"success"`) {
		t.Fatalf("auth: %v %s", err, b)
	}
	ping := clientFrame(0x89, nil)
	go func() {
		for range 2 * ts.cfg.Limits.FrameBurst {
			if r.write(ping) != nil {
				return
			}
		}
	}()
	code, err := r.closeCode(wait)
	if err != nil || code != 4029 {
		t.Fatalf("close %d, %v; want 4029", code, err)
	}
}

// TestBinaryFrameIsAnsweredNotParsed: a binary frame is refused with a
// documented error (it used to be handled as text) and the connection lives.
func TestBinaryFrameIsAnsweredNotParsed(t *testing.T) {
	ts := newTestServer(t, nil)
	r := dialRaw(t, ts.ws)
	r.mustWrite(clientFrame(0x82, []byte(`{"type":"ping","id":1}`)))
	b, err := r.text(wait)
	if err != nil || !strings.Contains(string(b), `"INVALID_MESSAGE"`) || !strings.Contains(string(b), "binary") {
		t.Fatalf("got %s, %v; want an INVALID_MESSAGE error about binary frames", b, err)
	}
	r.mustWrite(textFrame(`{"type":"ping","id":2}`))
	if b, err := r.text(wait); err != nil || !strings.Contains(string(b), `"pong"`) {
		t.Fatalf("after a binary frame: %s, %v", b, err)
	}
}

// TestReplayFloodStaysBounded is the report's replay attack: 100
// connections of one user, each resubscribing 30 times with since 0 to a
// 10,000-message topic, reading nothing (30 MB → 1.44 GB in 5 s). A resume
// streams history as the socket drains and a resubscribe replaces the
// previous subscription, so memory stays flat.
func TestReplayFloodStaysBounded(t *testing.T) {
	// Stalled writers are not timed out here: the test is about the memory
	// they hold, however long a busy machine takes to get there.
	ts := newTestServer(t, func(c *configs.Config) { c.Delivery.WriteTimeout.Duration = time.Hour })
	pad := strings.Repeat("x", 300)
	var body strings.Builder
	for i := 0; i < 10000; i += 500 {
		body.Reset()
		body.WriteString("[")
		for j := 0; j < 500; j++ {
			if j > 0 {
				body.WriteString(",")
			}
			body.WriteString(`{"channel":"orders","user_id":"rp","data":{"pad":"` + pad + `"}}`)
		}
		body.WriteString("]")
		if status, v := ts.post(ts.publisher(), body.String()); status != 200 {
			t.Fatalf("publish: %d %v", status, v)
		}
	}
	before := heapMB()
	tok := ts.token("rp", allPerms...)
	sub := textFrame(`{"type":"subscribe","channel":"orders","since":0}`)
	conns := make([]*rawConn, 100)
	for i := range conns {
		conns[i] = dialRaw(t, ts.ws+"?token="+tok)
		for range 30 {
			conns[i].mustWrite(sub)
		}
	}
	// Every connection is still served: the first one reads its replay
	// whole. Meanwhile the other 99, reading nothing, fill what they may.
	r := conns[0]
	seen := 0
	for seen < 10000 {
		b, err := r.text(wait)
		if err != nil {
			t.Fatalf("after %d replayed messages: %v", seen, err)
		}
		if strings.HasPrefix(string(b), `{"type":"order_update"`) {
			seen++
		}
	}
	testwait.Check(t, func() error { // every resubscribe answered, its first page read
		if n := ts.metric("marketcast_resumes_total"); n != 3000 {
			return fmt.Errorf("%v resumes served; want 3000", n)
		}
		return nil
	})
	growth := heapMB() - before
	t.Logf("heap %+.1f MiB with 99 stalled resumes of 10,000 messages", growth)
	if growth > 64 {
		t.Fatalf("heap grew %.1f MiB; a stalled resume must hold a window, not the history", growth)
	}
}

// TestIdleKeepAliveIsClosed: an HTTP connection that made one request and
// then sits idle is closed (19,995 of them exhausted the descriptors).
func TestIdleKeepAliveIsClosed(t *testing.T) {
	ts := newTestServer(t, func(c *configs.Config) { c.HTTP.IdleTimeout.Duration = 300 * time.Millisecond })
	c, err := net.Dial("tcp", strings.TrimPrefix(ts.http.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(wait))
	start := time.Now()
	b, _ := io.ReadAll(c) // the response, then EOF when the server closes the idle connection
	if !strings.Contains(string(b), "200 OK") || time.Since(start) > 3*time.Second {
		t.Fatalf("got %q after %v; want the response, then a close at the idle timeout", b, time.Since(start))
	}
}

// dialFrom opens a TCP connection from a chosen loopback source address.
func dialFrom(src, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	return d.Dial("tcp", addr)
}

// upgraded reports whether a WebSocket upgrade from src succeeds.
func upgraded(t *testing.T, src, addr string) (net.Conn, bool) {
	t.Helper()
	c, err := dialFrom(src, addr)
	if err != nil {
		return nil, false
	}
	t.Cleanup(func() { c.Close() })
	_, _ = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return c, strings.Contains(line, "101")
}

// TestConnectionCaps: beyond the per-address cap a new connection is closed
// at once while other addresses are served; beyond the global cap a new
// WebSocket is refused while /healthz still answers.
func TestConnectionCaps(t *testing.T) {
	ts := newTestServer(t, func(c *configs.Config) {
		c.Limits.MaxConnections, c.Limits.MaxConnectionsIP = 30, 10
	})
	addr := strings.TrimPrefix(ts.http.URL, "http://")
	var held []net.Conn
	for i := range 10 {
		c, ok := upgraded(t, "127.0.0.1", addr)
		if !ok {
			t.Fatalf("connection %d from 127.0.0.1 refused below the cap", i)
		}
		held = append(held, c)
	}
	if _, ok := upgraded(t, "127.0.0.1", addr); ok {
		t.Fatal("an 11th connection from one address was accepted; the cap is 10")
	}
	for i := range 20 { // 127.0.0.2 and .3 fill the global cap of 30
		if _, ok := upgraded(t, fmt.Sprintf("127.0.0.%d", 2+i/10), addr); !ok {
			t.Fatalf("connection %d from another address refused", i)
		}
	}
	if _, ok := upgraded(t, "127.0.0.4", addr); ok {
		t.Fatal("a WebSocket beyond the global cap was accepted")
	}
	c, err := dialFrom("127.0.0.5", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(wait))
	if line, _ := bufio.NewReader(c).ReadString('\n'); !strings.Contains(line, "200") {
		t.Fatalf("/healthz at the cap: %q; want 200", line)
	}
	// The reserve answers health only (metrics at the cap: ops.listen),
	// and closes after one answer.
	c2, err := dialFrom("127.0.0.5", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_, _ = io.WriteString(c2, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = c2.SetReadDeadline(time.Now().Add(wait))
	if line, _ := bufio.NewReader(c2).ReadString('\n'); !strings.Contains(line, "503") {
		t.Fatalf("/metrics at the cap: %q; want 503", line)
	}
	for _, c := range held {
		c.Close()
	}
	// Below its cap, and its listener knows it: a fresh connection is
	// served (a busy machine frees a slot after the count drops).
	// Asked from an address of its own: a request from 127.0.0.1 before
	// the server has let the held ones go is refused and counted (make
	// test-busy once saw 2 per-address refusals).
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.6")}}).DialContext}}
	testwait.For(t, "the server below its cap", func() bool {
		if ts.srv.ActiveConnections() > 20 { // the held ones let go, slots freed
			return false
		}
		resp, err := fresh.Get(ts.http.URL + "/metrics")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if n := ts.metric(`marketcast_connections_rejected_total{reason="max_connections_per_ip"}`); n != 1 {
		t.Errorf("per-address refusals %v; want 1", n)
	}
	if n := ts.metric(`marketcast_connections_rejected_total{reason="max_connections"}`); n < 1 {
		t.Errorf("refusals at the cap %v; want some", n)
	}
}

// TestReauthWithFewerPermissionsEndsSubscriptions: ticks kept flowing after
// a re-auth with a token lacking read:market_data; now the subscription
// ends, the client is told, and nothing more arrives.
func TestReauthWithFewerPermissionsEndsSubscriptions(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.seedMarket()
	c := ts.login("1")
	mustSend(t, c, map[string]any{"type": "subscribe", "channel": "market_data", "symbols": []string{"SHFE.rb2405"}})
	mustType(t, c, "subscribe_response")
	mustNext(t, c) // snapshot
	mustSend(t, c, map[string]any{"type": "subscribe", "channel": "orders"})
	mustType(t, c, "subscribe_response")
	mustSend(t, c, map[string]any{"type": "auth", "data": map[string]any{"token": ts.token("1", protocol.PermReadSignals)}})
	mustType(t, c, "auth_response")
	m := mustType(t, c, "error")
	if d := m.DataMap(); d["code"] != "FORBIDDEN" || !strings.Contains(d["message"].(string), "tick:SHFE.rb2405") {
		t.Fatalf("got %s; want FORBIDDEN naming the ended subscription", m.Raw)
	}
	ts.publishTick("SHFE.rb2405", "4100.0")
	ts.order("1", 1) // own orders need no permission: still delivered
	if m := mustNext(t, c); m.Type != "order_update" {
		t.Fatalf("got %s; want only the order, no tick", m.Raw)
	}
}

// TestBroadcastCostsItsRecipients: 200 system notices to 20,000 users who
// have private topics used to create 4 M stored events; now a notice is one
// event of the broadcast stream, whatever the user count.
func TestBroadcastCostsItsRecipients(t *testing.T) {
	ts := newTestServer(t, nil)
	var body strings.Builder
	for u := 0; u < 20000; u += 1000 {
		body.Reset()
		body.WriteString("[")
		for j := 0; j < 1000; j++ {
			if j > 0 {
				body.WriteString(",")
			}
			fmt.Fprintf(&body, `{"channel":"notifications","user_id":"n%d","data":{}}`, u+j)
		}
		body.WriteString("]")
		if status, v := ts.post(ts.publisher(), body.String()); status != 200 {
			t.Fatalf("publish: %d %v", status, v)
		}
	}
	topics := ts.broker.Topics()
	before := heapMB()
	body.Reset()
	body.WriteString("[")
	for i := 0; i < 200; i++ {
		if i > 0 {
			body.WriteString(",")
		}
		fmt.Fprintf(&body, `{"channel":"notifications","data":{"title":"notice %d"}}`, i)
	}
	body.WriteString("]")
	status, v := ts.post(ts.publisher(), body.String())
	if status != 200 || len(v["results"].([]any)) != 200 {
		t.Fatalf("broadcast: %d %v", status, v)
	}
	if got := ts.broker.Topics(); got != topics+1 {
		t.Fatalf("%d topics after 200 broadcasts to 20,000 users (%d before); want one more: the broadcast stream", got, topics)
	}
	if growth := heapMB() - before; growth > 8 {
		t.Fatalf("200 broadcasts grew the heap %.1f MiB", growth)
	}
}

// TestSymbolCatalogueIsBounded: 200,000 symbols published through the API
// were never forgotten and made /ws/stats and /api/v1/symbols expensive; the
// catalogue now refuses a new symbol beyond limits.max_symbols.
func TestSymbolCatalogueIsBounded(t *testing.T) {
	ts := newTestServer(t, func(c *configs.Config) { c.Limits.MaxSymbols = 100 })
	var body strings.Builder
	body.WriteString("[")
	for i := 0; i < 97; i++ { // 3 test symbols are already known
		if i > 0 {
			body.WriteString(",")
		}
		fmt.Fprintf(&body, `{"channel":"tick","symbol":"X.s%d","data":{"last_price":"1.0"}}`, i)
	}
	body.WriteString("]")
	if status, v := ts.post(ts.publisher(), body.String()); status != 200 {
		t.Fatalf("publish: %d %v", status, v)
	}
	status, v := ts.post(ts.publisher(), `{"channel":"tick","symbol":"X.one_too_many","data":{"last_price":"1.0"}}`)
	if status != 400 || !strings.Contains(fmt.Sprint(v), "limits.max_symbols") {
		t.Fatalf("symbol 101: %d %v; want 400 naming the limit", status, v)
	}
	_, stats := httpGet(t, ts.http.URL+"/ws/stats")
	if decode(t, []byte(stats))["symbols"] != 100.0 {
		t.Fatalf("stats %s", stats)
	}
	_, list := httpGet(t, ts.http.URL+"/api/v1/symbols")
	if n := len(decode(t, []byte(list))["symbols"].([]any)); n != 100 {
		t.Fatalf("/api/v1/symbols lists %d", n)
	}
}
