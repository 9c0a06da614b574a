package natsfeed_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/marketcast/marketcast/engine/natsbroker/natstest"
	"github.com/marketcast/marketcast/feed/natsfeed"
	"github.com/marketcast/marketcast/internal/testwait"
	"github.com/marketcast/marketcast/protocol"
)

// TestMain fails the package if a test leaves a goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestIngestEveryChannel: ticks, books and bars a collector publishes on
// md.<channel>.<symbol> reach the hub normalised; a new symbol joins the
// catalogue; bars are built from the ticks.
func TestIngestEveryChannel(t *testing.T) {
	ns := natstest.Start(t, "")
	n := startNode(t, ns.URL(), nodeOptions{})
	pub := connect(t, ns.URL())
	now := time.Now().UTC().Truncate(time.Millisecond)
	stamp := now.Format(time.RFC3339Nano)
	publish(t, pub, "md.tick.SHFE.rb2405",
		`{"last_price":3999.0,"bid_price":"3998.0","ask_price":3999.5e0,"volume":15,"turnover":599850.00,"timestamp":"`+stamp+`","trading_day":"20261127"}`)
	publish(t, pub, "md.depth.SHFE.rb2405", `{"bids":[["3998.0",5],["3997.0",7]],"asks":[[3999,3]],"levels":5}`)
	publish(t, pub, "md.kline_1m.DCE.m2405",
		`{"open":"2900","high":"2910","low":"2899","close":"2905","volume":"120","turnover":"3480000","start_time":"2026-11-27T01:00:00Z","end_time":"2026-11-27T01:01:00Z","closed":true}`)
	testwait.For(t, "all three", func() bool {
		return n.last(protocol.Tick, "SHFE.rb2405") != nil && n.last(protocol.Depth, "SHFE.rb2405") != nil &&
			len(n.hub.Finals(protocol.TopicKey(protocol.Klines[0], "DCE.m2405"))) == 1
	})
	want := `{"last_price":"3999.0","bid_price":"3998.0","ask_price":"3999.5","volume":"15","turnover":"599850.00","update_time":"` +
		now.Format(protocol.TimeLayout) + `","trading_day":"20261127"}`
	if got := dataOf(n.last(protocol.Tick, "SHFE.rb2405")); got != want {
		t.Fatalf("tick\n got %s\nwant %s", got, want)
	}
	if got := dataOf(n.last(protocol.Depth, "SHFE.rb2405")); got != `{"bids":[["3998.0","5"],["3997.0","7"]],"asks":[["3999","3"]],"levels":2}` {
		t.Fatalf("depth %s", got)
	}
	if !n.market.HasSymbol("DCE.m2405") || !n.market.HasSymbol("SHFE.rb2405") {
		t.Fatalf("catalogue %v", n.market.Symbols())
	}
	// The tick built the forming bar of every interval.
	bar := dataOf(n.last(protocol.Klines[0], "SHFE.rb2405"))
	if !strings.Contains(bar, `"open":"3999.0"`) || !strings.Contains(bar, `"volume":"0"`) || !strings.Contains(bar, `"closed":false`) {
		t.Fatalf("forming 1m bar %s", bar)
	}
	if n.market.SymbolCount() != 2 {
		t.Fatalf("catalogue %v", n.market.Symbols())
	}
}

