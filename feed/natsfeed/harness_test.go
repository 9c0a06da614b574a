package natsfeed_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/feed"
	"github.com/marketcast/marketcast/feed/kline"
	"github.com/marketcast/marketcast/feed/market"
	"github.com/marketcast/marketcast/feed/natsfeed"
	"github.com/marketcast/marketcast/internal/lockedbuf"
	"github.com/marketcast/marketcast/internal/testwait"
	"github.com/marketcast/marketcast/protocol"
)

// table is the built-in trading calendar.
var table = func() *kline.Table {
	t, err := kline.ParseTable(configs.CalendarFile)
	if err != nil {
		panic(err)
	}
	return t
}()

// clock is a wall clock a test moves by hand: bars close by it and quotes
// are checked against it, so no test waits for real time to pass.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.t) {
		c.t = t
	}
}

// nodeOptions choose what a test node runs with.
type nodeOptions struct {
	sessions    kline.Sessions // nil: around the clock
	store       bool           // keep closed bars in MC_BARS
	checkpoints bool           // keep forming bars in MC_FORMING
	clock       *clock         // nil: the wall clock
	maxSymbols  int            // 0: 100
	zone        *time.Location // of zone-less times; nil: exchange time
	sink        func(feed.Sink) feed.Sink
	pending     int // feed.nats.pending_messages; 0: the default
}

// node is what a server runs to ingest market data: a hub, the market
// with its bar builders, and the NATS source feeding it.
type node struct {
	hub    *engine.Hub
	market *market.Market
	src    *natsfeed.Source
	logs   *lockedbuf.Buffer
	nc     *nats.Conn
	stop   func()
}

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// startNode runs a node on the NATS server at url, as the server wires one.
func startNode(t *testing.T, url string, o nodeOptions) *node {
	t.Helper()
	cfg := configs.Default()
	nc := connect(t, url)
	hub := engine.NewHub(cfg.Engine(), engine.NewMemoryBroker(cfg.HistoryLimits()))
	now := time.Now
	if o.clock != nil {
		now = o.clock.Now
	}
	sessions := o.sessions
	if sessions == nil {
		sessions = kline.AlwaysOpen
	}
	if o.maxSymbols == 0 {
		o.maxSymbols = 100
	}
	logs := &lockedbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	mcfg := market.Config{MaxSymbols: o.maxSymbols, Sessions: sessions, BarHistory: cfg.Feed.BarHistory, Now: now, Log: log, Shards: 2}
	if o.store {
		s := natsfeed.NewBarStore(nc, cfg.Feed.BarHistory, 1)
		t.Cleanup(s.Close)
		if err := s.Ensure(context.Background()); err != nil {
			t.Fatal(err)
		}
		mcfg.Store = s
	}
	if o.checkpoints {
		cp := natsfeed.NewCheckpoints(nc, 1)
		if err := cp.Ensure(context.Background()); err != nil {
			t.Fatal(err)
		}
		mcfg.Checkpoints, mcfg.CheckpointEvery = cp, time.Hour // written when a test says (Checkpoint)
	}
	m := market.New(hub, mcfg)
	if o.checkpoints {
		if _, err := m.Restore(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	ncfg := cfg.NATSIngest()
	ncfg.Log = log
	ncfg.Rules.Now = now
	if o.zone != nil {
		ncfg.Rules.Zone = o.zone
	}
	if o.pending > 0 {
		ncfg.PendingMessages = o.pending
	}
	n := &node{hub: hub, market: m, logs: logs, nc: nc, src: natsfeed.NewSource(nc, ncfg)}
	var sink feed.Sink = m
	if o.sink != nil {
		sink = o.sink(m)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = n.src.Run(ctx, sink) }()
	go func() { defer wg.Done(); m.Run(ctx) }()
	var once sync.Once
	n.stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(n.stop)
	testwait.For(t, "the source to subscribe", func() bool {
		select {
		case <-n.src.Listening():
			return true
		default:
			return false
		}
	})
	return n
}

func (n *node) last(ch *protocol.Channel, symbol string) *engine.Event {
	return n.hub.Last(protocol.TopicKey(ch, symbol))
}

// closed lists a symbol's closed bars of an interval (index in
// protocol.Klines), oldest first.
func (n *node) closed(i int, symbol string) []string {
	var out []string
	for _, ev := range n.hub.Finals(protocol.TopicKey(protocol.Klines[i], symbol)) {
		out = append(out, dataOf(ev))
	}
	return out
}

// metric reads one metric of the node's sets (source and market).
func (n *node) metric(name string) string {
	var b bytes.Buffer
	n.src.Metrics().WritePrometheus(&b)
	n.market.Metrics().WritePrometheus(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return "0"
}

func publish(t *testing.T, nc *nats.Conn, subject, data string) {
	t.Helper()
	if err := nc.Publish(subject, []byte(data)); err != nil {
		t.Fatal(err)
	}
}

func flush(t *testing.T, nc *nats.Conn) {
	t.Helper()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func dataOf(ev *engine.Event) string {
	if ev == nil {
		return ""
	}
	m := ev.Message()
	return string(m.Data)
}

// cst is exchange time.
var cst = time.FixedZone("CST", 8*3600)

// ex is an exchange time, "2026-11-24 09:00:00.500".
func ex(s string) time.Time {
	layout := "2006-01-02 15:04:05"
	if i := strings.IndexByte(s, '.'); i >= 0 {
		layout += "." + strings.Repeat("0", len(s)-i-1)
	}
	t, err := time.ParseInLocation(layout, s, cst)
	if err != nil {
		panic(err)
	}
	return t
}

// tick is a CTP-like tick as a collector sends it.
type tick struct {
	at             time.Time
	price, vol, to string
	oi, open, h, l string
	extra          string // more members, written as is
}

func (k tick) json() string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"last_price":"%s"`, k.price)
	if k.vol != "" {
		fmt.Fprintf(&b, `,"volume":%s,"turnover":"%s"`, k.vol, k.to)
	}
	if k.oi != "" {
		fmt.Fprintf(&b, `,"open_interest":%s`, k.oi)
	}
	if k.open != "" {
		fmt.Fprintf(&b, `,"open":"%s","high":"%s","low":"%s"`, k.open, k.h, k.l)
	}
	fmt.Fprintf(&b, `,"update_time":"%s"%s}`, k.at.UTC().Format(protocol.TimeLayout), k.extra)
	return b.String()
}

// waitClosed waits until symbol has at least n closed bars of interval i.
func (n *node) waitClosed(t *testing.T, i int, symbol string, count int) []string {
	t.Helper()
	testwait.For(t, fmt.Sprintf("%d closed %s bars of %s", count, protocol.Klines[i].Push, symbol), func() bool {
		return len(n.closed(i, symbol)) >= count
	})
	return n.closed(i, symbol)
}

// sortedKeys is for stable failure messages.
func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
