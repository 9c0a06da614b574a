package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marketcast/marketcast/bench/wsclient"
	"github.com/marketcast/marketcast/engine/natsbroker/natstest"
	"github.com/marketcast/marketcast/feed/replay"
	"github.com/marketcast/marketcast/internal/lockedbuf"
	"github.com/marketcast/marketcast/internal/testlane"
	"github.com/marketcast/marketcast/internal/testwait"
	"github.com/marketcast/marketcast/protocol"
)

// subcommand runs the binary with args (feed, record) and the cluster's
// environment; its logs are kept for failures.
type subcommand struct {
	cmd  *exec.Cmd
	logs *lockedbuf.Buffer
}

func runSubcommand(t *testing.T, natsURL string, args ...string) *subcommand {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "MARKETCAST_NATS_URL="+natsURL, "MARKETCAST_DEV_MODE=false", "MARKETCAST_JWT_SECRET="+clusterSecret)
	logs := &lockedbuf.Buffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return &subcommand{cmd: cmd, logs: logs}
}

// wait waits for the command to exit 0.
func (s *subcommand) wait(t *testing.T) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%v: %v\n%s", s.cmd.Args, err, s.logs.String())
		}
	case <-time.After(testwait.Deadline):
		t.Fatalf("%v did not exit\n%s", s.cmd.Args, s.logs.String())
	}
}

// busTap records every market message that crosses NATS, in order.
type busTap struct {
	mu   sync.Mutex
	msgs []string // subject + " " + data
}

func tapBus(t *testing.T, url string) *busTap {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	tap := &busTap{}
	if _, err := nc.Subscribe("md.>", func(m *nats.Msg) {
		tap.mu.Lock()
		tap.msgs = append(tap.msgs, m.Subject+" "+string(m.Data))
		tap.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return tap
}

func (b *busTap) take() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.msgs
	b.msgs = nil
	return out
}

func (b *busTap) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.msgs)
}

