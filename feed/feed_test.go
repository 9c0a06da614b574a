package feed

import (
	"encoding/json"
	"testing"
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

func TestMessagesCarrySeedShapes(t *testing.T) {
	m := TickMessage(&Tick{Symbol: "SHFE.rb2405", LastPrice: "4000.0"})
	var d map[string]any
	if err := json.Unmarshal(m.Data, &d); err != nil {
		t.Fatal(err)
	}
	if m.Topic != "tick:SHFE.rb2405" || m.Type != "market_data" || m.Channel != "tick" || len(d) != len(TickFields) {
		t.Fatalf("tick message %+v data %v", m, d)
	}
	for _, k := range TickFields {
		if _, ok := d[k]; !ok {
			t.Fatalf("tick data lacks %s", k)
		}
	}
	b := BarMessage(&Bar{Symbol: "X", Channel: "kline_5m", Closed: true})
	if !b.Final || b.Type != "kline" || b.Topic != "kline_5m:X" {
		t.Fatalf("bar message %+v", b)
	}
	dm := DepthMessage(&Depth{Symbol: "X", Bids: [][2]string{{"1.0", "2"}}, Levels: 1})
	if string(dm.Data) != `{"bids":[["1.0","2"]],"asks":null,"levels":1}` {
		t.Fatalf("depth data %s", dm.Data)
	}
}
