package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marketcast/marketcast/bench/load"
	"github.com/marketcast/marketcast/protocol"
)

// ingest measures market data from a collector on NATS: ticks published on
// md.tick.<symbol> over o.symbols symbols at each rate, ingested by one
// node (validated, numbered, folded into bars of six intervals) and pushed
// to o.subs terminals holding one symbol each. Latency runs from the
// collector's publish to the terminal; CPU is the node's alone (NATS is
// reported beside it).
func ingest(ctx context.Context, o options) error {
	if len(o.rates) == 0 {
		o.rates = []int{20000, 50000, 100000}
	}
	o.target, o.nodes = "cluster", 1
	cfg := strings.Replace(load.BaseConfig(0, 0), "kind: none", "kind: nats\n  sessions: always", 1)
	b, err := start(ctx, o, cfg)
	if err != nil {
		return err
	}
	defer b.close()
	cl := b.t.(*load.Cluster)
	nc, err := nats.Connect(cl.NATSURL(), nats.Name("mcbench collector"))
	if err != nil {
		return err
	}
	defer nc.Close()
	symbols := ingestSymbols(o.symbols)
	for i, s := range symbols { // every symbol exists before anyone subscribes
		if err := nc.Publish(protocol.MarketSubject(protocol.Tick, s), tickPayload(time.Now(), i)); err != nil {
			return err
		}
	}
	if err := nc.Flush(); err != nil {
		return err
	}
	time.Sleep(time.Second)
	if err := b.connect(ctx, o.subs); err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	for _, rate := range o.rates {
		var published, expected int64
		var nodeCPU, natsCPU time.Duration
		addr, _ := cl.Node(0).Endpoint()
		before := nodeCounters(addr)
		s, err := b.measure(fmt.Sprintf("[ingest rate=%d]", rate), func() error {
			node0, _ := load.CPUTime(cl.PID())
			nats0, _ := load.CPUTime(cl.NATSPID())
			var err error
			published, expected, err = publishTicks(ctx, nc, rate, o.step, symbols, o.subs)
			time.Sleep(300 * time.Millisecond) // the node drains what NATS holds
			node1, _ := load.CPUTime(cl.PID())
			nats1, _ := load.CPUTime(cl.NATSPID())
			nodeCPU, natsCPU = node1-node0, nats1-nats0
			return err
		})
		if err != nil {
			return err
		}
		perCPU := 0.0
		if nodeCPU > 0 {
			perCPU = float64(published) / nodeCPU.Seconds()
		}
		loss := 0.0
		if expected > 0 {
			loss = 100 * float64(expected-s.delivered) / float64(expected)
		}
		// Where what a terminal did not get went: NATS dropped it (the node
		// read too slowly), the node refused it (bad, stale, duplicate), or
		// it was conflated (a newer tick replaced it before it was written).
		after := nodeCounters(addr)
		fmt.Printf("BenchmarkIngest/symbols=%d/subs=%d/rate=%d 1 %.0f ticks/s %.0f ticks/node-cpu-s %.3f p50-ms %.3f p99-ms %.3f p99.9-ms %.3f max-ms %.3f node-cpu-s %.3f nats-cpu-s %.1f rss-MiB %.3f loss-%% %d nats-dropped %d refused %d conflated\n",
			len(symbols), o.subs, rate, float64(published)/s.elapsed.Seconds(), perCPU, s.q.P50, s.q.P99, s.q.P999, s.q.Max,
			nodeCPU.Seconds(), natsCPU.Seconds(), float64(s.rss)/(1<<20), loss,
			after.overflow-before.overflow, after.refused-before.refused, after.conflated-before.conflated)
		if ctx.Err() != nil {
			break
		}
	}
	return nil
}

// ingestSymbols are the scenario's symbols; terminal i holds symbol i mod n.
func ingestSymbols(n int) []string {
	out := make([]string, max(n, 1))
	for i := range out {
		out[i] = fmt.Sprintf("ING.s%04d", i)
	}
	return out
}

// tickPayload is a collector's tick: a price, a cumulative volume that
// grows (so bars are built), the exchange time, and the scheduled send time.
func tickPayload(at time.Time, n int) []byte {
	return fmt.Appendf(nil, `{"last_price":"%d.0","volume":"%d","turnover":"%d.0","update_time":"%s","sent":"%d"}`,
		4000+n%50, n+1, 40000*(n+1), at.UTC().Format(protocol.TimeLayout), at.UnixNano())
}

// publishTicks publishes rate ticks a second for d, round-robin over the
// symbols, on the publishers' schedule (onSchedule), and
// returns how many it published and how many deliveries the terminals owe
// (subs terminals, terminal i holding symbol i mod len(symbols)).
func publishTicks(ctx context.Context, nc *nats.Conn, rate int, d time.Duration, symbols []string, subs int) (int64, int64, error) {
	holders := make([]int64, len(symbols))
	for i := range subs {
		holders[i%len(symbols)]++
	}
	var n, expected int64
	err := onSchedule(ctx, rate, d, func(slot time.Time, due int) error {
		for range due {
			i := int(n % int64(len(symbols)))
			if err := nc.Publish(protocol.MarketSubject(protocol.Tick, symbols[i]), tickPayload(slot, int(n))); err != nil {
				return err
			}
			expected += holders[i]
			n++
		}
		return nil
	})
	if err != nil {
		return n, expected, err
	}
	return n, expected, nc.Flush()
}

// counters are the node's own account of what it did not deliver.
type counters struct{ overflow, refused, conflated int64 }

// nodeCounters reads them from the node's /metrics (zero when it cannot).
func nodeCounters(addr string) counters {
	var c counters
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return c
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch family, _, _ := strings.Cut(name, "{"); family {
		case "marketcast_feed_overflow_dropped_total":
			c.overflow += int64(v)
		case "marketcast_feed_dropped_total", "marketcast_feed_ignored_total":
			c.refused += int64(v)
		case "marketcast_conflated_total":
			c.conflated += int64(v)
		}
	}
	return c
}
