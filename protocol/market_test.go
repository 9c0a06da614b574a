package protocol

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// fixedRules pins the server's clock: 2026-11-25 21:01:40 in Shanghai, a
// Wednesday night session.
func fixedRules(zone *time.Location) *Rules {
	now := time.Date(2026, 11, 25, 21, 1, 40, 0, ChinaTime)
	return &Rules{Zone: zone, Now: func() time.Time { return now }, MaxAhead: 10 * time.Second}
}

func validateTick(t *testing.T, r *Rules, data string) (*Publication, error) {
	t.Helper()
	return ValidateWith(&Item{Channel: "tick", Symbol: "DCE.m2701", Data: []byte(data)}, 1<<16, r)
}

func reasonOf(err error) string {
	var inv *InvalidData
	if errors.As(err, &inv) {
		return inv.Reason()
	}
	return ""
}

// TestZonelessTimes: a time without a zone is read in the rules' zone,
// exchange time for a collector (CTP's UpdateTime as it is), UTC for the
// seed's back end (datetime.utcnow().isoformat()), and goes out in UTC:
// nothing is shifted by a zone nobody chose.
func TestZonelessTimes(t *testing.T) {
	for _, c := range []struct {
		zone      *time.Location
		in, want  string
		zoneless  bool
		corrected bool
	}{
		{ChinaTime, "2026-11-25 21:01:30.500", "2026-11-25T13:01:30.500Z", true, false},
		{ChinaTime, "2026-11-25T21:01:30", "2026-11-25T13:01:30.000Z", true, false},
		{ChinaTime, "20261125 21:01:30.5", "2026-11-25T13:01:30.500Z", true, false},
		{time.UTC, "2026-11-25T13:01:30.123456", "2026-11-25T13:01:30.123Z", true, false}, // Python's isoformat()
		{time.UTC, "2026-11-25T21:01:30.5+08:00", "2026-11-25T13:01:30.500Z", false, false},
		{ChinaTime, "2026-11-25T13:01:30.5Z", "2026-11-25T13:01:30.500Z", false, false},
		// DCE's night session: CTP's ActionDay is the trading day, the
		// next weekday; the time takes the date that puts it at now.
		{ChinaTime, "2026-11-26 21:01:30.000", "2026-11-25T13:01:30.000Z", true, true},
	} {
		p, err := validateTick(t, fixedRules(c.zone), `{"last_price":"2900","update_time":"`+c.in+`"}`)
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if want := `{"last_price":"2900","update_time":"` + c.want + `"}`; string(p.Data) != want {
			t.Errorf("%s (zone %s): %s; want %s", c.in, c.zone, p.Data, want)
		}
		if got := p.Quote.Has&Zoneless != 0; got != c.zoneless {
			t.Errorf("%s: zoneless %v", c.in, got)
		}
		if got := p.Quote.Has&TimeCorrected != 0; got != c.corrected {
			t.Errorf("%s: corrected %v", c.in, got)
		}
	}
	// A Friday night's ticks dated Monday are corrected too, by 3 days.
	fri := time.Date(2026, 11, 27, 22, 0, 0, 0, ChinaTime)
	r := &Rules{Zone: ChinaTime, Now: func() time.Time { return fri }}
	if p, err := validateTick(t, r, `{"last_price":"2900","update_time":"2026-11-30 21:59:59.500"}`); err != nil ||
		!strings.Contains(string(p.Data), "2026-11-27T13:59:59.500Z") {
		t.Fatalf("Friday night dated Monday: %v %s", err, p.Data)
	}
}

// TestTimeAhead: a quote stamped beyond feed.max_time_ahead is refused
// (reason ahead); the day session's times are never date-corrected.
func TestTimeAhead(t *testing.T) {
	r := fixedRules(ChinaTime)
	if _, err := validateTick(t, r, `{"last_price":"1","update_time":"2026-11-25 21:01:49.000"}`); err != nil {
		t.Fatalf("9 s ahead: %v", err)
	}
	for _, ts := range []string{"2026-11-25 21:01:51.000", "2026-11-25 21:05:40.000", "2026-11-26 10:00:00.000", "2026-11-30 21:01:30.000"} {
		_, err := validateTick(t, r, `{"last_price":"1","update_time":"`+ts+`"}`)
		if reasonOf(err) != "ahead" || !strings.Contains(err.Error(), "feed.max_time_ahead") {
			t.Errorf("%s: %v; want reason ahead", ts, err)
		}
	}
	// Books too.
	_, err := ValidateWith(&Item{Channel: "depth", Symbol: "X.a", Data: []byte(`{"bids":[],"update_time":"2026-11-25T14:00:00Z"}`)}, 1<<16, r)
	if reasonOf(err) != "ahead" {
		t.Fatalf("book ahead: %v", err)
	}
}

