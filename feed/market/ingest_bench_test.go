package market_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/feed/kline"
	"github.com/marketcast/marketcast/feed/market"
	"github.com/marketcast/marketcast/protocol"
)

// BenchmarkIngest is a node's work per tick without the sockets: a
// collector's raw tick validated, ordered, published into the hub (a topic
// nobody holds), folded into the bars of six intervals, in batches of 256
// over 500 symbols as NATS ingest makes them, the wall clock moving 10 µs a
// tick (100,000 ticks a second). mcbench -scenario ingest measures the
// rest (NATS, fan-out, sockets).
func BenchmarkIngest(b *testing.B) {
	cfg := configs.Default()
	hub := engine.NewHub(cfg.Engine(), engine.NewMemoryBroker(cfg.HistoryLimits()))
	now := time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	m := market.New(hub, market.Config{MaxSymbols: 1000, Sessions: kline.AlwaysOpen, BarHistory: cfg.Feed.BarHistory,
		Shards: 1, BarUpdateEvery: cfg.Feed.BarUpdateInterval.Duration, Now: clock})
	rules := &protocol.Rules{Now: clock}
	const symbols = 500
	names := make([]string, symbols)
	for i := range names {
		names[i] = fmt.Sprintf("ING.s%04d", i)
	}
	data := make([][]byte, 0, 1<<16)
	for n := range cap(data) {
		at := now.Add(time.Duration(n) * 10 * time.Microsecond)
		data = append(data, fmt.Appendf(nil, `{"last_price":"%d.0","volume":"%d","turnover":"%d.0","update_time":"%s","sent":"%d"}`,
			4000+n%50, n+1, 40000*(n+1), at.UTC().Format(protocol.TimeLayout), at.UnixNano()))
	}
	batch := make([]*protocol.Publication, 0, 256)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n := i % len(data)
		if n == 0 && i > 0 {
			b.StopTimer() // a new round of the same ticks would be stale: start a new market day
			now = now.Add(24 * time.Hour)
			for j := range data {
				at := now.Add(time.Duration(j) * 10 * time.Microsecond)
				data[j] = fmt.Appendf(data[j][:0], `{"last_price":"%d.0","volume":"%d","turnover":"%d.0","update_time":"%s","sent":"%d"}`,
					4000+j%50, j+1, 40000*(j+1), at.UTC().Format(protocol.TimeLayout), at.UnixNano())
			}
			b.StartTimer()
		}
		now = now.Add(10 * time.Microsecond)
		p, err := protocol.ValidateWith(&protocol.Item{Channel: "tick", Symbol: names[n%symbols], Data: data[n]}, 1<<16, rules)
		if err != nil {
			b.Fatal(err)
		}
		batch = append(batch, p)
		if len(batch) == cap(batch) {
			if _, err := m.PublishBatch(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
			if i%4096 == 0 {
				m.Advance(now)
			}
		}
	}
}
