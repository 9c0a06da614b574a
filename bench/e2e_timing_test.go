package bench

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketcast/marketcast/bench/load"
	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/engine/auth"
	"github.com/marketcast/marketcast/engine/gateway"
	"github.com/marketcast/marketcast/feed/market"
	"github.com/marketcast/marketcast/protocol"
)

// BenchmarkEndToEndLoopback publishes through the hub of a real gateway
// and measures publish→receive over loopback sockets to N real WebSocket
// clients: the whole path, kernel included.
func BenchmarkEndToEndLoopback(b *testing.B) {
	for _, n := range []int{10, 100} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			secret := []byte("bench-secret-0123456789abcdef")
			def := configs.Default()
			hub := engine.NewHub(def.Engine(), engine.NewMemoryBroker(def.HistoryLimits()))
			srv := gateway.New(def.Gateway(), hub, market.New(hub, market.Config{MaxSymbols: def.Limits.MaxSymbols}), auth.NewVerifier(secret), nil)
			hs := httptest.NewServer(srv.Handler())
			defer hs.Close()
			tok, _ := auth.Issue(secret, "bench", []string{protocol.PermReadSignals}, time.Hour)
			url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws?token=" + tok

			var mu sync.Mutex
			var lat []time.Duration
			var got sync.WaitGroup
			ready := make(chan struct{}, n)
			for i := 0; i < n; i++ {
				c, err := load.DialRaw(url, "", false, func(_ *load.RawConn, msg []byte) {
					if strings.HasPrefix(string(msg[:min(len(msg), 30)]), `{"type":"subscribe_response"`) {
						ready <- struct{}{}
						return
					}
					if !strings.HasPrefix(string(msg[:min(len(msg), 26)]), `{"type":"strategy_signal"`) {
						return // auth_response and the like
					}
					if sent, ok := load.SentAt(msg); ok {
						d := time.Since(sent)
						mu.Lock()
						lat = append(lat, d)
						mu.Unlock()
						got.Done()
					}
				})
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				_ = c.Send([]byte(`{"type":"subscribe","channel":"strategy_signals","strategy_id":"S"}`))
			}
			for i := 0; i < n; i++ {
				<-ready
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				got.Add(n)
				data := fmt.Appendf(nil, `{"signal":"BUY","sent":"%d"}`, time.Now().UnixNano())
				if _, err := hub.Publish(context.Background(), engine.Message{Topic: "signals:S", Mode: engine.Reliable, Type: "strategy_signal",
					Channel: "signals", StrategyID: "S", Data: data}); err != nil {
					b.Fatal(err)
				}
				if i%32 == 31 {
					got.Wait() // bounded in-flight work, like a feed at a steady rate
				}
			}
			got.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "deliveries/s")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		})
	}
}
