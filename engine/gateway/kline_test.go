package gateway_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/marketcast/marketcast/bench/wsclient"
	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/feed"
	"github.com/marketcast/marketcast/protocol"
)

// TestKlineHistoryThenLive: a kline subscription with "history" gets the
// closed bars oldest first, then the forming bar, then live — while ticks
// keep coming. Taken together, the closed bars each client sees (history
// and live) are every bar once: no gap, no duplicate, wherever its
// subscription fell.
func TestKlineHistoryThenLive(t *testing.T) {
	ts := newTestServer(t, func(c *configs.Config) { c.Feed.Sessions = "always" })
	const (
		sym     = "SHFE.rb2405"
		minutes = 40
		history = 25
	)
	t0 := time.Now().Add(-2 * time.Hour).Truncate(time.Hour)
	tick := func(i int) {
		at := t0.Add(time.Duration(i) * 2 * time.Second)
		p := feed.TickPublication(&feed.Tick{Symbol: sym, LastPrice: fmt.Sprintf("%d.0", 3900+i%17), Volume: fmt.Sprint(10 * (i + 1)),
			Turnover: fmt.Sprintf("%d.0", 39000*(i+1)), UpdateTime: at.UTC().Format(protocol.TimeLayout)})
		p.Time = at
		if _, err := ts.market.Publish(context.Background(), p); err != nil {
			t.Error(err)
		}
	}
	// Ten minutes of bars before anyone subscribes.
	i := 0
	for ; i < 10*30; i++ {
		tick(i)
	}
	type result struct {
		history int
		starts  []time.Time // closed bars, in order received
		err     error
	}
	const clients = 8
	results := make([]result, clients)
	var wg sync.WaitGroup
	started := make(chan struct{}, clients)
	// Client n subscribes once the stream has reached its gate: the
	// subscriptions fall at different moments of the stream.
	gates := make([]chan struct{}, clients)
	for n := range gates {
		gates[n] = make(chan struct{})
	}
	last := t0.Add(minutes * time.Minute) // the start of the bar the last tick opens
	for n := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[n]
			c, _, err := wsclient.Dial(ts.ws+"?token="+ts.token(fmt.Sprint("u", n), protocol.PermReadMarketData), wsclient.Options{})
			if err != nil {
				r.err = err
				started <- struct{}{}
				return
			}
			defer c.Close()
			if _, err := c.WaitType(wait, "auth_response"); err != nil {
				r.err = err
				started <- struct{}{}
				return
			}
			<-gates[n]
			_ = c.Send(map[string]any{"type": "subscribe", "channel": "kline_1m", "symbols": []string{sym}, "history": history})
			started <- struct{}{}
			inHistory := true
			for {
				m, err := c.Next(wait)
				if err != nil {
					r.err = fmt.Errorf("after %d closed bars: %w", len(r.starts), err)
					return
				}
				if m.Type != "kline" {
					continue
				}
				d := m.DataMap()
				start, _ := time.Parse(time.RFC3339Nano, d["start_time"].(string))
				// History and the forming bar come first, as snapshots;
				// live bars after. (A live forming bar may never be seen:
				// it is conflated, and sent at most every
				// feed.bar_update_interval.)
				if m.Snapshot && !inHistory {
					r.err = fmt.Errorf("a snapshot after live bars: %s", m.Raw)
					return
				}
				if !m.Snapshot || d["closed"] != true {
					inHistory = false
				}
				if d["closed"] != true {
					continue
				}
				if inHistory {
					r.history++
				}
				r.starts = append(r.starts, start)
				if start.Equal(last.Add(-time.Minute)) {
					return
				}
			}
		}()
	}
	// The rest of the bars while they subscribe, up to the tick that opens
	// the last bar (closing the one before).
	for n := range clients {
		close(gates[n])
		<-started // its subscribe is on the wire
		for end := i + 100; i < end; i++ {
			tick(i)
		}
	}
	for ; i <= minutes*30; i++ {
		tick(i)
	}
	wg.Wait()
	for n, r := range results {
		if r.err != nil {
			t.Fatalf("client %d: %v", n, r.err)
		}
		t.Logf("client %d: %d bars from history, %d live", n, r.history, len(r.starts)-r.history)
		if r.history < 1 || r.history > history {
			t.Fatalf("client %d: %d history bars; want 1 to %d", n, r.history, history)
		}
		for k := 1; k < len(r.starts); k++ {
			if d := r.starts[k].Sub(r.starts[k-1]); d != time.Minute {
				t.Fatalf("client %d: bar %d starts %v after the one before (history %d); want exactly 1m",
					n, k, d, r.history)
			}
		}
	}
}

// TestKlineHistoryLimits: history applies to kline channels, up to
// feed.bar_history bars.
func TestKlineHistoryLimits(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.login("u1", protocol.PermReadMarketData)
	expectError(t, c, map[string]any{"type": "subscribe", "channel": "market_data", "symbols": []string{"SHFE.rb2405"}, "history": 10},
		protocol.CodeInvalidMessage)
	expectError(t, c, map[string]any{"type": "subscribe", "channel": "kline_1m", "symbols": []string{"SHFE.rb2405"},
		"history": ts.cfg.Feed.BarHistory + 1}, protocol.CodeInvalidMessage)
	expectError(t, c, map[string]any{"type": "subscribe", "channel": "kline_1m", "symbols": []string{"SHFE.rb2405"}, "history": -1},
		protocol.CodeInvalidMessage)
}
