package feed

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/marketcast/marketcast/protocol"
)

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
	dm := DepthPublication(&Depth{Symbol: "X", Bids: [][2]string{{"1.0", "2"}}, Levels: 1})
	if string(dm.Data) != `{"bids":[["1.0","2"]],"asks":null,"levels":1}` {
		t.Fatalf("depth data %s", dm.Data)
	}
}
