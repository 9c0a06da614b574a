package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/marketcast/marketcast/bench/load"
	"github.com/marketcast/marketcast/internal/testlane"
)

// TestMain lets the test binary serve as the floor target's server, as
// mcbench itself does (the floor target starts os.Executable()).
func TestMain(m *testing.M) {
	if len(os.Args) == 4 && os.Args[1] == "-floor-server" && os.Args[2] == "-addr" {
		load.FloorMain(os.Args[3])
		return
	}
	os.Exit(m.Run())
}

// TestScenariosSmoke runs small versions of the scenarios against the real
// marketcast binary, so the load generator cannot rot between benchmark
// runs. The private scenario fails on any lost order update.
func TestScenariosSmoke(t *testing.T) {
	testlane.MultiProcess(t)
	bin := filepath.Join(t.TempDir(), "marketcast")
	if out, err := exec.Command("go", "build", "-o", bin, "../marketcast").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	stdout := os.Stdout
	devnull, _ := os.Open(os.DevNull)
	os.Stdout = devnull // result lines are for people and benchstat, not for the test log
	defer func() { os.Stdout = stdout; devnull.Close() }()

	base := options{target: "marketcast", bin: bin, channel: "strategy_signals", payload: 100, p99Limit: 1e9,
		step: time.Second, duration: time.Second, symbols: 20}
	for _, tc := range []struct {
		name string
		tune func(*options)
	}{
		{"fanout", func(o *options) { o.subs, o.rates = 20, []int{50} }},
		{"fanout-floor", func(o *options) { o.scenario, o.target, o.subs, o.rates = "fanout", "floor", 20, []int{50} }},
		{"private", func(o *options) { o.users, o.rates = 50, []int{200} }},
		{"memory", func(o *options) { o.conns = 100 }},
		{"slow", func(o *options) { o.subs, o.rates = 10, []int{50} }},
		{"fleet", func(o *options) { o.conns = 20 }},
		{"ingest", func(o *options) { o.subs, o.rates = 20, []int{200} }},
		{"storm", func(o *options) { o.conns = 200 }},
		{"cluster", func(o *options) {
			o.subs, o.rates, o.nodes, o.users, o.privateRate, o.failoverClients = 9, []int{50}, 3, 30, 100, 30
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			o.scenario = tc.name
			tc.tune(&o)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := run(ctx, o); err != nil {
				t.Fatal(err)
			}
		})
	}
}
