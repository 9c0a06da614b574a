// Command mcbench is marketcast's load generator and latency probe. It
// starts the server under test as a real process (marketcast, or Centrifugo
// for comparison), opens many WebSocket subscribers over several 127.0.0.x
// source addresses, publishes through the server's HTTP API on a fixed
// schedule with the scheduled send time inside each message (so a stall
// shows up as latency instead of hiding as a slower send rate), and records
// every delivery's latency in an HDR histogram.
//
//	mcbench -scenario fanout  -target marketcast|centrifugo|floor   1,000 subscribers of one symbol, rate stepped up
//	mcbench -scenario fleet   [-deflate]                      10,000 terminals × 10 of 500 simulated symbols
//	mcbench -scenario memory  -target marketcast|centrifugo   19,000 idle subscribed connections
//	mcbench -scenario slow                                    1 of 1,000 subscribers stops reading
//	mcbench -scenario private                                 order updates to 10,000 users
//	mcbench -scenario cluster [-nodes 3]                      one node, then NATS + 3 nodes: fan-out, private publishes, publish cost, failover
//	mcbench -scenario publish-cost [-private-rate 1000]       NATS + 3 nodes: CPU per private publish through one node and spread over all
//	mcbench -scenario ingest  [-symbols 500 -subs 500]        ticks from a collector on NATS into one node: ticks per CPU-second, NATS → terminal latency
//	mcbench -scenario storm   [-conns 10000 -concurrency 0]   every terminal reconnects at once: time until all are live, retransmits
//	mcbench -scenario slowterm [-slow 100 -handler 10ms -flow] 1,000 terminals, 100 of them application-limited: the others' latency, their tick age
//
// Results go to stdout as benchstat-readable lines; progress goes to stderr.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"

	"github.com/marketcast/marketcast/bench/load"
)

// label is -name: added to every result name.
var label string

type options struct {
	scenario, target, bin, centrifugo  string
	subs, conns, users, symbols, nodes int
	channel                            string
	rates                              []int
	step, duration                     time.Duration
	deflate                            bool
	payload                            int
	p99Limit                           float64
	name                               string
	extraConfig                        string
	tls                                bool
	privateRate, failoverClients       int
	concurrency                        int
	// slowterm
	slow, termSymbols, tickRate int
	handler                     time.Duration
	flow                        bool
}

