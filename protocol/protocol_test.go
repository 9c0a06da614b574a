package protocol

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestLookupAliases(t *testing.T) {
	f := func(name string, want *Channel) {
		t.Helper()
		if got, ok := Lookup(name); !ok || got != want {
			t.Fatalf("Lookup(%q) = %v, %v; want %v", name, got, ok, want.Push)
		}
	}
	f("market_data", Tick)
	f("tick", Tick)
	f("strategy_signals", Signals)
	f("signals", Signals)
	f("kline_15m", Klines[2])
	if _, ok := Lookup("kline_2m"); ok {
		t.Fatal("kline_2m is not a channel")
	}
	for _, c := range All {
		if c.Kline() != (c.Type == TypeKline) || c.Reliable() == (c.Kind == KindMarket) {
			t.Fatalf("channel %s: inconsistent kind/type", c.Push)
		}
	}
}

func TestValidID(t *testing.T) {
	for s, want := range map[string]bool{
		"1": true, "alice@example.com": true, "用户1": true, "a b": true, "ORD:1/x": true,
		"": false, " 2": false, "2 ": false, "a\tb": false, "a\x00": false, "*": false, "a>b": false,
		"\xff": false, strings.Repeat("x", 128): true, strings.Repeat("x", 129): false,
	} {
		if got := ValidID(s); got != want {
			t.Errorf("ValidID(%q) = %v; want %v", s, got, want)
		}
	}
	for s, want := range map[string]bool{
		"SHFE.rb2405": true, "CZCE.TA405": true, "X": true, "a_b-c.d": true,
		"": false, ".a": false, "a.": false, "a..b": false, "a b": false, "a*": false, "a:b": false,
	} {
		if got := ValidSymbol(s); got != want {
			t.Errorf("ValidSymbol(%q) = %v; want %v", s, got, want)
		}
	}
}

