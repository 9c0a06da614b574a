package sim

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketcast/marketcast/protocol"
)

type recorder struct {
	mu   sync.Mutex
	pubs []*protocol.Publication
}

func (r *recorder) Publish(_ context.Context, p *protocol.Publication) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pubs = append(r.pubs, p)
	return uint64(len(r.pubs)), nil
}

// units parses a decimal string into units of 10^-decimals.
func units(t *testing.T, s string, decimals uint8) int64 {
	t.Helper()
	i, f, _ := strings.Cut(s, ".")
	if len(f) != int(decimals) {
		t.Fatalf("%q has %d decimals; want %d", s, len(f), decimals)
	}
	v, err := strconv.ParseInt(i+f, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestPricesOnGridWithinLimits(t *testing.T) {
	s, err := New(Config{Symbols: []string{"SHFE.rb2405", "SHFE.au2406", "CFFEX.IF2403", "CZCE.TA405", "INE.sc2405", "CFFEX.T2403"},
		Rate: 1000, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	var r recorder
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := s.Run(ctx, &r); err != context.DeadlineExceeded {
		t.Fatalf("run: %v", err)
	}
	lastVolume := map[string]int64{}
	ticks := 0
	for _, m := range r.pubs {
		if m.Channel != protocol.Tick {
			continue
		}
		ticks++
		p, _ := ParseSymbol(m.ID)
		var d map[string]string
		if err := json.Unmarshal(m.Data, &d); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"last_price", "bid_price", "ask_price"} {
			u := units(t, d[k], p.Decimals)
			if u%p.TickUnits != 0 {
				t.Fatalf("%s %s = %s: off the tick grid", m.ID, k, d[k])
			}
		}
		last := units(t, d["last_price"], p.Decimals)
		limit := p.BasePrice*(p.LimitPct+1)/100 + 20*p.TickUnits // settlement starts within 20 ticks of base
		if last < p.BasePrice-limit || last > p.BasePrice+limit {
			t.Fatalf("%s last %s beyond the daily limit", m.ID, d["last_price"])
		}
		if units(t, d["bid_price"], p.Decimals) >= units(t, d["ask_price"], p.Decimals) {
			t.Fatalf("%s crossed: %v", m.ID, d)
		}
		v, _ := strconv.ParseInt(d["volume"], 10, 64)
		if v < lastVolume[m.ID] {
			t.Fatalf("%s volume went down: %d after %d", m.ID, v, lastVolume[m.ID])
		}
		lastVolume[m.ID] = v
	}
	if ticks < 100 {
		t.Fatalf("only %d ticks", ticks)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{Symbols: []string{"NYMEX.CL2405"}},
		{Symbols: []string{"SHFE.rb2405", "SHFE.rb2405"}},
		{Rate: -1},
		{Levels: 50},
	} {
		if _, err := New(c); err == nil {
			t.Fatalf("config %+v accepted", c)
		}
	}
	if s, err := New(Config{}); err != nil || s.Symbols()[0] != "SHFE.rb2405" || s.Symbols()[1] != "SHFE.hc2405" {
		t.Fatalf("defaults: %v %v", err, s)
	}
}

func TestUniverse(t *testing.T) {
	u := Universe(500)
	seen := map[string]bool{}
	for _, s := range u {
		if seen[s] {
			t.Fatalf("duplicate %s", s)
		}
		seen[s] = true
		if _, err := ParseSymbol(s); err != nil {
			t.Fatal(err)
		}
	}
	if len(u) != 500 || !seen["CZCE.TA505"] && !seen["CZCE.TA405"] {
		t.Fatalf("universe of %d: %v", len(u), u[:30])
	}
	if _, err := New(Config{Symbols: u}); err != nil {
		t.Fatal(err)
	}
}
