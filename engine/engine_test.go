package engine_test

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/engine/frame"
)

// peer is the client end of a net.Pipe: the subscriber's writes block until
// the test reads, which makes a stalled reader exact.
type peer struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func newPair(t *testing.T, h *engine.Hub, deflate bool) (*engine.Subscriber, *peer) {
	t.Helper()
	server, client := net.Pipe()
	t.Cleanup(func() { server.Close(); client.Close() })
	return h.NewSubscriber(server, deflate), &peer{t: t, c: client, br: bufio.NewReader(client)}
}

type envelope struct {
	Type     string          `json:"type"`
	Channel  string          `json:"channel"`
	Symbol   string          `json:"symbol"`
	Sequence uint64          `json:"sequence"`
	Snapshot bool            `json:"snapshot"`
	Data     json.RawMessage `json:"data"`
}

// read returns the next frame's opcode byte and payload.
func (p *peer) read() (byte, []byte) {
	p.t.Helper()
	_ = p.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var h [2]byte
	if _, err := io.ReadFull(p.br, h[:]); err != nil {
		p.t.Fatalf("read header: %v", err)
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		_, _ = io.ReadFull(p.br, b[:])
		n = int(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		_, _ = io.ReadFull(p.br, b[:])
		n = int(binary.BigEndian.Uint64(b[:]))
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(p.br, payload); err != nil {
		p.t.Fatalf("read payload: %v", err)
	}
	if h[0]&0x40 != 0 {
		var err error
		if payload, err = frame.Inflate(payload); err != nil {
			p.t.Fatalf("inflate: %v", err)
		}
	}
	return h[0], payload
}

func (p *peer) env() envelope {
	p.t.Helper()
	_, b := p.read()
	var e envelope
	if err := json.Unmarshal(b, &e); err != nil {
		p.t.Fatalf("frame %q: %v", b, err)
	}
	return e
}

func tick(sym string, n int) engine.Message {
	return engine.Message{Topic: "tick:" + sym, Mode: engine.Conflated, Type: "market_data", Channel: "tick",
		Symbol: sym, Data: []byte(fmt.Sprintf(`{"last_price":"%d.0","volume":"%d"}`, n, n))}
}

func bar(n int, closed bool) engine.Message {
	return engine.Message{Topic: "kline_1m:X", Mode: engine.Conflated, Type: "kline", Channel: "kline_1m",
		Symbol: "X", Data: []byte(fmt.Sprintf(`{"close":"%d","closed":%v}`, n, closed)), Final: closed}
}

func publish(t *testing.T, h *engine.Hub, m engine.Message) engine.Published {
	t.Helper()
	p, err := h.Publish(m)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConflationKeepsLatestPerTopic(t *testing.T) {
	h := engine.NewHub(engine.Config{})
	s, p := newPair(t, h, false)
	for _, sym := range []string{"A", "B"} {
		if _, err := h.Subscribe(s, "tick:"+sym, engine.Conflated, nil, engine.SubscribeOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	publish(t, h, tick("A", 1)) // the flusher takes this one and blocks on the pipe
	time.Sleep(20 * time.Millisecond)
	for i := 2; i <= 100; i++ {
		publish(t, h, tick("A", i))
		publish(t, h, tick("B", i))
	}
	if frames, _ := s.Pending(); frames != 2 {
		t.Fatalf("%d frames pending; want one per topic", frames)
	}
	got := []envelope{p.env(), p.env(), p.env()}
	if got[0].Sequence != 1 || got[1].Symbol != "A" || got[1].Sequence != 100 || got[2].Symbol != "B" || got[2].Sequence != 99 {
		t.Fatalf("got %+v; want A1, then A100 and B99 (latest of each)", got)
	}
	for deadline := time.Now().Add(5 * time.Second); h.Stats().Conflated == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) { // counted when the batch is flushed
			t.Fatal("conflations not counted")
		}
	}
}

func TestClosedBarNeverConflatedAway(t *testing.T) {
	h := engine.NewHub(engine.Config{})
	s, p := newPair(t, h, false)
	if _, err := h.Subscribe(s, "kline_1m:X", engine.Conflated, nil, engine.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	publish(t, h, bar(1, false)) // in flight
	time.Sleep(20 * time.Millisecond)
	publish(t, h, bar(2, false))
	publish(t, h, bar(3, true)) // replaces the forming update of its bar
	publish(t, h, bar(4, false))
	publish(t, h, bar(5, false)) // conflates with 4, not with the closed 3
	var seqs []uint64
	for range 3 {
		seqs = append(seqs, p.env().Sequence)
	}
	if fmt.Sprint(seqs) != "[1 3 5]" {
		t.Fatalf("got sequences %v; want [1 3 5]", seqs)
	}
}

func TestReliableOverflowClosesWith4008(t *testing.T) {
	h := engine.NewHub(engine.Config{MaxPendingBytes: 4096, WriteTimeout: 200 * time.Millisecond})
	s, p := newPair(t, h, false)
	if _, err := h.Subscribe(s, "orders:1", engine.Reliable, nil, engine.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	pad := make([]byte, 500)
	for i := range pad {
		pad[i] = 'x'
	}
	for i := 0; i < 20; i++ {
		publish(t, h, engine.Message{Topic: "orders:1", Mode: engine.Reliable, Type: "order_update", Channel: "orders",
			Data: []byte(fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, pad))})
		if i == 0 {
			time.Sleep(20 * time.Millisecond) // let the flusher take the first and block on the pipe
		}
	}
	if s.CloseCode() != engine.CloseSlowConsumer || h.Stats().SlowConsumers != 1 {
		t.Fatalf("close code %d; want 4008", s.CloseCode())
	}
	if frames, _ := s.Pending(); frames > 1 {
		t.Fatalf("%d frames still queued after overflow; want the backlog dropped", frames)
	}
	// The peer reads the frame in flight, then the close frame.
	if e := p.env(); e.Sequence != 1 {
		t.Fatalf("got %+v", e)
	}
	op, payload := p.read()
	if op != 0x88 || binary.BigEndian.Uint16(payload) != 4008 {
		t.Fatalf("got opcode %#x payload %q; want close 4008", op, payload)
	}
}

func TestSnapshotAndResume(t *testing.T) {
	h := engine.NewHub(engine.Config{HistorySize: 4})
	for i := 1; i <= 6; i++ {
		publish(t, h, engine.Message{Topic: "orders:1", Mode: engine.Reliable, Type: "order_update", Channel: "orders",
			Data: []byte(fmt.Sprintf(`{"n":%d}`, i))})
	}
	f := func(since uint64, wantRecovered bool, want ...uint64) {
		t.Helper()
		s, p := newPair(t, h, false)
		var recovered *bool
		_, err := h.Subscribe(s, "orders:1", engine.Reliable, nil, engine.SubscribeOptions{Since: &since,
			Ready: func(r bool) { recovered = &r }})
		if err != nil {
			t.Fatal(err)
		}
		if recovered == nil || *recovered != wantRecovered {
			t.Fatalf("since %d: recovered %v; want %v", since, recovered, wantRecovered)
		}
		for _, w := range want {
			if e := p.env(); e.Sequence != w || e.Snapshot {
				t.Fatalf("since %d: got %+v; want sequence %d", since, e, w)
			}
		}
		if frames, _ := s.Pending(); frames != 0 && len(want) == 0 {
			t.Fatalf("since %d: %d frames queued; want none", since, frames)
		}
	}
	f(6, true)
	f(4, true, 5, 6)
	f(2, true, 3, 4, 5, 6) // history holds 3..6
	f(1, false)            // 2 is gone
	f(9, false)            // beyond the topic: a reset
	if _, err := h.Subscribe(nil, "orders:1", engine.Conflated, nil, engine.SubscribeOptions{}); err != engine.ErrModeMismatch {
		t.Fatalf("mode mismatch: got %v", err)
	}
}

func TestFramesSharedAcrossSubscribers(t *testing.T) {
	h := engine.NewHub(engine.Config{DeflateThreshold: 16})
	publish(t, h, tick("A", 1))
	ev := h.Last("tick:A")
	plain1 := ev.Frame(nil, false, false)
	plain2 := ev.Frame(nil, false, false)
	if &plain1[0] != &plain2[0] {
		t.Fatal("the same variant was encoded twice")
	}
	z := ev.Frame(nil, true, false)
	if z[0]&0x40 == 0 {
		t.Fatal("deflate variant not compressed")
	}
	proj := frame.Intern([]string{"volume"})
	if pf := ev.Frame(proj, false, false); string(pf[2:]) == string(plain1[2:]) {
		t.Fatal("projection ignored")
	}
	st := h.Stats()
	if st.Published != 1 {
		t.Fatalf("published %d", st.Published)
	}
	// Subscribers with the same variant receive the same bytes over the wire.
	sa, pa := newPair(t, h, true)
	sb, pb := newPair(t, h, true)
	for _, s := range []*engine.Subscriber{sa, sb} {
		if _, err := h.Subscribe(s, "tick:A", engine.Conflated, nil, engine.SubscribeOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	publish(t, h, tick("A", 2))
	_, a := pa.read()
	_, b := pb.read()
	if string(a) != string(b) {
		t.Fatalf("peers got different bytes: %q vs %q", a, b)
	}
}

func TestUnsubscribeStopsDelivery(t *testing.T) {
	h := engine.NewHub(engine.Config{})
	s, p := newPair(t, h, false)
	sub, _ := h.Subscribe(s, "tick:A", engine.Conflated, nil, engine.SubscribeOptions{})
	_, _ = h.Subscribe(s, "tick:B", engine.Conflated, nil, engine.SubscribeOptions{})
	h.Unsubscribe(sub)
	h.Unsubscribe(sub) // twice is harmless
	publish(t, h, tick("A", 1))
	publish(t, h, tick("B", 1))
	if e := p.env(); e.Symbol != "B" {
		t.Fatalf("got %+v after unsubscribing A", e)
	}
	if _, err := h.Publish(engine.Message{}); err != engine.ErrMissingTopic {
		t.Fatalf("got %v; want ErrMissingTopic", err)
	}
}

func TestSweepForgetsIdleReliableTopics(t *testing.T) {
	h := engine.NewHub(engine.Config{HistoryTTL: time.Minute})
	publish(t, h, engine.Message{Topic: "orders:gone", Mode: engine.Reliable, Type: "order_update", Channel: "orders", Data: []byte(`{}`)})
	publish(t, h, engine.Message{Topic: "orders:watched", Mode: engine.Reliable, Type: "order_update", Channel: "orders", Data: []byte(`{}`)})
	publish(t, h, tick("A", 1))
	s, _ := newPair(t, h, false)
	if _, err := h.Subscribe(s, "orders:watched", engine.Reliable, nil, engine.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := h.Sweep(time.Now()); n != 0 {
		t.Fatalf("swept %d topics with fresh history", n)
	}
	if n := h.Sweep(time.Now().Add(2 * time.Minute)); n != 1 {
		t.Fatalf("swept %d; want only the idle, unsubscribed topic", n)
	}
	if h.Last("orders:gone") != nil || h.Last("orders:watched") == nil || h.Last("tick:A") == nil {
		t.Fatal("swept the wrong topics")
	}
	// A forgotten topic starts again: a resume from its old sequence is not recovered.
	p := publish(t, h, engine.Message{Topic: "orders:gone", Mode: engine.Reliable, Type: "order_update", Channel: "orders", Data: []byte(`{}`)})
	if p.Sequence != 1 {
		t.Fatalf("sequence %d after sweep; want 1", p.Sequence)
	}
}