func readyz(addr string) int {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestFeedProcessRecordAndReplay runs one `marketcast feed` for two nodes:
// both serve the same ticks. `marketcast record` writes what crossed NATS,
// and `marketcast feed -replay` publishes exactly that again. With NATS
// gone a node stays up and says it is not ready; it recovers by itself.
func TestFeedProcessRecordAndReplay(t *testing.T) {
	testlane.MultiProcess(t)
	ns := natstest.Start(t, "")
	var nodes []*clusterNode
	for i := range 2 {
		nodes = append(nodes, &clusterNode{startBinary(t, freePort(t), "MARKETCAST_NATS_URL="+ns.URL(),
			"MARKETCAST_DEV_MODE=false", "MARKETCAST_JWT_SECRET="+clusterSecret, "MARKETCAST_SESSIONS=always",
			fmt.Sprintf("MARKETCAST_NODE_NAME=f%d", i))})
	}
	tap := tapBus(t, ns.URL())
	feed := runSubcommand(t, ns.URL(), "feed")
	testwait.For(t, "the feed's first ticks on the bus", func() bool { return tap.len() > 0 })

	// Both nodes serve the same ticks: the same data for each exchange time
	// (live ones: the simulator's backfill of the past comes in a burst,
	// which each node may conflate differently).
	const sym = "SHFE.rb2405"
	liveFrom := time.Now().Add(-time.Second).UTC().Format(protocol.TimeLayout)
	var got [2]map[string]string
	for i, n := range nodes {
		testwait.For(t, "the node learning "+sym, func() bool { return knowsSymbol(n.addr, sym) })
		c := n.login(t, fmt.Sprint("trader", i))
		subscribeTo(t, c, map[string]any{"channel": "market_data", "symbols": []string{sym}})
		got[i] = map[string]string{}
		for len(got[i]) < 4 {
			m := nextOf(t, c, "market_data")
			if at := m.DataMap()["update_time"].(string); at > liveFrom {
				got[i][at] = string(m.Data)
			}
		}
	}
	same := 0
	for at, data := range got[0] {
		if other, ok := got[1][at]; ok {
			if other != data {
				t.Fatalf("tick of %s differs between nodes:\n%s\n%s", at, data, other)
			}
			same++
		}
	}
	if same == 0 {
		t.Fatalf("no tick in common between the nodes: %v %v", got[0], got[1])
	}

	// Record a moment of the feed.
	file := filepath.Join(t.TempDir(), "moment.mcr.gz")
	tap.take()
	rec := runSubcommand(t, ns.URL(), "record", "-out", file, "-for", "1500ms")
	rec.wait(t)
	_ = feed.cmd.Process.Signal(syscall.SIGTERM)
	feed.wait(t)
	live := tap.take()
	r, err := replay.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	var recorded []string
	for {
		e, err := r.Next()
		if err != nil {
			break
		}
		recorded = append(recorded, e.Subject+" "+string(e.Payload()))
	}
	r.Close()
	if len(recorded) < 10 {
		t.Fatalf("recorded %d messages in 1.5 s of the feed\n%s", len(recorded), rec.logs.String())
	}
	if !containsRun(live, recorded) {
		t.Fatalf("the recording (%d messages) is not a run of what crossed the bus (%d)", len(recorded), len(live))
	}

	// Replay it ten times faster: the same messages, in the same order.
	runSubcommand(t, ns.URL(), "feed", "-replay", file, "-speed", "10").wait(t)
	testwait.For(t, "the replay on the bus", func() bool { return tap.len() >= len(recorded) })
	if played := tap.take(); fmt.Sprint(played) != fmt.Sprint(recorded) {
		t.Fatalf("replay differs from the recording: %d messages, want %d", len(played), len(recorded))
	}

	// NATS goes away: the nodes stay up, not ready; it comes back: ready.
	a := nodes[0]
	if code := readyz(a.addr); code != 200 {
		t.Fatalf("readyz %d before the outage", code)
	}
	ns.Stop()
	testwait.For(t, "readyz 503 while NATS is down", func() bool { return readyz(a.addr) == 503 })
	ns.Restart(false)
	testwait.For(t, "readyz 200 once NATS is back", func() bool { return readyz(a.addr) == 200 })
	if a.cmd.ProcessState != nil {
		t.Fatal("the node exited")
	}
}

// knowsSymbol reports whether the node at addr lists symbol.
func knowsSymbol(addr, symbol string) bool {
	resp, err := http.Get("http://" + addr + "/api/v1/symbols")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var v struct{ Symbols []string }
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return slices.Contains(v.Symbols, symbol)
}

// containsRun reports whether want appears in all, contiguous and in order.
func containsRun(all, want []string) bool {
	for i := 0; i+len(want) <= len(all); i++ {
		if all[i] == want[0] && fmt.Sprint(all[i:i+len(want)]) == fmt.Sprint(want) {
			return true
		}
	}
	return false
}

// TestClusterKlineHistory: bars built from a collector's ticks on every
// node are the same, and a kline subscription's history is the same on
// every node — also on one that started after the bars closed, which
// loads them from the cluster's bar store.
func TestClusterKlineHistory(t *testing.T) {
	testlane.MultiProcess(t)
	ns := natstest.Start(t, "")
	env := []string{"MARKETCAST_NATS_URL=" + ns.URL(), "MARKETCAST_DEV_MODE=false", "MARKETCAST_JWT_SECRET=" + clusterSecret,
		"MARKETCAST_SESSIONS=always"}
	a := &clusterNode{startBinary(t, freePort(t), append(env, "MARKETCAST_NODE_NAME=h1")...)}
	b := &clusterNode{startBinary(t, freePort(t), append(env, "MARKETCAST_NODE_NAME=h2")...)}
	for _, n := range []*clusterNode{a, b} {
		testwait.For(t, "the node joining", func() bool { return bytes.Contains([]byte(n.logs.String()), []byte("node joined the cluster")) })
	}
	// A collector: ten minutes of ticks, an hour ago, and the tick that
	// closes the tenth bar.
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	const sym = "X.hist"
	t0 := time.Now().Add(-time.Hour).Truncate(time.Hour)
	for i := 0; i <= 10*30; i++ {
		at := t0.Add(time.Duration(i) * 2 * time.Second)
		data := fmt.Sprintf(`{"last_price":"%d.0","volume":"%d","turnover":"%d.0","update_time":"%s"}`,
			100+i%7, 5*(i+1), 500*(i+1), at.UTC().Format(protocol.TimeLayout))
		if err := nc.Publish("md.tick."+sym, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// history is the closed bars a subscription is sent first; none while
	// the node does not know the symbol yet (its ticks, or for a late
	// node the last-value warm-up, are still on their way).
	history := func(n *clusterNode) []string {
		c := n.login(t, "chart")
		defer c.Close()
		if err := c.Send(map[string]any{"type": "subscribe", "channel": "kline_1m", "symbols": []string{sym}, "history": 100}); err != nil {
			t.Fatal(err)
		}
		answer, err := c.WaitFor(wait, func(m *wsclient.Message) bool { return m.Type == "subscribe_response" || m.Type == "error" })
		if err != nil {
			t.Fatalf("subscribe on %s: %v", n.addr, err)
		}
		if answer.Type == "error" {
			return nil
		}
		var bars []string
		for {
			m, err := c.WaitType(time.Second, "kline")
			if err != nil || m.DataMap()["closed"] != true {
				return bars // the forming bar follows the history (none yet: the ticks are still on their way)
			}
			bars = append(bars, string(m.Data))
		}
	}
	var onA []string
	testwait.For(t, "ten closed bars on A", func() bool { onA = history(a); return len(onA) == 10 })
	testwait.For(t, "the same on B", func() bool { return fmt.Sprint(history(b)) == fmt.Sprint(onA) })
	c := &clusterNode{startBinary(t, freePort(t), append(env, "MARKETCAST_NODE_NAME=h3")...)}
	var onC []string
	testwait.For(t, "the same on the late node", func() bool { onC = history(c); return len(onC) > 0 })
	if fmt.Sprint(onC) != fmt.Sprint(onA) {
		t.Fatalf("history on the late node:\n%v\nwant\n%v", onC, onA)
	}
}
