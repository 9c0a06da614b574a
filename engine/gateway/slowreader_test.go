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