// TestBadInputIsCountedAndDropped sends what a broken collector or a
// stranger might: each is dropped and counted by its reason, the log says
// which subject at a bounded rate, and the other symbols keep flowing.
func TestBadInputIsCountedAndDropped(t *testing.T) {
	ns := natstest.StartTuned(t, "", func(o *server.Options) { o.MaxPayload = 16 << 20 })
	n := startNode(t, ns.URL(), nodeOptions{})
	frozen := time.Now()
	natsfeed.SetLogClock(n.src, func() time.Time { return frozen }) // the burst falls in one log interval, however slow
	pub := connect(t, ns.URL())
	bad := []struct{ subject, data, reason string }{
		{"md.tick.SHFE.rb2405", `{"last_price":"1.0"`, "json"},
		{"md.tick.SHFE.rb2405", `[1,2]`, "json"},
		{"md.tick.SHFE.rb2405", `{"last_price":true}`, "type"},
		{"md.tick.SHFE.rb2405", `{"last_price":"1.0","volume":"-5"}`, "negative"},
		{"md.tick.SHFE.rb2405", `{"volume":"5"}`, "missing"},
		{"md.depth.SHFE.rb2405", `{"bids":[],"asks":[],"spread":1}`, "unknown_field"},
		{"md.depth.SHFE.rb2405", `{"bids":[["2.0","1"]],"asks":[["1.0","1"]]}`, "order"},
		{"md.tick.SHFE.rb2405", `{"last_price":"1.0","timestamp":"yesterday"}`, "time"},
		{"md.tick.SHFE.rb2405", `{"last_price":"` + strings.Repeat("9", 10<<20) + `"}`, "too_large"},
		{"md.trade.SHFE.rb2405", `{"price":"1.0"}`, "subject"},
		{"md.tick", `{"last_price":"1.0"}`, "subject"},
		{"md.tick.bad\x01symbol", `{"last_price":"1.0"}`, "subject"},
	}
	for _, b := range bad {
		publish(t, pub, b.subject, b.data)
	}
	publish(t, pub, "md.tick.DCE.m2405", `{"last_price":"2900"}`)
	testwait.For(t, "the good tick after the bad ones", func() bool { return n.last(protocol.Tick, "DCE.m2405") != nil })
	want := map[string]int{}
	for _, b := range bad {
		want[b.reason]++
	}
	// Symbols are ingested by shards of their own: the good tick says
	// nothing of when the bad symbol's shard is through its burst (the
	// 10 MB one takes a while on a busy machine), so wait for the counts.
	testwait.Check(t, func() error {
		var wrong []string
		for reason, count := range want {
			if got := n.metric(`marketcast_feed_dropped_total{reason="` + reason + `"}`); got != fmt.Sprint(count) {
				wrong = append(wrong, fmt.Sprintf("dropped{reason=%q} = %s; want %d", reason, got, count))
			}
		}
		if len(wrong) > 0 {
			return errors.New(strings.Join(wrong, "; "))
		}
		return nil
	})
	if n.last(protocol.Tick, "SHFE.rb2405") != nil || n.market.HasSymbol("SHFE.rb2405") {
		t.Fatal("a bad message reached the hub or the catalogue")
	}
	// The count follows the publish it counts.
	testwait.For(t, "the ingest count", func() bool { return n.metric("marketcast_feed_messages_total") == "1" })
	logs := n.logs.String()
	if lines := strings.Count(logs, "market message dropped"); lines != 1 || !strings.Contains(logs, "subject=md.tick.SHFE.rb2405") ||
		!strings.Contains(logs, "reason=json") {
		t.Fatalf("want one log line (the first drop, with its subject) for a burst of 12:\n%s", logs)
	}
}

// TestLateNodeWarmsUp: a node that starts after the collector has
// published serves every symbol's latest tick and book at once, from the
// last-value stream.
func TestLateNodeWarmsUp(t *testing.T) {
	ns := natstest.Start(t, "")
	pub := connect(t, ns.URL())
	js, _ := jetstream.New(pub)
	if err := natsfeed.EnsureLastStream(context.Background(), js, 1, 100, 4096); err != nil {
		t.Fatal(err)
	}
	for i, sym := range []string{"SHFE.rb2405", "SHFE.hc2405", "DCE.m2405"} {
		publish(t, pub, "md.tick."+sym, fmt.Sprintf(`{"last_price":"%d.0"}`, 1000+i))
		publish(t, pub, "md.tick."+sym, fmt.Sprintf(`{"last_price":"%d.5"}`, 1000+i))
		publish(t, pub, "md.depth."+sym, `{"bids":[["1.0","1"]],"asks":[["2.0","1"]]}`)
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, ns.URL(), nodeOptions{sessions: table.Lookup})
	testwait.For(t, "the warm-up", func() bool { return n.metric("marketcast_feed_warmup_messages_total") == "6" })
	for i, sym := range []string{"SHFE.rb2405", "SHFE.hc2405", "DCE.m2405"} {
		if got := dataOf(n.last(protocol.Tick, sym)); got != fmt.Sprintf(`{"last_price":"%d.5"}`, 1000+i) {
			t.Fatalf("%s warmed to %s; want its last tick", sym, got)
		}
		if n.last(protocol.Depth, sym) == nil {
			t.Fatalf("%s: no book after the warm-up", sym)
		}
	}
}

