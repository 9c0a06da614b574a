package gateway_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/marketcast/marketcast/configs"
)

// seedSymbols are the fourteen symbols of the seed's terminal (the
// simulator's defaults): two named by the seed, twelve main contracts.
var seedSymbols = []string{"SHFE.rb2405", "SHFE.hc2405", "DCE.m2405", "SHFE.cu2406", "SHFE.au2406", "SHFE.ag2406",
	"DCE.i2405", "DCE.p2405", "CZCE.SR405", "CZCE.TA405", "CFFEX.IF2406", "CFFEX.IC2406", "INE.sc2406", "DCE.y2405"}

// seedStartBurst is what the seed's QuantWebSocket sends when a terminal
// starts: one subscribe per symbol and channel, all at once (14 × 3 = 42).
func seedStartBurst() []byte {
	var b []byte
	n := 0
	for _, ch := range []string{"market_data", "depth", "kline_1m"} {
		for _, sym := range seedSymbols {
			n++
			req, _ := json.Marshal(map[string]any{"type": "subscribe", "id": n, "channel": ch, "symbols": []string{sym}})
			b = append(b, textFrame(string(req))...)
		}
	}
	return b
}

// answers reads text frames until n answers of type typ arrived (other
// frames, snapshots, are skipped) and returns every error answer seen.
func answers(t *testing.T, r *rawConn, typ string, n int) []string {
	t.Helper()
	var errs []string
	for got := 0; got < n; {
		b, err := r.text(wait)
		if err != nil {
			t.Fatalf("after %d of %d %s (errors %v): %v", got, n, typ, errs, err)
		}
		var m struct{ Type string }
		_ = json.Unmarshal(b, &m)
		switch m.Type {
		case typ:
			got++
		case "error":
			errs = append(errs, string(b))
			got++
		}
	}
	return errs
}

// TestSeedTerminalStartIsNotRateLimited is issue 20's user 2: the seed
// client subscribes one request per symbol and channel as a terminal
// starts, 42 requests at once, and was closed with 4029 after 29 of them.
// Requests are budgeted by work now, and the start fits the burst.
func TestSeedTerminalStartIsNotRateLimited(t *testing.T) {
	ts := newTestServer(t, nil)
	if err := ts.market.AddSymbols(seedSymbols); err != nil {
		t.Fatal(err)
	}
	r := ts.authedRaw("seed")
	r.mustWrite(seedStartBurst())
	if errs := answers(t, r, "subscribe_response", 42); len(errs) > 0 {
		t.Fatalf("the seed terminal's start got %d errors: %v", len(errs), errs)
	}
	r.mustWrite(textFrame(`{"type":"ping","id":"after"}`))
	if b, err := r.text(wait); err != nil || !strings.Contains(string(b), `"after"`) {
		t.Fatalf("after the start: %s, %v", b, err)
	}
}

// TestRequestFloodsAreStillClosed: what the work budget lets through is a
// terminal's start, not a flood. A thousand one-topic subscribes (round
// 1's R7) and five thousand JSON pings (R4) are each closed with 4029 after
// the burst and rate_strikes refusals. The clock is stopped: on a busy
// machine a flood read over a wall-clock second earned refills, and with
// them more refusals before the close (a refusal after an answered request
// starts the strikes again).
func TestRequestFloodsAreStillClosed(t *testing.T) {
	ts := newTestServerWith(t, nil, withClock(newFakeClock()))
	var syms []string
	for i := range 1100 {
		syms = append(syms, fmt.Sprintf("X.s%d", i))
	}
	if err := ts.market.AddSymbols(syms); err != nil {
		t.Fatal(err)
	}
	floods := map[string][]byte{}
	var subs, pings []byte
	for i, sym := range syms[:1025] {
		subs = append(subs, textFrame(fmt.Sprintf(`{"type":"subscribe","id":%d,"channel":"depth","symbols":[%q]}`, i, sym))...)
	}
	for i := range 5000 {
		pings = append(pings, textFrame(fmt.Sprintf(`{"type":"ping","id":%d}`, i))...)
	}
	floods["subscribes"], floods["pings"] = subs, pings
	for name, flood := range floods {
		t.Run(name, func(t *testing.T) {
			r := ts.authedRaw("flood-" + name)
			go func() { _ = r.write(flood) }()
			limited, ok := 0, 0
			for {
				b, err := r.text(wait)
				if err != nil {
					if !strings.Contains(err.Error(), "closed: 0f bd") { // 4029
						t.Fatalf("after %d answers and %d RATE_LIMITED: %v; want close 4029", ok, limited, err)
					}
					break
				}
				if strings.Contains(string(b), `"RATE_LIMITED"`) {
					limited++
				} else if strings.Contains(string(b), `_response"`) || strings.Contains(string(b), `"pong"`) {
					ok++
				}
			}
			burst := ts.cfg.Limits.RateBurst
			if ok < burst || ok > burst+20 || limited != ts.cfg.Limits.RateStrikes {
				t.Fatalf("%d answered, %d RATE_LIMITED before 4029; want about the burst (%d) and %d", ok, limited, burst, ts.cfg.Limits.RateStrikes)
			}
		})
	}
}

// TestSubscribeCostsTheTopicsItAdds: with the clock stopped, a burst of 50
// units pays for the seed's 42 one-topic subscribes; a 14-topic subscribe
// then costs 14 and is refused with an answer that says so, while a ping
// (one unit) still passes, and a subscribe of topics already held costs
// one.
func TestSubscribeCostsTheTopicsItAdds(t *testing.T) {
	clock := newFakeClock()
	ts := newTestServerWith(t, func(c *configs.Config) { c.Limits.RateBurst = 50 }, withClock(clock))
	if err := ts.market.AddSymbols(seedSymbols); err != nil {
		t.Fatal(err)
	}
	r := ts.authedRaw("work")
	r.mustWrite(seedStartBurst())
	if errs := answers(t, r, "subscribe_response", 42); len(errs) > 0 {
		t.Fatalf("42 units of a 50-unit burst: %v", errs)
	}
	all, _ := json.Marshal(seedSymbols)
	r.mustWrite(textFrame(`{"type":"subscribe","id":"big","channel":"kline_5m","symbols":` + string(all) + `}`))
	errs := answers(t, r, "subscribe_response", 1)
	if len(errs) != 1 || !strings.Contains(errs[0], `"RATE_LIMITED"`) || !strings.Contains(errs[0], "adds 14 topics") {
		t.Fatalf("a 14-topic subscribe with 7 units left: %v; want RATE_LIMITED naming its 14 topics", errs)
	}
	r.mustWrite(textFrame(`{"type":"subscribe","id":"again","channel":"depth","symbols":` + string(all) + `}`))
	if errs := answers(t, r, "subscribe_response", 1); len(errs) > 0 {
		t.Fatalf("re-subscribing held topics costs one unit: %v", errs)
	}
	clock.Add(3 * 60e9) // three minutes refill 15 units at the default rate... and more
	r.mustWrite(textFrame(`{"type":"subscribe","id":"later","channel":"kline_5m","symbols":` + string(all) + `}`))
	if errs := answers(t, r, "subscribe_response", 1); len(errs) > 0 {
		t.Fatalf("after the refill: %v", errs)
	}
}