func main() {
	var o options
	var rates string
	flag.StringVar(&o.scenario, "scenario", "fanout", "fanout, fleet, memory, slow, private, cluster, publish-cost, ingest, storm or slowterm")
	flag.StringVar(&o.target, "target", "marketcast", "marketcast, centrifugo, centrifugo-tuned (its memory-saving options), cluster (NATS + -nodes marketcast nodes) or floor (fanout: one write per delivery and nothing else, the kernel's floor)")
	flag.IntVar(&o.nodes, "nodes", 3, "nodes of the cluster target")
	flag.IntVar(&o.concurrency, "concurrency", 0, "storm: connections opening at a time (0: all at once)")
	flag.IntVar(&o.privateRate, "private-rate", 1000, "cluster: private order updates per second")
	flag.IntVar(&o.slow, "slow", 100, "slowterm: application-limited terminals among -subs")
	flag.DurationVar(&o.handler, "handler", 10*time.Millisecond, "slowterm: a limited terminal's handling time per message")
	flag.BoolVar(&o.flow, "flow", false, "slowterm: the limited terminals use flow control, as marketcast's clients do")
	flag.IntVar(&o.termSymbols, "term-symbols", 10, "slowterm: symbols every terminal subscribes to")
	flag.IntVar(&o.tickRate, "tick-rate", 15, "slowterm: ticks per second per symbol")
	flag.IntVar(&o.failoverClients, "failover-clients", 1500, "cluster: terminals spread over the nodes for the failover")
	flag.StringVar(&o.bin, "bin", "bin/marketcast", "marketcast binary")
	flag.StringVar(&o.centrifugo, "centrifugo-bin", "bin/centrifugo", "Centrifugo binary (bench/centrifugo.sh installs it)")
	flag.IntVar(&o.subs, "subs", 1000, "subscribers (fanout, slow)")
	flag.StringVar(&o.channel, "channel", "strategy_signals", "fanout/slow channel: strategy_signals (every message delivered, as Centrifugo does) or tick (conflated)")
	flag.IntVar(&o.conns, "conns", 0, "connections (fleet: 10000, memory: 19000, storm: 10000)")
	flag.IntVar(&o.users, "users", 10000, "users (private)")
	flag.IntVar(&o.symbols, "symbols", 500, "symbols (fleet: simulated; ingest: published on NATS)")
	flag.StringVar(&rates, "rates", "", "publish rates in messages/s, comma-separated (fanout steps through them)")
	flag.DurationVar(&o.step, "step", 8*time.Second, "duration of each rate step")
	flag.DurationVar(&o.duration, "duration", 15*time.Second, "measurement time (fleet, private, each slow phase)")
	flag.BoolVar(&o.deflate, "deflate", false, "negotiate permessage-deflate")
	flag.IntVar(&o.payload, "payload", 200, "approximate data bytes per published message")
	flag.Float64Var(&o.p99Limit, "p99-limit", 10, "fanout stops stepping once p99 passes this many ms")
	flag.StringVar(&o.name, "name", "", "a label added to result names (a variant's -server-config, say)")
	flag.BoolVar(&o.tls, "tls", false, "marketcast serves wss:// (a self-signed certificate) and clients connect over TLS")
	flag.StringVar(&o.extraConfig, "server-config", "", "YAML appended to marketcast's scenario config, e.g. $'delivery:\\n  flush_delay: 2ms'")
	flag.IntVar(&load.InflateEvery, "inflate-every", 16, "with -deflate: inflate one compressed frame in this many for latency, count the rest")
	pin := flag.Bool("pin", true, "run the server on its own CPUs (-cpus) and the load generator on the rest")
	cpus := flag.Int("cpus", 1, "with -pin: CPUs for the server (0 to N-1, GOMAXPROCS=N); the load generator gets the others")
	// A worker is a child process holding a share of the connections.
	isWorker := flag.Bool("worker", false, "internal: run as a worker process of another mcbench")
	floorServer := flag.Bool("floor-server", false, "internal: run as the floor target's server on -addr")
	addr := flag.String("addr", "", "internal (worker): server address")
	secret := flag.String("secret", "", "internal (worker): JWT secret")
	first := flag.Int("first", 0, "internal (worker): first connection index")
	count := flag.Int("count", 0, "internal (worker): connections to hold")
	flag.Parse()
	if *floorServer {
		load.FloorMain(*addr)
		return
	}
	if *isWorker {
		if err := runWorker(o, *addr, *secret, *first, *count); err != nil {
			fmt.Fprintln(os.Stderr, "mcbench worker:", err)
			os.Exit(1)
		}
		return
	}
	if *pin && runtime.NumCPU() > *cpus && *cpus > 0 {
		load.ServerCPUs = *cpus
		var set unix.CPUSet
		for c := *cpus; c < runtime.NumCPU(); c++ {
			set.Set(c)
		}
		if err := unix.SchedSetaffinity(0, &set); err == nil {
			runtime.GOMAXPROCS(runtime.NumCPU() - *cpus)
		}
	}
	for _, r := range strings.Split(rates, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(r)); err == nil && n > 0 {
			o.rates = append(o.rates, n)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	label = o.name
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "mcbench:", err)
		os.Exit(1)
	}
}

func newTarget(o options, cfg string) (load.Target, error) {
	switch o.target {
	case "marketcast":
		return &load.Marketcast{Bin: o.bin, Config: cfg + o.extraConfig + "\n", TLS: o.tls}, nil
	case "centrifugo":
		return &load.Centrifugo{Bin: o.centrifugo}, nil
	case "centrifugo-tuned":
		return &load.Centrifugo{Bin: o.centrifugo, Tuned: true}, nil
	case "floor":
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		return &load.Floor{Bin: self}, nil
	case "cluster":
		return &load.Cluster{Bin: o.bin, Nodes: o.nodes, Config: cfg + o.extraConfig + "\n"}, nil
	}
	return nil, fmt.Errorf("unknown target %q", o.target)
}

