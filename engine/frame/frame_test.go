package frame

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestSealHeaderLengths(t *testing.T) {
	f := func(n int, wantHeader []byte) {
		t.Helper()
		fr := Text(bytes.Repeat([]byte("a"), n))
		if !bytes.HasPrefix(fr, wantHeader) || len(fr) != len(wantHeader)+n {
			t.Fatalf("payload %d: header % x, len %d; want % x", n, fr[:len(wantHeader)], len(fr), wantHeader)
		}
	}
	f(0, []byte{0x81, 0})
	f(125, []byte{0x81, 125})
	f(126, []byte{0x81, 126, 0, 126})
	f(65535, []byte{0x81, 126, 0xff, 0xff})
	f(65536, []byte{0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0})
}

func TestDeflateRoundTrip(t *testing.T) {
	payload := []byte(strings.Repeat(`{"last_price":"4000.0","volume":"1000"}`, 40))
	fr := Deflated(payload)
	if fr[0] != 0xC1 {
		t.Fatalf("first byte %#x; want FIN|RSV1|text", fr[0])
	}
	body := fr[2:]
	if fr[1] == 126 {
		body = fr[4:]
	}
	if len(body) >= len(payload)/4 {
		t.Fatalf("compressed %d bytes from %d", len(body), len(payload))
	}
	if bytes.HasSuffix(body, []byte{0, 0, 0xff, 0xff}) {
		t.Fatal("sync-flush tail not stripped (RFC 7692 7.2.1)")
	}
	got, err := Inflate(body)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("inflate: %v, equal=%v", err, bytes.Equal(got, payload))
	}
}

func TestCloseAndControlFrames(t *testing.T) {
	c := Close(4008, "slow consumer")
	if !bytes.Equal(c[:4], []byte{0x88, 15, 0x0f, 0xa8}) || string(c[4:]) != "slow consumer" {
		t.Fatalf("close frame % x", c)
	}
	if long := Close(1000, strings.Repeat("x", 300)); len(long) != 2+125 {
		t.Fatalf("close frame of %d bytes; control frames carry at most 125", len(long))
	}
	if p := Pong([]byte("hi")); !bytes.Equal(p, []byte{0x8A, 2, 'h', 'i'}) {
		t.Fatalf("pong % x", p)
	}
}

func TestEnvelope(t *testing.T) {
	ts := time.Date(2023, 12, 1, 10, 30, 0, 123e6, time.FixedZone("CST", 8*3600))
	e := &Envelope{Type: "market_data", Channel: "tick", Symbol: "SHFE.rb2405", Timestamp: ts, Sequence: 12345}
	got := string(AppendEnvelope(nil, e, []byte(`{"last_price":"4000.0"}`), false))
	want := `{"type":"market_data","channel":"tick","symbol":"SHFE.rb2405","data":{"last_price":"4000.0"},"timestamp":"2023-12-01T02:30:00.123Z","sequence":12345}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	snap := AppendEnvelope(nil, &Envelope{Type: "x", Channel: "y", StrategyID: "S\"1"}, nil, true)
	var v map[string]any
	if err := json.Unmarshal(snap, &v); err != nil || v["snapshot"] != true || v["strategy_id"] != `S"1` || v["data"] != nil {
		t.Fatalf("snapshot envelope %s: %v", snap, err)
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"plain", `q"uote\back`, "tab\tnl\nctl\x01", "中文", "bad\xffutf8"} {
		b := AppendString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%q encoded as %s: %v", s, b, err)
		}
		if s != "bad\xffutf8" && back != s {
			t.Fatalf("round trip %q -> %s -> %q", s, b, back)
		}
	}
}

func TestProject(t *testing.T) {
	obj := []byte(`{"last_price":"4000.0", "bid_price":"3999.0","nested":{"a":[1,"}"]},"volume":"10","s":"a\"b"}`)
	f := func(keys []string, want string) {
		t.Helper()
		if got := string(Project(obj, Intern(keys))); got != want {
			t.Fatalf("keys %v: got %s; want %s", keys, got, want)
		}
	}
	f([]string{"volume", "last_price"}, `{"last_price":"4000.0","volume":"10"}`)
	f([]string{"nested"}, `{"nested":{"a":[1,"}"]}}`)
	f([]string{"s"}, `{"s":"a\"b"}`)
	f([]string{"absent"}, `{}`)
	if Project(obj, nil) == nil || string(Project(obj, nil)) != string(obj) {
		t.Fatal("nil projection must return the object")
	}
	if a, b := Intern([]string{"b", "a", "a"}), Intern([]string{"a", "b"}); a != b || len(a.Keys) != 2 {
		t.Fatal("equal key sets must intern to one projection")
	}
}
