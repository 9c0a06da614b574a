package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/feed"
	"github.com/marketcast/marketcast/internal/testwait"
	"github.com/marketcast/marketcast/protocol"
)

// throttled reads at most rate bytes a second from c, as a reader on a
// slow link would.
type throttled struct {
	c     net.Conn
	rate  int
	start time.Time
	read  int
}

func (r *throttled) Read(p []byte) (int, error) {
	if r.start.IsZero() {
		r.start = time.Now()
	}
	// Never ahead of the rate: wait until this read is due.
	due := r.start.Add(time.Duration(float64(r.read) / float64(r.rate) * float64(time.Second)))
	time.Sleep(time.Until(due))
	n, err := r.c.Read(p[:min(len(p), 1024)])
	r.read += n
	return n, err
}

// TestSlowReaderGetsFreshTicks: a terminal on a link slower than its feed
// (20 KB/s for 12 symbols ticking 20 times a second, ~70 KB/s) gets fresh
// ticks, conflated, and stays connected: the backlog waits in the outbox,
// where a newer tick replaces an older one, not in the kernel's send
// buffer, where nothing can. The link is modelled by a reader that drains
// 20 KB/s through a small receive buffer, so what it has not taken stays on
// the server's side, as on a real slow link.
func TestSlowReaderGetsFreshTicks(t *testing.T) {
	ts := newTestServer(t, func(c *configs.Config) { c.Feed.Sessions = "always" })
	symbols := make([]string, 12)
	pad := strings.Repeat("x", 220) // a tick of ~300 bytes on the wire
	var latest [12]atomic.Uint64    // the sequence last published per symbol
	publish := func(i int) {
		p := feed.TickPublication(&feed.Tick{Symbol: symbols[i], LastPrice: "4000.0"})
		p.Data = []byte(fmt.Sprintf(`{"last_price":"4000.0","pad":%q}`, pad))
		seq, err := ts.market.Publish(context.Background(), p)
		if err != nil {
			t.Error(err)
			return
		}
		latest[i].Store(seq)
	}
	for i := range symbols {
		symbols[i] = fmt.Sprintf("SLOW.s%02d", i)
		publish(i)
	}

	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) })
	}}
	addr := strings.TrimPrefix(ts.http.URL, "http://")
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tok := ts.token("slow", protocol.PermReadMarketData)
	_, _ = io.WriteString(c, "GET /ws?token="+tok+" HTTP/1.1\r\nHost: "+addr+"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	r := &rawConn{t: t, c: c, br: bufio.NewReaderSize(&throttled{c: c, rate: 20 << 10}, 1024)}
	resp, err := http.ReadResponse(r.br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", err, resp)
	}
	sub, _ := json.Marshal(map[string]any{"type": "subscribe", "channel": "market_data", "symbols": symbols})
	r.mustWrite(textFrame(string(sub)))

	// The feed: 12 symbols, 20 ticks a second each, for 6 seconds.
	stop := make(chan struct{})
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		tk := time.NewTicker(50 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				for i := range symbols {
					publish(i)
				}
			}
		}
	}()
	defer func() { close(stop); <-fed }()

	var (
		begin          = time.Now()
		received, late int
		worst          uint64
	)
	for time.Since(begin) < 6*time.Second {
		first, payload, err := r.readFrame(5 * time.Second)
		if err != nil {
			t.Fatalf("after %d ticks: %v", received, err)
		}
		if first&0x0f == 0x8 {
			t.Fatalf("closed by the server: %x", payload)
		}
		var m struct {
			Type     string `json:"type"`
			Symbol   string `json:"symbol"`
			Sequence uint64 `json:"sequence"`
		}
		if json.Unmarshal(payload, &m) != nil || m.Type != "market_data" {
			continue
		}
		received++
		var i int
		_, _ = fmt.Sscanf(m.Symbol, "SLOW.s%02d", &i)
		// How many newer ticks of this symbol were published before this
		// one reached the reader: 20 is one second of them.
		behind := latest[i].Load() - m.Sequence
		if time.Since(begin) > 2*time.Second { // past the start-up
			worst = max(worst, behind)
			if behind > 20 {
				late++
			}
		}
	}
	published := 0
	for i := range latest {
		published += int(latest[i].Load())
	}
	t.Logf("received %d of %d ticks; worst %d ticks behind; %d more than 1 s behind", received, published, worst, late)
	if late > 0 {
		t.Fatalf("%d ticks reached the slow reader more than a second (20 ticks of their symbol) late; worst %d", late, worst)
	}
	if received*2 > published {
		t.Fatalf("received %d of %d ticks: no conflation", received, published)
	}
	if _, body := httpGet(t, ts.http.URL+"/metrics"); !strings.Contains(body, "marketcast_conflated_total") ||
		strings.Contains(body, "marketcast_conflated_total 0\n") {
		t.Fatal("nothing was conflated")
	}
}

// feedTicks publishes n symbols (created here) at rate ticks a second each,
// with ~size bytes of data, until the test ends; latest holds the sequence
// last published per symbol.
func feedTicks(t *testing.T, ts *testServer, prefix string, n, rate, size int) (symbols []string, latest []atomic.Uint64) {
	t.Helper()
	symbols = make([]string, n)
	latest = make([]atomic.Uint64, n)
	pad := strings.Repeat("x", max(0, size-80))
	publish := func(i int) {
		p := feed.TickPublication(&feed.Tick{Symbol: symbols[i], LastPrice: "4000.0"})
		p.Data = fmt.Appendf(nil, `{"last_price":"4000.0","pad":%q}`, pad)
		seq, err := ts.market.Publish(context.Background(), p)
		if err != nil {
			t.Error(err)
			return
		}
		latest[i].Store(seq)
	}
	for i := range symbols {
		symbols[i] = fmt.Sprintf("%s.s%02d", prefix, i)
		publish(i)
	}
	stop := make(chan struct{})
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		tk := time.NewTicker(time.Second / time.Duration(rate))
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				for i := range symbols {
					publish(i)
				}
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-fed })
	return symbols, latest
}