func run(ctx context.Context, o options) error {
	switch o.scenario {
	case "fanout":
		return fanout(ctx, o)
	case "fleet":
		return fleet(ctx, o)
	case "memory":
		return memory(ctx, o)
	case "slow":
		return slow(ctx, o)
	case "private":
		return private(ctx, o)
	case "cluster":
		return cluster(ctx, o)
	case "publish-cost":
		return publishCost(ctx, o)
	case "ingest":
		return ingest(ctx, o)
	case "storm":
		return storm(ctx, o)
	case "slowterm":
		return slowterm(ctx, o)
	}
	return fmt.Errorf("unknown scenario %q", o.scenario)
}

// bench wires a started target to a recorder and its connections.
type bench struct {
	o       options
	t       load.Target
	rec     *load.Recorder
	clients []*load.RawConn // this process's share; nil beyond it
	counts  []atomic.Int64  // deliveries per connection
	stalled atomic.Int64    // index+1 of a connection whose deliveries are ignored
	workers []*worker       // child processes holding the rest
	// route, when set before connect, sees each connection's data first;
	// true means it took the message (slowterm's limited terminals).
	route func(i int, msg []byte) bool

	pubMu  sync.Mutex
	pubRTT *hdrhistogram.Histogram // publish API round trips, µs
}

func start(ctx context.Context, o options, cfg string) (*bench, error) {
	t, err := newTarget(o, cfg)
	if err != nil {
		return nil, err
	}
	if err := t.Start(ctx); err != nil {
		return nil, err
	}
	return &bench{o: o, t: t, rec: load.NewRecorder(), pubRTT: hdrhistogram.New(1, 60_000_000, 3)}, nil
}

// sourceIP spreads connections over 127.0.0.1..n so no source address runs
// out of ephemeral ports.
func sourceIP(i int) string { return fmt.Sprintf("127.0.0.%d", 1+i/10000) }

