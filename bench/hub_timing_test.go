package bench

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/engine/frame"
	"github.com/marketcast/marketcast/feed"
)

var tickData = engine.FromPublication(feed.TickPublication(&feed.Tick{Symbol: "SHFE.rb2405", LastPrice: "4000.0",
	BidPrice: "3999.0", AskPrice: "4001.0", BidVolume: "10", AskVolume: "15", Volume: "1000", Turnover: "39950000.0",
	OpenInterest: "5000", Change: "10.0", ChangePercent: "0.25"}))

// newHub is a hub on a memory broker with the production defaults, except
// that frames are written at once: these benchmarks measure the engine's
// work, not a timer's wait.
func newHub(tune func(*engine.Config, *engine.HistoryLimits)) *engine.Hub {
	def := configs.Default()
	cfg, limits := def.Engine(), def.HistoryLimits()
	cfg.FlushDelay = 0
	if tune != nil {
		tune(&cfg, &limits)
	}
	return engine.NewHub(cfg, engine.NewMemoryBroker(limits))
}

// subscribe subscribes o to key and starts the subscription.
func subscribe(b *testing.B, h *engine.Hub, o *engine.Outbox, key string, mode engine.Mode) {
	sub, _, err := h.Subscribe(context.Background(), o, key, mode, engine.SubscribeOptions{})
	if err != nil {
		b.Fatal(err)
	}
	h.Start(sub)
}

func orderMsg(user string, n int) engine.Message {
	return engine.Message{Topic: "orders:" + user, Mode: engine.Reliable, Type: "order_update", Channel: "orders",
		Data: []byte(`{"order_id":"ORD_` + strconv.Itoa(n) + `","symbol":"SHFE.rb2405","side":"BUY","quantity":"1.0","price":"4000.0","status":"FILLED"}`)}
}

// drain waits until every subscriber's queue is written out.
func drain(subs []*engine.Outbox) {
	for _, s := range subs {
		for {
			if n, _ := s.Pending(); n == 0 {
				break
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// BenchmarkPublishFanout publishes ticks of one symbol to N subscribers and
// counts through to the bytes written to each connection. Reliable mode is
// used so nothing is conflated away and every publish is N deliveries.
func BenchmarkPublishFanout(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		for _, deflate := range []bool{false, true} {
			b.Run(fmt.Sprintf("subs=%d/deflate=%v", n, deflate), func(b *testing.B) {
				h := newHub(func(c *engine.Config, _ *engine.HistoryLimits) { c.DeflateThreshold, c.MaxPendingBytes = 64, 1<<30 })
				subs := make([]*engine.Outbox, n)
				conns := make([]*discardConn, n)
				for i := range subs {
					conns[i] = &discardConn{}
					subs[i] = h.NewOutbox(conns[i], deflate)
					subscribe(b, h, subs[i], "bench:tick", engine.Reliable)
				}
				m := tickData
				m.Topic, m.Mode = "bench:tick", engine.Reliable
				ctx := context.Background()
				lat := make([]time.Duration, 0, b.N)
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				for i := 0; i < b.N; i++ {
					t0 := time.Now()
					if _, err := h.Publish(ctx, m); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(t0))
					if i%64 == 63 {
						drain(subs) // keep queues bounded like a healthy network would
					}
				}
				drain(subs)
				elapsed := time.Since(start)
				b.StopTimer()
				var bytes int64
				for _, c := range conns {
					bytes += c.bytes.Load()
				}
				Sink.Add(bytes)
				delivered := h.Stats().Delivered
				b.ReportMetric(float64(delivered)/elapsed.Seconds(), "deliveries/s")
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-publish-ns")
			})
		}
	}
}

// BenchmarkFrameEncode measures one event's envelope + frame, plain and
// deflated: the work done once per event, whatever the subscriber count.
func BenchmarkFrameEncode(b *testing.B) {
	env := frame.Envelope{Type: "market_data", Channel: "tick", Symbol: "SHFE.rb2405", Timestamp: time.Now(), Sequence: 1}
	depth := feed.DepthPublication(&feed.Depth{Symbol: "SHFE.rb2405", Levels: 5,
		Bids: [][2]string{{"3999.0", "10"}, {"3998.0", "20"}, {"3997.0", "15"}, {"3996.0", "11"}, {"3995.0", "40"}},
		Asks: [][2]string{{"4001.0", "15"}, {"4002.0", "25"}, {"4003.0", "30"}, {"4004.0", "8"}, {"4005.0", "19"}}})
	for _, c := range []struct {
		name string
		data []byte
	}{{"tick", tickData.Data}, {"depth5", depth.Data}} {
		buf := make([]byte, 0, 1024)
		b.Run(c.name+"/plain", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buf = frame.AppendEnvelope(buf[:frame.HeaderRoom], &env, c.data, false)
				f := frame.Seal(buf, false)
				b.SetBytes(int64(len(f)))
			}
		})
		b.Run(c.name+"/deflate", func(b *testing.B) {
			b.ReportAllocs()
			payload := frame.AppendEnvelope(nil, &env, c.data, false)
			for b.Loop() {
				f := frame.Deflated(payload)
				b.SetBytes(int64(len(payload)))
				Sink.Add(int64(len(f)))
			}
		})
		b.Run(c.name+"/sonic-data", func(b *testing.B) {
			// The feed's share: encoding the data object itself (sonic).
			b.ReportAllocs()
			t := &feed.Tick{Symbol: "SHFE.rb2405", LastPrice: "4000.0", BidPrice: "3999.0", AskPrice: "4001.0"}
			for b.Loop() {
				Sink.Add(int64(len(feed.TickPublication(t).Data)))
			}
		})
	}
}