// TestNodesBuildIdenticalBars: two nodes ingesting the same ticks build
// the same closed bars, across the 10:15 break; a third that starts late
// loads them from the bar store.
func TestNodesBuildIdenticalBars(t *testing.T) {
	ns := natstest.Start(t, "")
	a := startNode(t, ns.URL(), nodeOptions{sessions: table.Lookup, store: true})
	b := startNode(t, ns.URL(), nodeOptions{sessions: table.Lookup, store: true})
	pub := connect(t, ns.URL())
	symbols := []string{"SHFE.rb2601", "DCE.m2601", "CZCE.SR601"}
	// Monday 2026-11-23, 09:00 to 10:30 CST, a tick every 2 s per symbol,
	// stamped as an exchange would; none in the break.
	start := time.Date(2026, 11, 23, 9, 0, 0, 0, cst)
	end := time.Date(2026, 11, 23, 10, 32, 0, 0, cst)
	vol := make([]int, len(symbols))
	ticks := 0
	for at := start; at.Before(end); at = at.Add(2 * time.Second) {
		if m := at.Hour()*60 + at.Minute(); m >= 10*60+15 && m < 10*60+30 {
			continue
		}
		for i, sym := range symbols {
			vol[i] += (ticks*7+i*3)%11 + 1
			price := 3900 + (ticks*13+i*5)%40
			publish(t, pub, "md.tick."+sym, fmt.Sprintf(`{"last_price":"%d.0","volume":"%d","turnover":"%d0.0","update_time":"%s"}`,
				price, vol[i], vol[i]*3900, at.UTC().Format(protocol.TimeLayout)))
		}
		ticks++
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	m1 := protocol.Klines[0]
	key := func(sym string) string { return protocol.TopicKey(m1, sym) }
	// By the ticks alone, bars 09:00 to 10:14 and 10:30 are closed: 76
	// one-minute bars, 15 of 5m, 5 of 15m, 3 of 30m, 1 of 1h. The clock
	// may close the 10:31 bars as well, on each node in its own time.
	closed := []int{76, 15, 5, 3, 1}
	for _, n := range []*node{a, b} {
		testwait.For(t, "the bars", func() bool {
			for _, sym := range symbols {
				if len(n.hub.Finals(key(sym))) < closed[0] {
					return false
				}
			}
			return true
		})
	}
	for i, ch := range protocol.Klines[:5] { // 1m to 1h; 1d is still forming
		for _, sym := range symbols {
			fa, fb := a.hub.Finals(protocol.TopicKey(ch, sym)), b.hub.Finals(protocol.TopicKey(ch, sym))
			if len(fa) < closed[i] || len(fb) < closed[i] {
				t.Fatalf("%s %s: %d bars on A, %d on B; want %d", ch.Push, sym, len(fa), len(fb), closed[i])
			}
			for j := range closed[i] {
				if dataOf(fa[j]) != dataOf(fb[j]) || j > 0 && strings.Contains(dataOf(fa[j]), "partial") { // the first: joined after the night session
					t.Fatalf("%s %s bar %d:\nA %s\nB %s", ch.Push, sym, j, dataOf(fa[j]), dataOf(fb[j]))
				}
			}
		}
	}
	// No bar in the break: 10:14 is followed by 10:30.
	fa := a.hub.Finals(key(symbols[0]))
	if !strings.Contains(dataOf(fa[74]), `"start_time":"2026-11-23T02:14:00.000Z"`) ||
		!strings.Contains(dataOf(fa[75]), `"start_time":"2026-11-23T02:30:00.000Z"`) {
		t.Fatalf("around the break:\n%s\n%s", dataOf(fa[74]), dataOf(fa[75]))
	}

	// A node that starts now has built nothing, and loads the bars a
	// subscription asks history of from the store.
	js, _ := jetstream.New(pub)
	testwait.For(t, "the store", func() bool {
		st, err := js.Stream(context.Background(), natsfeed.BarStream)
		if err != nil {
			return false
		}
		subj := "mc.bars.kline_1m." + symbols[0]
		info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(subj))
		return err == nil && info.State.Subjects[subj] >= uint64(closed[0])
	})
	c := startNode(t, ns.URL(), nodeOptions{sessions: table.Lookup, store: true})
	if err := c.market.WarmBars(context.Background(), m1, symbols[0]); err != nil {
		t.Fatal(err)
	}
	fc := c.hub.Finals(key(symbols[0]))
	if len(fc) < closed[0] {
		t.Fatalf("late node: %d bars from the store; want %d", len(fc), closed[0])
	}
	for i := range closed[0] {
		if dataOf(fa[i]) != dataOf(fc[i]) {
			t.Fatalf("bar %d from the store:\n%s\nwant %s", i, dataOf(fc[i]), dataOf(fa[i]))
		}
	}
}