// TestCTPValues: DBL_MAX means no value; a turnover with more decimals than
// kept is rounded, never zeroed, and the tick and its Quote agree.
func TestCTPValues(t *testing.T) {
	p, err := validateTick(t, nil, `{"last_price":2900.0,"ask_price":1.7976931348623157e+308,"ask_volume":0,`+
		`"bid_price":"2899.0","turnover":"4421100.5000000001","volume":1000,"upper_limit":1.7976931348623157E308}`)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"last_price":"2900.0","bid_price":"2899.0","ask_volume":"0","volume":"1000","turnover":"4421100.5"}`; string(p.Data) != want {
		t.Fatalf("got  %s\nwant %s", p.Data, want)
	}
	if q := p.Quote; q.Turnover.String() != "4421100.5" || q.Volume.String() != "1000" || q.Price.String() != "2900.0" ||
		q.Has&(HasVolume|HasTurnover) != HasVolume|HasTurnover {
		t.Fatalf("quote %+v", q)
	}
	if _, err := validateTick(t, nil, `{"last_price":1.7976931348623157e+308}`); reasonOf(err) != "missing" {
		t.Fatalf("no last price: %v", err)
	}
	if _, err := validateTick(t, nil, `{"last_price":1e301,"volume":1e30}`); reasonOf(err) != "type" {
		t.Fatalf("a volume of 1e30: %v", err)
	}
	// A book's empty level (DBL_MAX) is left out.
	p, err = ValidateWith(&Item{Channel: "depth", Symbol: "X.a", Data: []byte(`{"bids":[[2899,5]],"asks":[[1.7976931348623157e+308,0]]}`)}, 1<<16, nil)
	if err != nil || string(p.Data) != `{"bids":[["2899","5"]],"asks":[],"levels":1}` {
		t.Fatalf("empty ask: %v %s", err, p.Data)
	}
}

// TestTickText: what a collector may write, and what is refused.
func TestTickText(t *testing.T) {
	p, err := validateTick(t, nil, " {\n \"seq\" : [1, {\"a\" : \"x y\"}], \"last_price\":\"1.0\", \"b\\u00e9\":null, \"z\": \"\u4e2d\" } ")
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"last_price":"1.0","b\u00e9":null,"seq":[1,{"a":"x y"}],"z":"` + "\u4e2d" + `"}`; string(p.Data) != want {
		t.Fatalf("got  %s\nwant %s", p.Data, want)
	}
	if p.Quote.Known != len(`{"last_price":"1.0"`) {
		t.Fatalf("known prefix %d", p.Quote.Known)
	}
	for in, reason := range map[string]string{
		`{"last_price":"1","last_price":"2"}`: "json",
		`{"last_price":"1","x":1,"x":2}`:      "json",
		`{"last_price":"1","update_time":"2026-11-25T13:00:00Z","timestamp":"2026-11-25T13:00:00Z"}`: "unknown_field",
		`{"last_price":"1","x":"` + "\xff" + `"}`:                                                    "json",
		`{"last_price":"1","x":"a` + "\n" + `"}`:                                                     "json",
		`{"last_price":"1"} x`:                                                                       "json",
		`{"last_price":"1",}`:                                                                        "json",
		`{"last_price":"1","x":[1,]}`:                                                                "json",
		`{"last_price":"1","x":01}`:                                                                  "json",
		`{"last_price":"1","x":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`:           "json",
		`{"last_price":"1\u0030"}`:                                                                   "type",
		`{"last_price":null}`:                                                                        "type",
		`{"last_price":"1","update_time":"2026-02-30T00:00:00Z"}`:                                    "time",
		`{"last_price":"1","update_time":"2026-11-25T24:00:00Z"}`:                                    "time",
		`{"last_price":"1","update_time":20261125}`:                                                  "type",
	} {
		if _, err := validateTick(t, nil, in); reasonOf(err) != reason {
			t.Errorf("%s: %v; want reason %s", in, err, reason)
		}
	}
}