// BenchmarkConflation measures the enqueue path of a subscriber that is
// behind: every publish replaces the pending frame of its topic in place.
func BenchmarkConflation(b *testing.B) {
	h := newHub(nil)
	server, client := net.Pipe() // nobody reads: the flusher blocks, the queue conflates
	defer server.Close()
	defer client.Close()
	s := h.NewOutbox(server, false)
	const topics = 100
	msgs := make([]engine.Message, topics)
	for i := range msgs {
		msgs[i] = tickData
		msgs[i].Topic = "tick:S" + strconv.Itoa(i)
		subscribe(b, h, s, msgs[i].Topic, engine.Conflated)
	}
	b.ReportAllocs()
	i := 0
	ctx := context.Background()
	for b.Loop() {
		if _, err := h.Publish(ctx, msgs[i%topics]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.StopTimer()
	frames, _ := s.Pending()
	if frames > topics+1 {
		b.Fatalf("%d frames pending for %d topics", frames, topics)
	}
	b.ReportMetric(float64(frames), "frames-pending")
}

// BenchmarkPrivateFanIn publishes order updates to many users, one
// subscriber each: the private path (history append, reliable enqueue).
func BenchmarkPrivateFanIn(b *testing.B) {
	const users = 10000
	h := newHub(func(_ *engine.Config, l *engine.HistoryLimits) { l.Size = 100 })
	subs := make([]*engine.Outbox, users)
	msgs := make([]engine.Message, users)
	for i := range subs {
		subs[i] = h.NewOutbox(&discardConn{}, false)
		msgs[i] = orderMsg(strconv.Itoa(i), i)
		subscribe(b, h, subs[i], msgs[i].Topic, engine.Reliable)
	}
	b.ReportAllocs()
	start := time.Now()
	i := 0
	ctx := context.Background()
	for b.Loop() {
		if _, err := h.Publish(ctx, msgs[i%users]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	drain(subs)
	b.ReportMetric(float64(h.Stats().Delivered)/time.Since(start).Seconds(), "deliveries/s")
}
