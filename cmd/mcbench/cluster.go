package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marketcast/marketcast/bench/load"
	"github.com/marketcast/marketcast/engine/auth"
	"github.com/marketcast/marketcast/protocol"
)

// cluster compares one node (private history in memory) with NATS and
// o.nodes nodes at equal load, in the same run: fan-out of one reliable
// topic (through the cluster every delivery has crossed a JetStream store
// and a RePublish), private order updates (one JetStream publish, store and
// ack each), the cost of a publish through one node and spread over all
// (publishCost), then the failover of a killed node's clients.
func cluster(ctx context.Context, o options) error {
	rates := o.rates
	if len(rates) == 0 {
		rates = []int{100, 400}
	}
	for _, target := range []string{"marketcast", "cluster"} {
		f := o
		f.scenario, f.target, f.channel, f.rates = "fanout", target, "strategy_signals", rates
		if err := fanout(ctx, f); err != nil {
			return fmt.Errorf("fan-out on %s: %w", target, err)
		}
	}
	for _, target := range []string{"marketcast", "cluster"} {
		p := o
		p.scenario, p.target, p.rates = "private", target, []int{o.privateRate}
		if err := private(ctx, p); err != nil {
			return fmt.Errorf("private on %s: %w", target, err)
		}
	}
	if err := publishCost(ctx, o); err != nil {
		return fmt.Errorf("publish cost: %w", err)
	}
	return failover(ctx, o)
}

// failoverClient is one terminal with the resume logic a real client has:
// it remembers the sequence and epoch of the last order it saw and, when its
// node dies, reconnects to another and resubscribes from there.
type failoverClient struct {
	user string
	conn *load.RawConn

	mu      sync.Mutex
	seq     uint64
	epoch   string
	got     []uint64 // sequences received, in order
	resumed chan bool
}

type pushed struct {
	Type     string `json:"type"`
	Sequence uint64 `json:"sequence"`
	Epoch    string `json:"epoch"`
	Data     struct {
		Recovered *bool  `json:"recovered"`
		Epoch     string `json:"epoch"`
		Sequence  uint64 `json:"sequence"`
	} `json:"data"`
}

// dial connects the client to node addr and subscribes its orders, from
// where it stands.
func (fc *failoverClient) dial(addr, secret, src string) error {
	tok, err := auth.Issue([]byte(secret), fc.user, nil, time.Hour)
	if err != nil {
		return err
	}
	c, err := load.DialRaw("ws://"+addr+"/ws?token="+tok, src, false, func(_ *load.RawConn, b []byte) {
		var m pushed
		if json.Unmarshal(b, &m) != nil {
			return
		}
		fc.mu.Lock()
		defer fc.mu.Unlock()
		switch m.Type {
		case protocol.AnswerSubscribe:
			if m.Data.Recovered != nil {
				select {
				case fc.resumed <- *m.Data.Recovered:
				default:
				}
			} else {
				fc.epoch = m.Data.Epoch
			}
		case protocol.TypeOrderUpdate:
			fc.seq, fc.epoch = m.Sequence, m.Epoch
			fc.got = append(fc.got, m.Sequence)
		}
	})
	if err != nil {
		return err
	}
	fc.mu.Lock()
	req := map[string]any{"type": "subscribe", "channel": "orders"}
	if fc.seq > 0 {
		req["since"], req["epoch"] = fc.seq, fc.epoch
	}
	fc.conn = c
	fc.mu.Unlock()
	b, _ := json.Marshal(req)
	return c.Send(b)
}

// failover connects o.users terminals spread over the nodes, kills node 0
// with SIGKILL, publishes while its terminals reconnect to the others, and
// reports how long until all of them have resumed, and whether anything was
// lost or doubled.
func failover(ctx context.Context, o options) error {
	b, err := start(ctx, options{target: "cluster", bin: o.bin, nodes: o.nodes, extraConfig: o.extraConfig}, load.BaseConfig(0, 0))
	if err != nil {
		return err
	}
	defer b.close()
	c := b.t.(*load.Cluster)
	users := o.failoverClients
	clients := make([]*failoverClient, users)
	for i := range clients {
		fc := &failoverClient{user: "f" + strconv.Itoa(i), resumed: make(chan bool, 1)}
		clients[i] = fc
		addr, secret := c.Node(i % o.nodes).Endpoint()
		if err := fc.dial(addr, secret, sourceIP(i)); err != nil {
			return err
		}
	}
	publishOrder := func(i int) error {
		return c.Publish([]load.Outgoing{{Topic: load.Topic{Channel: "orders", ID: clients[i].user},
			Data: []byte(`{"order_id":"` + clients[i].user + `"}`)}})
	}
	time.Sleep(time.Second) // every subscription answered
	for i := range clients {
		if err := publishOrder(i); err != nil {
			return err
		}
	}
	waitAll := func(want int) bool {
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			done := true
			for _, fc := range clients {
				fc.mu.Lock()
				n := len(fc.got)
				fc.mu.Unlock()
				done = done && n >= want
			}
			if done {
				return true
			}
		}
		return false
	}
	if !waitAll(1) {
		return fmt.Errorf("the first orders did not all arrive")
	}

	progress("killing node 0 (%d of %d terminals on it)", (users+o.nodes-1)/o.nodes, users)
	killed := time.Now()
	c.Kill(0)
	var affected []int
	for i := 0; i < users; i += o.nodes {
		affected = append(affected, i)
	}
	var resumedAt sync.Map
	var recoveredAll atomic.Bool
	recoveredAll.Store(true)
	var wg sync.WaitGroup
	for k, i := range affected {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fc := clients[i]
			<-fc.conn.Done() // the node is gone: the socket ends
			addr, secret := c.Node(1 + k%(o.nodes-1)).Endpoint()
			for try := 0; try < 20; try++ {
				if err := fc.dial(addr, secret, sourceIP(i)); err == nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			select {
			case ok := <-fc.resumed:
				if !ok {
					recoveredAll.Store(false)
				}
				resumedAt.Store(i, time.Since(killed))
			case <-time.After(30 * time.Second):
			}
		}()
	}
	// Orders keep coming while the terminals move: each must arrive once.
	for i := range clients {
		if err := publishOrder(i); err != nil {
			return err
		}
	}
	wg.Wait()
	var last time.Duration
	n := 0
	resumedAt.Range(func(_, v any) bool {
		n++
		last = max(last, v.(time.Duration))
		return true
	})
	ok := waitAll(2)
	lost, doubled := 0, 0
	for _, fc := range clients {
		fc.mu.Lock()
		seen := map[uint64]int{}
		for _, s := range fc.got {
			seen[s]++
		}
		for s := uint64(1); s <= 2; s++ {
			switch {
			case seen[s] == 0:
				lost++
			case seen[s] > 1:
				doubled++
			}
		}
		fc.mu.Unlock()
	}
	fmt.Printf("BenchmarkClusterFailover/nodes=%d/terminals=%d 1 %d moved %d resumed %.0f all-resumed-ms %d lost %d doubled recovered=%v complete=%v\n",
		o.nodes, users, len(affected), n, float64(last.Microseconds())/1000, lost, doubled, recoveredAll.Load(), ok)
	if n != len(affected) || lost > 0 || doubled > 0 || !recoveredAll.Load() {
		return fmt.Errorf("failover: %d of %d terminals resumed, %d orders lost, %d doubled", n, len(affected), lost, doubled)
	}
	return nil
}