func TestSubjects(t *testing.T) {
	for _, id := range []string{"42", "alice", "alice@example.com", "a.b", "用户1", "a b", BroadcastID, "~x"} {
		tok := SubjectToken(id)
		if strings.ContainsAny(tok, ".*> \t") || tok == "" {
			t.Fatalf("SubjectToken(%q) = %q: not one subject token", id, tok)
		}
		if back, ok := ParseSubjectToken(tok); !ok || back != id {
			t.Fatalf("ParseSubjectToken(%q) = %q, %v; want %q", tok, back, ok, id)
		}
	}
	if SubjectToken("plain_id-1") != "plain_id-1" {
		t.Fatal("plain ids stay readable")
	}
	if s := MarketSubject(Klines[0], "SHFE.rb2405"); s != "md.kline_1m.SHFE.rb2405" {
		t.Fatalf("subject %s", s)
	}
	c, sym, ok := ParseMarketSubject("md.tick.SHFE.rb2405")
	if !ok || c != Tick || sym != "SHFE.rb2405" {
		t.Fatalf("parse: %v %q %v", c, sym, ok)
	}
	for _, bad := range []string{"md.orders.x", "md.market_data.X", "md.tick", "md.tick.", "x.tick.A", "md.nope.A"} {
		if _, _, ok := ParseMarketSubject(bad); ok {
			t.Fatalf("%s parsed", bad)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := func(js string) *Publication {
		t.Helper()
		var it Item
		if err := json.Unmarshal([]byte(js), &it); err != nil {
			t.Fatal(err)
		}
		p, err := Validate(&it, 1024)
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return p
	}
	bad := func(js, mentions string) {
		t.Helper()
		var it Item
		_ = json.Unmarshal([]byte(js), &it)
		if _, err := Validate(&it, 1024); err == nil || !strings.Contains(err.Error(), mentions) {
			t.Fatalf("%s: got %v; want an error mentioning %q", js, err, mentions)
		}
	}
	if p := ok(`{"channel":"orders","user_id":7,"data":{ "a" : 1 }}`); p.Topic() != "orders:7" || string(p.Data) != `{"a":1}` || p.Type != TypeOrderUpdate {
		t.Fatalf("orders: %+v", p)
	}
	if p := ok(`{"channel":"notifications","data":{}}`); !p.Broadcast() || p.Type != TypeSystemNotice || p.Topic() != BroadcastTopic {
		t.Fatalf("broadcast: %+v", p)
	}
	if p := ok(`{"channel":"notifications","user_id":"a@b","type":"margin_call","data":{}}`); p.Type != "margin_call" || p.ID != "a@b" {
		t.Fatalf("typed notice: %+v", p)
	}
	if p := ok(`{"channel":"signals","strategy_id":"S1","data":{}}`); p.Channel != Signals {
		t.Fatalf("signals alias: %+v", p)
	}
	bar := `"open":"1.0","high":"2.0","low":"0.5","close":"1.5","volume":"10","turnover":"15.0","start_time":"2026-11-27T01:00:00Z","end_time":"2026-11-27T01:01:00Z"`
	if p := ok(`{"channel":"kline_1m","symbol":"X.a1","data":{` + bar + `,"closed":true}}`); !p.Final {
		t.Fatalf("closed bar not final: %+v", p)
	}
	if p := ok(`{"channel":"kline_1m","symbol":"X.a1","data":{` + bar + `}}`); p.Final || !strings.HasSuffix(string(p.Data), `"closed":false}`) {
		t.Fatalf("forming bar: %s", p.Data)
	}
	bad(`{"data":{}}`, "missing channel")
	bad(`{"channel":"trades","data":{}}`, "unknown channel")
	bad(`{"channel":"orders","user_id":"1","data":[1]}`, "JSON object")
	bad(`{"channel":"orders","user_id":"1"}`, "JSON object")
	bad(`{"channel":"orders","data":{}}`, "missing user_id")
	bad(`{"channel":"orders","user_id":" 2","data":{}}`, "user_id")
	bad(`{"channel":"orders","user_id":2.5,"data":{}}`, "user_id")
	bad(`{"channel":"orders","type":"x","user_id":"1","data":{}}`, "type cannot")
	bad(`{"channel":"tick","data":{}}`, "symbol")
	bad(`{"channel":"tick","symbol":"a b","data":{}}`, "symbol")
	bad(`{"channel":"strategy_signals","data":{}}`, "strategy_id")
	bad(`{"channel":"kline_1m","symbol":"X","data":{`+bar+`,"closed":"yes"}}`, "closed")
	bad(`{"channel":"orders","user_id":"1","data":{"pad":"`+strings.Repeat("x", 2000)+`"}}`, "at most 1024")
}

// TestMarketShapes: market data from any publisher is checked against its
// channel's shape and normalized, numbers kept exactly as written.
func TestMarketShapes(t *testing.T) {
	norm := func(ch, data string) string {
		t.Helper()
		p, err := Validate(&Item{Channel: ch, Symbol: "SHFE.rb2405", Data: []byte(data)}, 1<<16)
		if err != nil {
			t.Fatalf("%s %s: %v", ch, data, err)
		}
		return string(p.Data)
	}
	refuse := func(ch, data, reason, mentions string) {
		t.Helper()
		_, err := Validate(&Item{Channel: ch, Symbol: "SHFE.rb2405", Data: []byte(data)}, 1<<16)
		var inv *InvalidData
		if !errors.As(err, &inv) || inv.Reason() != reason || !strings.Contains(err.Error(), mentions) {
			t.Fatalf("%s %s: %v; want reason %s mentioning %q", ch, data, err, reason, mentions)
		}
	}
	if got := norm("tick", `{"volume":15,"last_price":3999.0,"bid_price":"3998.0","turnover":5.9985e5,"timestamp":"2026-11-27T09:00:00.5+08:00"}`); got !=
		`{"last_price":"3999.0","bid_price":"3998.0","volume":"15","turnover":"599850","update_time":"2026-11-27T01:00:00.500Z"}` {
		t.Fatalf("tick normalized to %s", got)
	}
	if got := norm("tick", `{"last_price":1.25e-3,"change":-2E1}`); got != `{"last_price":"0.00125","change":"-20"}` {
		t.Fatalf("exponents: %s", got)
	}
	refuse("tick", `{"last_price":"4000.0","volume":"-3"}`, "negative", "volume")
	if got := norm("tick", `{"trading_day":"20261127","last_price":"4000.0","seq":7}`); got != `{"last_price":"4000.0","seq":7,"trading_day":"20261127"}` {
		t.Fatalf("a collector's own keys: %s", got)
	}
	refuse("tick", `{"last_price":true}`, "type", "last_price")
	refuse("tick", `{"last_price":"4,000"}`, "type", "last_price")
	refuse("tick", `{"volume":"3"}`, "missing", "last_price")
	refuse("tick", `{"last_price":"1.0","update_time":"yesterday"}`, "time", "update_time")
	refuse("depth", `{"bids":[],"asks":[],"timestamp":"2099-01-01T00:00:00Z"}`, "ahead", "ahead of this server")
	refuse("tick", `{"last_price":`, "json", "JSON")
	if got := norm("depth", `{"bids":[[3999,10],["3998.0","5"]],"asks":[["4000.0",7]],"levels":5}`); got !=
		`{"bids":[["3999","10"],["3998.0","5"]],"asks":[["4000.0","7"]],"levels":2}` {
		t.Fatalf("depth normalized to %s", got)
	}
	refuse("depth", `{"bids":[["3998.0","5"],["3999.0","10"]]}`, "order", "best first")
	refuse("depth", `{"bids":[["4001.0","5"]],"asks":[["4000.0","7"]]}`, "order", "crossed")
	refuse("depth", `{"bids":[["4001.0"]]}`, "type", "[price, volume]")
	refuse("depth", `{"bids":[["4001.0","-1"]]}`, "negative", "volume")
	refuse("kline_1m", `{"open":"2.0","high":"1.0","low":"0.5","close":"1.5","volume":"1","turnover":"1","start_time":"2026-11-27T01:00:00Z","end_time":"2026-11-27T01:01:00Z"}`, "order", "out of order")
	refuse("kline_1m", `{"open":"1.0","high":"2.0","low":"0.5","close":"1.5","volume":"1","turnover":"1","start_time":"2026-11-27T01:01:00Z","end_time":"2026-11-27T01:00:00Z"}`, "time", "end_time")
}
