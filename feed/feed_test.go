package feed

import (
	"encoding/json"
	"errors"
	"fmt"
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
	m := TickPublication(&Tick{Symbol: "SHFE.rb2405", LastPrice: "4000.0"})
	var d map[string]any
	if err := json.Unmarshal(m.Data, &d); err != nil {
		t.Fatal(err)
	}
	if m.Topic() != "tick:SHFE.rb2405" || m.Type != "market_data" || m.Channel != protocol.Tick || len(d) != len(protocol.TickFields) {
		t.Fatalf("tick %+v data %v", m, d)
	}
	for _, k := range protocol.TickFields {
		if _, ok := d[k]; !ok {
			t.Fatalf("tick data lacks %s", k)
		}
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

func TestCatalogIsBoundedAndSorted(t *testing.T) {
	c := NewCatalog(3)
	if got := c.Sorted(); got == nil || len(got) != 0 {
		t.Fatalf("empty catalogue lists %v; want []", got)
	}
	for _, s := range []string{"b", "a", "c", "a"} {
		if err := c.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	err := c.Add("d")
	if !errors.Is(err, protocol.ErrRejected) || !strings.Contains(err.Error(), "limits.max_symbols") {
		t.Fatalf("a fourth symbol: %v; want a rejection naming the limit", err)
	}
	if got := c.Sorted(); fmt.Sprint(got) != "[a b c]" || c.Len() != 3 || !c.Has("b") || c.Has("d") {
		t.Fatalf("catalogue %v", got)
	}
}