// dialTicks opens a raw WebSocket with the operating system's default
// buffers and subscribes it to symbols' ticks.
func dialTicks(t *testing.T, ts *testServer, symbols []string, rd func(net.Conn) io.Reader) *rawConn {
	t.Helper()
	addr := strings.TrimPrefix(ts.http.URL, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	tok := ts.token("slow", protocol.PermReadMarketData)
	_, _ = io.WriteString(c, "GET /ws?token="+tok+" HTTP/1.1\r\nHost: "+addr+"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	r := &rawConn{t: t, c: c, br: bufio.NewReaderSize(rd(c), 1024)}
	resp, err := http.ReadResponse(r.br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", err, resp)
	}
	sub, _ := json.Marshal(map[string]any{"type": "subscribe", "channel": "market_data", "symbols": symbols})
	r.mustWrite(textFrame(string(sub)))
	return r
}

// TestStoppedReaderIsClosedWith4008: a terminal that stops reading is given
// up on write_timeout after the server last got a byte into its socket —
// and the stream ends with a 4008 close frame, which it reads when it
// reads again, not with a bare cut (1006).
func TestStoppedReaderIsClosedWith4008(t *testing.T) {
	ts := newTestServer(t, func(c *configs.Config) {
		c.Feed.Sessions = "always"
		c.Delivery.WriteTimeout.Duration = time.Second
	})
	symbols, _ := feedTicks(t, ts, "STOP", 12, 20, 300)
	r := dialTicks(t, ts, symbols, func(c net.Conn) io.Reader { return c })
	if _, err := r.text(wait); err != nil { // the answer: subscribed
		t.Fatal(err)
	}
	// It reads nothing more. The server fills the socket, waits, gives up.
	testwait.For(t, "the server to give up on the stopped reader", func() bool { return ts.srv.ActiveConnections() == 0 })
	code, err := r.closeCode(wait)
	if err != nil || code != protocol.CloseSlowConsumer {
		t.Fatalf("reading on: close code %d, %v; want a 4008 close frame at the end", code, err)
	}
	if _, body := httpGet(t, ts.http.URL+"/metrics"); !strings.Contains(body, "marketcast_write_timeouts_total 1\n") {
		t.Fatal("the give-up is not counted in marketcast_write_timeouts_total")
	}
}

// TestDefaultBufferReaderStaysFresh: the audit's reader — 20 KB/s through
// the operating system's default buffers, no flow control — against 40
// symbols ticking 20 times a second (~320 KB/s of ticks). One writev put
// ~55 KB into the server's kernel and the reader fell ~0.9 s behind per
// second until it was cut without a close frame. Now the server's kernel
// holds at most the unsent limit and a frame (TestUnsentBytesStayUnderTheLimit),
// the rest conflates in the outbox, and the reader is never cut while it
// reads. What it still reads late is what its own kernel buffers hold:
// the figure is logged, the properties asserted.
func TestDefaultBufferReaderStaysFresh(t *testing.T) {
	ts := newTestServer(t, func(c *configs.Config) { c.Feed.Sessions = "always" })
	symbols, latest := feedTicks(t, ts, "FRESH", 40, 20, 400)
	r := dialTicks(t, ts, symbols, func(c net.Conn) io.Reader { return &throttled{c: c, rate: 20 << 10} })
	const run = 25 * time.Second
	begin := time.Now()
	var (
		received        int
		maxAge, lastAge time.Duration
		maxBehind       uint64
	)
	for time.Since(begin) < run {
		first, payload, err := r.readFrame(testwait.Deadline)
		if err != nil {
			t.Fatalf("after %d ticks, %v: %v", received, time.Since(begin).Round(time.Millisecond), err)
		}
		if first&0x0f == 0x8 {
			t.Fatalf("closed by the server after %v: % x", time.Since(begin).Round(time.Millisecond), payload)
		}
		var m struct {
			Type      string
			Symbol    string
			Sequence  uint64
			Timestamp time.Time
		}
		if json.Unmarshal(payload, &m) != nil || m.Type != "market_data" {
			continue
		}
		received++
		var i int
		_, _ = fmt.Sscanf(m.Symbol, "FRESH.s%02d", &i)
		lastAge = time.Since(m.Timestamp)
		if time.Since(begin) > 3*time.Second { // past the start-up
			maxAge = max(maxAge, lastAge)
			maxBehind = max(maxBehind, latest[i].Load()-m.Sequence)
		}
	}
	published := 0
	for i := range latest {
		published += int(latest[i].Load())
	}
	t.Logf("20 KB/s reader, default buffers, 40 symbols × 20 ticks/s for %v: read %d of %d ticks; newest tick %v old at the end, at most %v (%d ticks of its symbol) after 3 s",
		run, received, published, lastAge.Round(time.Millisecond), maxAge.Round(time.Millisecond), maxBehind)
	if received*4 > published {
		t.Fatalf("read %d of %d ticks: not conflated", received, published)
	}
}