// publishCost measures what a private publish costs the cluster, CPU of
// NATS and every node together per acknowledged publish, when every publish
// goes through one node and when publishes to the same topics are spread
// over all nodes (a load balancer in front of the publish API): the price
// of nodes racing for a topic's head. Same rate, same topics, same run, no
// subscribers (as a back end publishing to users who are offline).
func publishCost(ctx context.Context, o options) error {
	const users, senders = 1000, 16
	rate := o.privateRate
	for _, spread := range []bool{false, true} {
		b, err := start(ctx, options{target: "cluster", bin: o.bin, nodes: o.nodes, extraConfig: o.extraConfig}, load.BaseConfig(0, 0))
		if err != nil {
			return err
		}
		c := b.t.(*load.Cluster)
		var acked, failed atomic.Int64
		send := func(d time.Duration) error {
			jobs := make(chan load.Outgoing, 4096)
			var wg sync.WaitGroup
			for w := range senders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for k := 0; ; k++ {
						m, ok := <-jobs
						if !ok {
							return
						}
						node := c.Node(0)
						if spread {
							node = c.Node((w + k) % o.nodes)
						}
						t0 := time.Now()
						if err := node.Publish([]load.Outgoing{m}); err != nil {
							failed.Add(1)
							continue
						}
						acked.Add(1)
						b.pubMu.Lock()
						_ = b.pubRTT.RecordValue(time.Since(t0).Microseconds())
						b.pubMu.Unlock()
					}
				}()
			}
			n := 0
			err := onSchedule(ctx, rate, d, func(slot time.Time, due int) error {
				for range due {
					jobs <- load.Outgoing{Topic: load.Topic{Channel: "orders", ID: "u" + strconv.Itoa(n%users)}, Data: payload(slot, n, o.payload)}
					n++
				}
				return nil
			})
			close(jobs)
			wg.Wait()
			return err
		}
		// Warm up first (every topic published through every node, the
		// nodes' heads learned), so the figure is the steady state's.
		// Twice the measurement: enough for every node to have published
		// to every topic more than once.
		progress("publish cost spread=%v: warming up for %v", spread, 2*o.duration)
		err = send(2 * o.duration)
		acked.Store(0)
		failed.Store(0)
		conflicts0 := clusterConflicts(c, o.nodes)
		var s sample
		nats0, _ := load.CPUTime(c.NATSPID())
		if err == nil {
			s, err = b.measure(fmt.Sprintf("[publish cost spread=%v rate=%d]", spread, rate), func() error { return send(o.duration) })
		}
		nats1, _ := load.CPUTime(c.NATSPID())
		conflicts := clusterConflicts(c, o.nodes) - conflicts0
		b.close()
		if err != nil {
			return err
		}
		perPublish := 0.0
		if n := acked.Load(); n > 0 {
			perPublish = float64(s.cpu.Microseconds()) / float64(n)
		}
		name := fmt.Sprintf("PublishCost/nodes=%d/spread=%v/users=%d/rate=%d", o.nodes, spread, users, rate)
		if label != "" {
			name += "/variant=" + label
		}
		natsPer := 0.0
		if n := acked.Load(); n > 0 {
			natsPer = float64((nats1 - nats0).Microseconds()) / float64(n)
		}
		fmt.Printf("Benchmark%s 1 %.0f acked/s %.1f cpu-us/publish %.1f nats-cpu-us/publish %.0f conflicts %d failed %.3f server-cpu-s %.3f publish-p50-ms %.3f publish-p99-ms\n",
			name, float64(acked.Load())/s.elapsed.Seconds(), perPublish, natsPer, conflicts, failed.Load(), s.cpu.Seconds(), s.pubP50, s.pubP99)
	}
	return nil
}

// clusterConflicts is how many publish races the nodes lost so far.
func clusterConflicts(c *load.Cluster, nodes int) float64 {
	var n float64
	for i := range nodes {
		addr, _ := c.Node(i).Endpoint()
		n += load.ScrapeCounter("http://"+addr+"/metrics", "marketcast_cluster_publish_conflicts_total")
	}
	return n
}