// TestBarShape: a feed's own bars may carry open interest and a trading
// day, normalized like the builder's.
func TestBarShape(t *testing.T) {
	in := `{"closed":true,"trading_day":"20261126","open_interest":12345,"open":1,"high":2,"low":0.5,"close":1.5,"volume":10,` +
		`"turnover":15,"start_time":"2026-11-25T13:00:00Z","end_time":"2026-11-25T13:01:00Z"}`
	p, err := Validate(&Item{Channel: "kline_1m", Symbol: "X.a1", Data: []byte(in)}, 1024)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"open":"1","high":"2","low":"0.5","close":"1.5","volume":"10","turnover":"15","open_interest":"12345",` +
		`"start_time":"2026-11-25T13:00:00.000Z","end_time":"2026-11-25T13:01:00.000Z","trading_day":"2026-11-26","closed":true}`
	if string(p.Data) != want || !p.Final || !p.Time.Equal(time.Date(2026, 11, 25, 13, 0, 0, 0, time.UTC)) {
		t.Fatalf("got  %s\nwant %s", p.Data, want)
	}
	if _, err := Validate(&Item{Channel: "kline_1m", Symbol: "X.a1", Data: []byte(strings.Replace(in, "20261126", "2026-13-01", 1))}, 1024); reasonOf(err) != "type" {
		t.Fatalf("a bad trading day: %v", err)
	}
}

// A full CTP-like tick as a collector sends it: 18 known keys, numbers as
// JSON numbers, an exchange time with its zone, and two keys of its own.
var benchTick = []byte(`{"last_price":3999.0,"bid_price":3998.0,"ask_price":3999.0,"bid_volume":12,"ask_volume":31,` +
	`"volume":186502,"turnover":7458321450.0,"open_interest":1850233,"change":-12.0,"change_percent":-0.30,` +
	`"update_time":"2026-11-25T21:01:30.500+08:00","open":4011.0,"high":4020.0,"low":3990.0,"pre_settlement":4011.0,` +
	`"upper_limit":4291.0,"lower_limit":3730.0,"average_price":3999.12,"trading_day":"20261126","exchange_seq":918273}`)

// maxValidateAllocs is the allocation ceiling of validating one tick
// (issue 18: at most 5; today the publication and its data).
const maxValidateAllocs = 5

// TestValidateAllocations fails when validating a tick allocates more than
// the ceiling: validation runs on every tick a node ingests.
func TestValidateAllocations(t *testing.T) {
	r := fixedRules(ChinaTime)
	it := &Item{Channel: "tick", Symbol: "SHFE.rb2701", Data: benchTick}
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := ValidateWith(it, 1<<16, r); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > maxValidateAllocs {
		t.Fatalf("validating a tick allocates %v times; the ceiling is %d", allocs, maxValidateAllocs)
	}
}

// BenchmarkValidateTick is issue 18's validation figure: at most 3 µs and
// 5 allocations per tick.
func BenchmarkValidateTick(b *testing.B) {
	r := fixedRules(ChinaTime)
	it := &Item{Channel: "tick", Symbol: "SHFE.rb2701", Data: benchTick}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchTick)))
	for b.Loop() {
		if _, err := ValidateWith(it, 1<<16, r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidateDepth(b *testing.B) {
	data := []byte(`{"bids":[[3998.0,12],[3997.0,40],[3996.0,22],[3995.0,8],[3994.0,61]],` +
		`"asks":[[3999.0,31],[4000.0,17],[4001.0,90],[4002.0,5],[4003.0,44]],"update_time":"2026-11-25T21:01:30.500+08:00"}`)
	r := fixedRules(ChinaTime)
	it := &Item{Channel: "depth", Symbol: "SHFE.rb2701", Data: data}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ValidateWith(it, 1<<16, r); err != nil {
			b.Fatal(err)
		}
	}
}

// TestNumberGrammar: a number anywhere in a tick is read by the JSON
// grammar, as encoding/json reads it: no leading zeros, digits after a point
// and an exponent.
func TestNumberGrammar(t *testing.T) {
	for _, num := range []string{"0", "-0", "12", "-12", "1.5", "0.25", "1e9", "1E+9", "2.5e-3", "01", "-", "1.", ".5",
		"1e", "1e+", "-a", "1.e3", "00", "1.5.5"} {
		data := `{"last_price":"1.0","other":` + num + `}`
		_, err := Validate(&Item{Channel: "tick", Symbol: "SHFE.rb2405", Data: []byte(data)}, 4096)
		if want := json.Valid([]byte(data)); (err == nil) != want {
			t.Errorf("%s: accepted %v, encoding/json says valid %v (%v)", num, err == nil, want, err)
		}
	}
}