// TestLastStreamIsBounded: the last-value stream keeps at most the
// subjects of limits.max_symbols symbols (a collector publishing ever new
// symbols cannot grow it without bound), dropping the least recently
// updated first, and refuses a message larger than a node takes.
func TestLastStreamIsBounded(t *testing.T) {
	ns := natstest.Start(t, "")
	pub := connect(t, ns.URL())
	js, _ := jetstream.New(pub)
	const maxSymbols = 2
	if err := natsfeed.EnsureLastStream(context.Background(), js, 1, maxSymbols, 256); err != nil {
		t.Fatal(err)
	}
	perSymbol := 2 + len(protocol.Klines)
	for i := range 3 * perSymbol {
		publish(t, pub, fmt.Sprintf("md.tick.SHFE.rb%04d", i), `{"last_price":"1.0"}`)
	}
	publish(t, pub, "md.tick.SHFE.newest", `{"last_price":"2.0"}`)
	publish(t, pub, "md.tick.SHFE.big", `{"last_price":"1.0","pad":"`+strings.Repeat("x", 300)+`"}`)
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(context.Background(), natsfeed.LastStream)
	if err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "the stream's last message", func() bool {
		info, err := st.Info(context.Background())
		return err == nil && info.State.LastSeq == uint64(3*perSymbol+1)
	})
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter("md.>"))
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(maxSymbols*perSymbol) {
		t.Fatalf("the stream keeps %d messages; want %d (max_symbols × subjects per symbol)", info.State.Msgs, maxSymbols*perSymbol)
	}
	if _, ok := info.State.Subjects["md.tick.SHFE.newest"]; !ok {
		t.Fatal("the newest subject was dropped rather than the oldest")
	}
	if _, ok := info.State.Subjects["md.tick.SHFE.big"]; ok {
		t.Fatal("a message larger than limits.max_message_bytes was kept")
	}
	// Brought in line when the limits change.
	if err := natsfeed.EnsureLastStream(context.Background(), js, 1, 1, 256); err != nil {
		t.Fatal(err)
	}
	if info, err := st.Info(context.Background()); err != nil || info.Config.MaxMsgs != int64(perSymbol) {
		t.Fatalf("after a change of max_symbols: %v %+v", err, info)
	}
}
