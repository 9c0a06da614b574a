package feed

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/marketcast/marketcast/protocol"
)

func TestDecimalString(t *testing.T) {
	f := func(units int64, scale uint8, want string) {
		t.Helper()
		if got := (Decimal{units, scale}).String(); got != want {
			t.Fatalf("%d/10^%d: got %s; want %s", units, scale, got, want)
		}
	}
	f(40000, 1, "4000.0")
	f(48002, 2, "480.02")
	f(5, 2, "0.05")
	f(-25, 2, "-0.25")
	f(103005, 3, "103.005")
	f(1000, 0, "1000")
	f(0, 1, "0.0")
}

func TestPublicationsCarrySeedShapes(t *testing.T) {
	m := TickPublication(&Tick{Symbol: "SHFE.rb2405", LastPrice: "4000.0", UpdateTime: "x", Open: "1", High: "1", Low: "1",
		PreSettlement: "1", UpperLimit: "1", LowerLimit: "1", AveragePrice: "1"})
	var d map[string]any
	if err := json.Unmarshal(m.Data, &d); err != nil {
		t.Fatal(err)
	}
	if m.Topic() != "tick:SHFE.rb2405" || m.Type != "market_data" || m.Channel != protocol.Tick || len(d) != len(protocol.TickFields) {
		t.Fatalf("tick %+v data %v", m, d)
	}
	// The struct's keys are the protocol's, in the protocol's order.
	var keys []string
	for i := range reflect.TypeFor[Tick]().NumField() {
		if k, _, _ := strings.Cut(reflect.TypeFor[Tick]().Field(i).Tag.Get("json"), ","); k != "-" {
			keys = append(keys, k)
		}
	}
	if fmt.Sprint(keys) != fmt.Sprint(protocol.TickFields) {
		t.Fatalf("feed.Tick keys %v; protocol.TickFields %v", keys, protocol.TickFields)
	}
	b := BarPublication(&Bar{Symbol: "X", Channel: "kline_5m", Closed: true})
	if !b.Final || b.Type != "kline" || b.Topic() != "kline_5m:X" {
		t.Fatalf("bar %+v", b)
	}
	dm := DepthPublication(&Depth{Symbol: "X", Bids: [][2]string{{"1.0", "2"}}, Levels: 1})
	if string(dm.Data) != `{"bids":[["1.0","2"]],"asks":null,"levels":1}` {
		t.Fatalf("depth data %s", dm.Data)
	}
}

// TestBarAppendJSON: the hand encoding of bars writes what the encoder
// would, in the same key order, also for values that need escaping.
func TestBarAppendJSON(t *testing.T) {
	for _, b := range []*Bar{
		{Open: "1.0", High: "2.0", Low: "0.5", Close: "1.5", Volume: "10", Turnover: "15.0",
			StartTime: "2026-11-27T01:00:00.000Z", EndTime: "2026-11-27T01:01:00.000Z"},
		{Open: "1", High: "1", Low: "1", Close: "1", Volume: "0", Turnover: "0", StartTime: "a\"b\\c\n", EndTime: "é",
			Partial: true, Closed: true},
	} {
		want, _ := json.Marshal(b)
		if got := b.AppendJSON(nil); string(got) != string(want) {
			t.Fatalf("AppendJSON\n got %s\nwant %s", got, want)
		}
	}
}