// connect opens n connections, each subscribed to topicsFor(i). This
// process holds up to perProcess of them; worker processes hold the rest.
func (b *bench) connect(ctx context.Context, n int) error {
	b.clients = make([]*load.RawConn, n)
	b.counts = make([]atomic.Int64, n)
	if n > perProcess {
		if err := b.spawnWorkers(n); err != nil {
			return err
		}
		n = perProcess
	}
	topics := func(i int) []load.Topic { return topicsFor(b.o, i) }
	want := int64(0)
	var mu sync.Mutex
	var firstErr error
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				tp := topics(i)
				c, err := b.t.Dial(sourceIP(i), "u"+strconv.Itoa(i), tp, b.o.deflate, b.onData(i))
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("dial %d: %w", i, err)
				}
				b.clients[i] = c
				want += int64(len(tp))
				mu.Unlock()
			}
		}()
	}
	begin := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		if i > 0 && i%2000 == 0 {
			progress("connecting: %d/%d", i, n)
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	deadline := time.Now().Add(60 * time.Second)
	for b.t.Ready() < want {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("only %d of %d subscriptions confirmed", b.t.Ready(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	progress("%d connections, %d subscriptions ready in %v", n, want, time.Since(begin).Round(time.Millisecond))
	return nil
}

func (b *bench) onData(i int) func([]byte) {
	return func(msg []byte) {
		if b.stalled.Load() == int64(i+1) || (b.route != nil && b.route(i, msg)) {
			return
		}
		if sent, ok := load.SentAt(msg); ok {
			b.rec.Record(i, time.Since(sent))
		} else {
			b.rec.Count() // a frame left compressed (-inflate-every)
		}
		b.counts[i].Add(1)
	}
}

func (b *bench) close() {
	b.stopWorkers()
	for _, c := range b.clients {
		if c != nil {
			c.Close()
		}
	}
	b.t.Stop()
}

// scheduleTick is the publishers' clock: every 5 ms, what is due.
const scheduleTick = 5 * time.Millisecond

// onSchedule calls fn every scheduleTick for d with the slot's time and the
// number of messages due in it at rate a second, until fn fails or ctx
// ends. Every message of a slot is due at the slot's start, so none is
// stamped later than it could have been sent (no coordinated omission).
func onSchedule(ctx context.Context, rate int, d time.Duration, fn func(slot time.Time, due int) error) error {
	perTick := float64(rate) * scheduleTick.Seconds()
	var owed float64
	begin := time.Now()
	ticker := time.NewTicker(scheduleTick)
	defer ticker.Stop()
	for k := 0; ; k++ {
		slot := begin.Add(time.Duration(k) * scheduleTick)
		if slot.Sub(begin) >= d || ctx.Err() != nil {
			return nil
		}
		owed += perTick
		if due := int(owed); due > 0 {
			owed -= float64(due)
			if err := fn(slot, due); err != nil {
				return err
			}
		}
		<-ticker.C
	}
}

// payload builds a message's data with its scheduled send time.
func payload(sent time.Time, n, size int) []byte {
	pad := max(0, size-60)
	return fmt.Appendf(nil, `{"last_price":"4000.0","n":"%d","sent":"%d","pad":"%s"}`, n, sent.UnixNano(), strings.Repeat("x", pad))
}

// publish sends rate messages per second for d, spread over topics
// round-robin, each stamped with its scheduled time. Batches go out from
// several goroutines so one slow HTTP round trip does not delay the
// schedule. It returns how many messages were published per topic.
func (b *bench) publish(ctx context.Context, rate int, d time.Duration, topics []load.Topic) (map[load.Topic]int, error) {
	batches := make(chan []load.Outgoing, 1024)
	var errOnce sync.Once
	var pubErr error
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := range batches {
				t0 := time.Now()
				if err := b.t.Publish(batch); err != nil {
					errOnce.Do(func() { pubErr = err })
				}
				b.pubMu.Lock()
				_ = b.pubRTT.RecordValue(time.Since(t0).Microseconds())
				b.pubMu.Unlock()
			}
		}()
	}
	sent := map[load.Topic]int{}
	n := 0
	_ = onSchedule(ctx, rate, d, func(slot time.Time, due int) error {
		batch := make([]load.Outgoing, 0, due)
		for range due {
			t := topics[n%len(topics)]
			batch = append(batch, load.Outgoing{Topic: t, Data: payload(slot, n, b.o.payload)})
			sent[t]++
			n++
		}
		batches <- batch
		return nil
	})
	close(batches)
	wg.Wait()
	return sent, pubErr
}

// measure runs fn while sampling the server: CPU seconds, RSS and live
// progress every second. The recorder is reset at the start.
type sample struct {
	elapsed time.Duration
	cpu     time.Duration
	userCPU time.Duration // the part of cpu spent in the server's own code
	loadCPU time.Duration // the load generator's own CPU time
	// The server's own publish→flush lag (marketcast only), in ms.
	serverP50, serverP99 float64
	rss                  int64
	delivered            int64
	q                    load.Quantiles
	// Publish API round trips (a batch each), in ms.
	pubP50, pubP99 float64
}

// serverPIDs are the processes under test: one server, or a cluster's
// NATS and nodes.
func (b *bench) serverPIDs() []int {
	if c, ok := b.t.(interface{ PIDs() []int }); ok {
		return c.PIDs()
	}
	return []int{b.t.PID()}
}

// serverCPU is the CPU time of every process under test, and its user
// part (the rest is the kernel's, on the processes' behalf).
func (b *bench) serverCPU() (total, user time.Duration) {
	for _, pid := range b.serverPIDs() {
		u, s, _ := load.CPUTimes(pid)
		total += u + s
		user += u
	}
	return total, user
}

func (b *bench) measure(label string, fn func() error) (sample, error) {
	b.rec.Snapshot(true)
	b.collect(hdrhistogram.New(1, 60_000_000, 3)) // reset the workers' share too
	d0 := b.rec.Delivered()
	var lag0 load.LagBuckets
	if b.o.target == "marketcast" {
		lag0, _ = load.ScrapeLag(b.metricsURL())
	}
	b.pubMu.Lock()
	b.pubRTT.Reset()
	b.pubMu.Unlock()
	cpu0, user0 := b.serverCPU()
	self0, _ := load.CPUTime(os.Getpid())
	begin := time.Now()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	tk := time.NewTicker(time.Second)
	defer tk.Stop()
	var err error
loop:
	for {
		select {
		case err = <-done:
			break loop
		case <-tk.C:
			q := load.Summarise(b.rec.Snapshot(false))
			progress("%s t=%ds delivered=%d %s", label, int(time.Since(begin).Seconds()), b.rec.Delivered()-d0, q)
		}
	}
	time.Sleep(300 * time.Millisecond) // let the last deliveries land
	cpu1, user1 := b.serverCPU()
	self1, _ := load.CPUTime(os.Getpid())
	var rss int64
	for _, pid := range b.serverPIDs() {
		r, _ := load.RSS(pid)
		rss += r
	}
	hist := b.rec.Snapshot(false)
	remote := b.collect(hist) // workers' share, if any
	s := sample{elapsed: time.Since(begin), cpu: cpu1 - cpu0, userCPU: user1 - user0, loadCPU: self1 - self0, rss: rss,
		delivered: b.rec.Delivered() - d0 + remote, q: load.Summarise(hist)}
	b.pubMu.Lock()
	s.pubP50, s.pubP99 = float64(b.pubRTT.ValueAtQuantile(50))/1000, float64(b.pubRTT.ValueAtQuantile(99))/1000
	b.pubMu.Unlock()
	if lag0 != nil {
		if lag1, err := load.ScrapeLag(b.metricsURL()); err == nil {
			s.serverP50, s.serverP99 = lag1.Quantile(lag0, 0.5), lag1.Quantile(lag0, 0.99)
		}
	}
	return s, err
}

func (b *bench) metricsURL() string {
	addr, _ := b.t.Endpoint()
	return "http://" + addr + "/metrics"
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

// report prints one benchstat line.
func report(name string, s sample, expected int64, extra ...string) {
	if label != "" {
		name += "/variant=" + label
	}
	perCPU := 0.0
	if s.cpu > 0 {
		perCPU = float64(s.delivered) / s.cpu.Seconds()
	}
	loss := 0.0
	if expected > 0 {
		loss = 100 * float64(expected-s.delivered) / float64(expected)
	}
	userPer, sysPer := 0.0, 0.0
	if s.delivered > 0 {
		userPer = float64(s.userCPU.Microseconds()) / float64(s.delivered)
		sysPer = float64((s.cpu - s.userCPU).Microseconds()) / float64(s.delivered)
	}
	extra = append([]string{fmt.Sprintf("%.3f user-us/delivery %.3f sys-us/delivery", userPer, sysPer)}, extra...)
	fmt.Printf("Benchmark%s 1 %.0f deliveries/s %.0f deliveries/cpu-s %.3f p50-ms %.3f p99-ms %.3f p99.9-ms %.3f max-ms %.3f server-lag-p50-ms %.3f server-lag-p99-ms %.3f server-cpu-s %.3f loadgen-cpu-s %.1f rss-MiB %.3f loss-%% %.3f publish-p50-ms %.3f publish-p99-ms %s\n",
		name, float64(s.delivered)/s.elapsed.Seconds(), perCPU, s.q.P50, s.q.P99, s.q.P999, s.q.Max,
		s.serverP50, s.serverP99, s.cpu.Seconds(), s.loadCPU.Seconds(), float64(s.rss)/(1<<20), loss, s.pubP50, s.pubP99, strings.Join(extra, " "))
}

func fanout(ctx context.Context, o options) error {
	if len(o.rates) == 0 {
		o.rates = []int{100, 200, 400, 800, 1600}
	}
	b, err := start(ctx, o, load.BaseConfig(0, 0))
	if err != nil {
		return err
	}
	defer b.close()
	topic := topicsFor(o, 0)[0]
	if err := b.t.Publish([]load.Outgoing{{Topic: topic, Data: payload(time.Now(), 0, o.payload)}}); err != nil {
		return err // creates the symbol on marketcast
	}
	if err := b.connect(ctx, o.subs); err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond) // snapshots drain before measuring
	for _, rate := range o.rates {
		var published int
		s, err := b.measure(fmt.Sprintf("[fanout %s rate=%d]", o.target, rate), func() error {
			sent, err := b.publish(ctx, rate, o.step, []load.Topic{topic})
			published = sent[topic]
			return err
		})
		if err != nil {
			return err
		}
		report(fmt.Sprintf("Fanout/target=%s/channel=%s/subs=%d/rate=%d", o.target, o.channel, o.subs, rate), s, int64(published*o.subs))
		if s.q.P99 > o.p99Limit || ctx.Err() != nil {
			progress("p99 %.2f ms passed %.0f ms at %d msg/s: stopping", s.q.P99, o.p99Limit, rate)
			break
		}
	}
	return nil
}

// startSeeded starts the target and publishes one message to the
// scenario's first topic, so that it exists (a new symbol on marketcast)
// and subscribers get a snapshot; then it lets the server settle.
func startSeeded(ctx context.Context, o options, settle time.Duration) (*bench, load.Topic, error) {
	b, err := start(ctx, o, load.BaseConfig(0, 0))
	if err != nil {
		return nil, load.Topic{}, err
	}
	topic := topicsFor(o, 0)[0]
	if err := b.t.Publish([]load.Outgoing{{Topic: topic, Data: payload(time.Now(), 0, 100)}}); err != nil {
		b.close()
		return nil, load.Topic{}, err
	}
	time.Sleep(settle)
	return b, topic, nil
}

func memory(ctx context.Context, o options) error {
	if o.conns == 0 {
		o.conns = 19000
	}
	b, _, err := startSeeded(ctx, o, time.Second)
	if err != nil {
		return err
	}
	defer b.close()
	before, _ := load.RSS(b.t.PID())
	if err := b.connect(ctx, o.conns); err != nil {
		return err
	}
	time.Sleep(3 * time.Second) // let pools and buffers settle
	after, _ := load.RSS(b.t.PID())
	per := float64(after-before) / float64(o.conns)
	fmt.Printf("BenchmarkMemory/target=%s/conns=%d 1 %.0f bytes/conn %.1f rss-before-MiB %.1f rss-after-MiB\n",
		o.target, o.conns, per, float64(before)/(1<<20), float64(after)/(1<<20))
	return nil
}

// firstRate is the scenario's publish rate: the first of -rates, or def.
func firstRate(o options, def int) int {
	if len(o.rates) > 0 {
		return o.rates[0]
	}
	return def
}

func slow(ctx context.Context, o options) error {
	rate := firstRate(o, 200)
	b, err := start(ctx, o, load.BaseConfig(0, 0))
	if err != nil {
		return err
	}
	defer b.close()
	topic := topicsFor(o, 0)[0]
	_ = b.t.Publish([]load.Outgoing{{Topic: topic, Data: payload(time.Now(), 0, o.payload)}})
	if err := b.connect(ctx, o.subs); err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	phase := func(name string) (sample, error) {
		var published int
		s, err := b.measure("[slow "+name+"]", func() error {
			sent, err := b.publish(ctx, rate, o.duration, []load.Topic{topic})
			published = sent[topic]
			return err
		})
		report(fmt.Sprintf("Slow/target=%s/subs=%d/rate=%d/phase=%s", o.target, o.subs, rate, name), s,
			int64(published*(o.subs-int(min(b.stalled.Load(), 1)))))
		return s, err
	}
	base, err := phase("all-reading")
	if err != nil {
		return err
	}
	b.stalled.Store(1)
	b.clients[0].Stall()
	stalled, err := phase("one-stalled")
	if err != nil {
		return err
	}
	// A third phase without the stalled connection brackets the stalled one,
	// so drift of a noisy machine is not mistaken for the stall's effect.
	b.clients[0].Close()
	after, err := phase("stall-removed")
	if err != nil {
		return err
	}
	ref := (base.q.P99 + after.q.P99) / 2
	refLag := (base.serverP99 + after.serverP99) / 2
	progress("one stalled subscriber: others' p99 %+.3f ms (server lag p99 %+.3f ms) against the phases around it; RSS %+.1f MiB",
		stalled.q.P99-ref, stalled.serverP99-refLag, float64(stalled.rss-base.rss)/(1<<20))
	return nil
}

func private(ctx context.Context, o options) error {
	rate := firstRate(o, 5000)
	b, err := start(ctx, o, load.BaseConfig(0, 0))
	if err != nil {
		return err
	}
	defer b.close()
	topics := make([]load.Topic, o.users)
	for i := range topics {
		topics[i] = topicsFor(o, i)[0]
	}
	if err := b.connect(ctx, o.users); err != nil {
		return err
	}
	var sent map[load.Topic]int
	s, err := b.measure(fmt.Sprintf("[private %s rate=%d]", o.target, rate), func() error {
		var err error
		sent, err = b.publish(ctx, rate, o.duration, topics)
		return err
	})
	if err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	b.collect(hdrhistogram.New(1, 60_000_000, 3)) // the workers' final counts
	var expected, missing int64
	for i, t := range topics {
		expected += int64(sent[t])
		if got := b.counts[i].Load(); got < int64(sent[t]) {
			missing += int64(sent[t]) - got
		}
	}
	report(fmt.Sprintf("Private/target=%s/users=%d/rate=%d", o.target, o.users, rate), s, expected,
		fmt.Sprintf("%d missing", missing))
	if missing > 0 {
		return fmt.Errorf("%d of %d order updates never arrived", missing, expected)
	}
	return nil
}

func fleet(ctx context.Context, o options) error {
	if o.conns == 0 {
		o.conns = 10000
	}
	if o.target != "marketcast" {
		return fmt.Errorf("fleet runs the built-in simulator: marketcast only")
	}
	b, err := start(ctx, o, load.BaseConfig(o.symbols, 2))
	if err != nil {
		return err
	}
	defer b.close()
	if err := b.connect(ctx, o.conns); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	s, err := b.measure(fmt.Sprintf("[fleet deflate=%v]", o.deflate), func() error {
		select {
		case <-time.After(o.duration):
		case <-ctx.Done():
		}
		return nil
	})
	if err != nil {
		return err
	}
	report(fmt.Sprintf("Fleet/conns=%d/symbols=%d/deflate=%v", o.conns, o.symbols, o.deflate), s, 0,
		"(latency from envelope timestamps: ms resolution)")
	return nil
}

// topicsFor says what connection i subscribes to in o's scenario. It is a
// pure function of (o, i) so worker processes agree with the parent.
func topicsFor(o options, i int) []load.Topic {
	switch o.scenario {
	case "private":
		return []load.Topic{{Channel: "orders", ID: "u" + strconv.Itoa(i)}}
	case "memory":
		return []load.Topic{{Channel: "tick", ID: "BENCH.x1"}}
	case "ingest":
		return []load.Topic{{Channel: "tick", ID: ingestSymbols(o.symbols)[i%max(o.symbols, 1)]}}
	case "slowterm":
		tp := make([]load.Topic, o.termSymbols)
		for k := range tp {
			tp[k] = load.Topic{Channel: "tick", ID: "BENCH.t" + strconv.Itoa(k)}
		}
		return tp
	case "fleet":
		symbols := simSymbols(o.symbols)
		rng := rand.New(rand.NewPCG(uint64(i), 2))
		var tp []load.Topic
		for _, k := range rng.Perm(len(symbols))[:10] {
			tp = append(tp, load.Topic{Channel: "tick", ID: symbols[k]}, load.Topic{Channel: "depth", ID: symbols[k]})
		}
		return tp
	}
	return []load.Topic{{Channel: o.channel, ID: "BENCH.x1"}}
}
