package protocol

import (
	"encoding/json"
	"testing"
)

// FuzzValidate feeds the publish validator any publish item a back end or
// collector could send. It never panics; what it accepts is publishable:
// a known channel, compact JSON data within the bound, an id the topic
// rules allow, and a notification type that is no protocol type. Its seeds
// run as an ordinary test in `go test`.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{
		`{"channel":"orders","user_id":"1","data":{"order_id":"A-1","status":"FILLED"}}`,
		`{"channel":"orders","user_id":42,"idempotency_key":"k-1","data":{}}`,
		`{"channel":"notifications","type":"margin_call","data":{"level":"95%"}}`,
		`{"channel":"notifications","user_id":"u","type":"auth_response","data":{"status":"success"}}`,
		`{"channel":"market_data","symbol":"SHFE.rb2405","data":{"last_price":"4000.0","volume":"10","timestamp":"2024-05-01T09:00:00.000Z"}}`,
		`{"channel":"depth","symbol":"SHFE.rb2405","data":{"bids":[["3999.0","10"]],"asks":[["4001.0","15"]]}}`,
		`{"channel":"kline_1m","symbol":"DCE.m2405","data":{"open":"1","high":"2","low":"0.5","close":"1.5","volume":"3","timestamp":"2024-05-01T09:00:00.000Z","closed":true}}`,
		`{"channel":"strategy_signals","strategy_id":"s1","data":{"side":"buy"}}`,
		`{"channel":"orders","user_id":"*","data":{}}`, `{"channel":"x","data":{}}`, `{"channel":"orders","user_id":"1","data":[1]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var it Item
		if json.Unmarshal(b, &it) != nil {
			return
		}
		p, err := Validate(&it, 4096)
		if err != nil {
			return
		}
		if p.Channel == nil || len(p.Data) > 4096 || !json.Valid(p.Data) || p.Data[0] != '{' {
			t.Fatalf("%s accepted as %+v", b, p)
		}
		switch {
		case p.Channel.Kind == KindMarket && !ValidSymbol(p.ID):
			t.Fatalf("%s: market id %q", b, p.ID)
		case p.Channel.Kind != KindMarket && p.ID != BroadcastID && !ValidID(p.ID):
			t.Fatalf("%s: id %q", b, p.ID)
		case p.ID == BroadcastID && p.Channel != Notifications:
			t.Fatalf("%s: a broadcast on %s", b, p.Channel.Push)
		case reservedType(p.Type) && p.Type != p.Channel.Type && p.Type != TypeSystemNotice && p.Type != TypeRiskAlert:
			t.Fatalf("%s: type %q is a protocol type", b, p.Type)
		}
	})
}
