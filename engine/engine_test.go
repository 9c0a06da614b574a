package engine_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/engine/frame"
	"github.com/marketcast/marketcast/internal/testwait"
	"github.com/marketcast/marketcast/protocol"
)

// peer is the client end of a net.Pipe: the subscriber's writes block until
// the test reads, which makes a stalled reader exact.
type peer struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

// newHub returns a hub on a memory broker with the production defaults,
// changed by tune.
func newHub(t *testing.T, tune func(*engine.Config, *engine.HistoryLimits)) (*engine.Hub, *engine.MemoryBroker) {
	t.Helper()
	def := configs.Default()
	cfg, limits := def.Engine(), def.HistoryLimits()
	if tune != nil {
		tune(&cfg, &limits)
	}
	b := engine.NewMemoryBroker(limits)
	return engine.NewHub(cfg, b), b
}

func newPair(t *testing.T, h *engine.Hub, deflate bool) (*engine.Outbox, *peer) {
	t.Helper()
	server, client := net.Pipe()
	t.Cleanup(func() { server.Close(); client.Close() })
	return h.NewOutbox(server, deflate), &peer{t: t, c: client, br: bufio.NewReader(client)}
}

// subscribe subscribes and starts at once (no answer to queue in between).
func subscribe(t *testing.T, h *engine.Hub, o *engine.Outbox, key string, mode engine.Mode, opts engine.SubscribeOptions) (*engine.Subscription, engine.Resume) {
	t.Helper()
	sub, r, err := h.Subscribe(context.Background(), o, key, mode, opts)
	if err != nil {
		t.Fatal(err)
	}
	h.Start(sub)
	return sub, r
}

type envelope struct {
	Type     string          `json:"type"`
	Channel  string          `json:"channel"`
	Symbol   string          `json:"symbol"`
	Sequence uint64          `json:"sequence"`
	Epoch    string          `json:"epoch"`
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

func order(user string, n int) engine.Message {
	return engine.Message{Topic: "orders:" + user, Mode: engine.Reliable, Type: "order_update", Channel: "orders",
		Data: []byte(fmt.Sprintf(`{"n":%d}`, n))}
}

// flusherTook waits until o's flusher has taken everything queued (and,
// on a pipe nobody reads, blocks writing it).
func flusherTook(t *testing.T, o *engine.Outbox) {
	t.Helper()
	testwait.For(t, "the flusher to take the queue", func() bool { frames, _ := o.Pending(); return frames == 0 })
}

func publish(t *testing.T, h *engine.Hub, m engine.Message) *engine.Event {
	t.Helper()
	ev, err := h.Publish(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestConflationKeepsLatestPerTopic(t *testing.T) {
	h, _ := newHub(t, func(c *engine.Config, _ *engine.HistoryLimits) { c.FlushDelay = 0 })
	s, p := newPair(t, h, false)
	for _, sym := range []string{"A", "B"} {
		subscribe(t, h, s, "tick:"+sym, engine.Conflated, engine.SubscribeOptions{})
	}
	publish(t, h, tick("A", 1)) // the flusher takes this one and blocks on the pipe
	flusherTook(t, s)
	for i := 2; i <= 100; i++ {
		publish(t, h, tick("A", i))
		publish(t, h, tick("B", i))
	}
	if frames, bytes := s.Pending(); frames != 2 || bytes != 0 {
		t.Fatalf("%d frames (%d counted bytes) pending; want one per topic, none counted against the budget", frames, bytes)
	}
	got := []envelope{p.env(), p.env(), p.env()}
	if got[0].Sequence != 1 || got[1].Symbol != "A" || got[1].Sequence != 100 || got[2].Symbol != "B" || got[2].Sequence != 99 {
		t.Fatalf("got %+v; want A1, then A100 and B99 (latest of each)", got)
	}
	testwait.For(t, "conflations counted (when the batch is flushed)", func() bool { return h.Stats().Conflated > 0 })
}

func TestClosedBarNeverConflatedAway(t *testing.T) {
	h, _ := newHub(t, func(c *engine.Config, _ *engine.HistoryLimits) { c.FlushDelay = 0 })
	s, p := newPair(t, h, false)
	subscribe(t, h, s, "kline_1m:X", engine.Conflated, engine.SubscribeOptions{})
	publish(t, h, bar(1, false)) // in flight
	flusherTook(t, s)
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

// TestMarketDataNeverTrips4008 fills a stalled connection with large books
// and a pending snapshot: conflatable frames never count against the
// budget, so the connection stays open however big they are.
func TestMarketDataNeverTrips4008(t *testing.T) {
	h, _ := newHub(t, func(c *engine.Config, _ *engine.HistoryLimits) { c.MaxPendingBytes = 4096; c.FlushDelay = 0 })
	s, p := newPair(t, h, false)
	big := engine.Message{Topic: "depth:X", Mode: engine.Conflated, Type: "depth", Channel: "depth", Symbol: "X",
		Data: []byte(`{"pad":"` + strings.Repeat("x", 8000) + `"}`)}
	publish(t, h, big)
	subscribe(t, h, s, "depth:X", engine.Conflated, engine.SubscribeOptions{Snapshot: true})
	for range 50 {
		publish(t, h, big)
	}
	if code := s.CloseCode(); code != 0 {
		t.Fatalf("closed with %d by market data", code)
	}
	if e := p.env(); !e.Snapshot {
		t.Fatalf("first frame %+v; want the snapshot", e)
	}
}

func TestReliableOverflowClosesWith4008(t *testing.T) {
	h, _ := newHub(t, func(c *engine.Config, _ *engine.HistoryLimits) {
		c.MaxPendingBytes, c.WriteTimeout, c.FlushDelay = 4096, 200*time.Millisecond, 0
	})
	s, p := newPair(t, h, false)
	subscribe(t, h, s, "orders:1", engine.Reliable, engine.SubscribeOptions{})
	pad := strings.Repeat("x", 500)
	for i := 0; i < 20; i++ {
		publish(t, h, engine.Message{Topic: "orders:1", Mode: engine.Reliable, Type: "order_update", Channel: "orders",
			Data: []byte(fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, pad))})
		if i == 0 {
			flusherTook(t, s) // the flusher blocks on the pipe with the first
		}
	}
	if s.CloseCode() != protocol.CloseSlowConsumer || h.Stats().SlowConsumers != 1 {
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

// resume subscribes to orders:1 with since and epoch and returns the answer
// and the sequences replayed before the live stream.
func resume(t *testing.T, h *engine.Hub, since uint64, epoch string, n int) (engine.Resume, []uint64) {
	t.Helper()
	s, p := newPair(t, h, false)
	_, r := subscribe(t, h, s, "orders:1", engine.Reliable, engine.SubscribeOptions{Since: &since, Epoch: epoch})
	var got []uint64
	for range n {
		e := p.env()
		if e.Snapshot {
			t.Fatalf("since %d: snapshot %+v in a replay", since, e)
		}
		got = append(got, e.Sequence)
	}
	return r, got
}

func TestResumeWithEpochs(t *testing.T) {
	h, _ := newHub(t, func(_ *engine.Config, l *engine.HistoryLimits) { l.Size = 4 })
	var epoch string
	for i := 1; i <= 6; i++ {
		epoch = publish(t, h, order("1", i)).Epoch()
	}
	f := func(since uint64, ep string, wantRecovered bool, want ...uint64) {
		t.Helper()
		r, got := resume(t, h, since, ep, len(want))
		if r.Recovered != wantRecovered || r.Position != (engine.Position{Seq: 6, Epoch: epoch}) {
			t.Fatalf("since %d epoch %q: %+v; want recovered %v at 6 in %s", since, ep, r, wantRecovered, epoch)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("since %d: replayed %v; want %v", since, got, want)
		}
	}
	f(6, epoch, true)
	f(4, epoch, true, 5, 6)
	f(2, epoch, true, 3, 4, 5, 6) // history holds 3..6
	f(1, epoch, false)            // 2 is gone
	f(9, epoch, false)            // beyond the run: a reset
	f(4, "other-run", false)      // another run's position means nothing here
	f(4, "", false)               // no epoch: nothing proves 4 was seen in this run
	if _, _, err := h.Subscribe(context.Background(), nil, "orders:1", engine.Conflated, engine.SubscribeOptions{}); err != engine.ErrModeMismatch {
		t.Fatalf("mode mismatch: got %v", err)
	}
	for i := 7; i <= 8; i++ {
		publish(t, h, order("1", i))
	}
	// Every live reliable message carries its epoch.
	s, p := newPair(t, h, false)
	subscribe(t, h, s, "orders:1", engine.Reliable, engine.SubscribeOptions{})
	publish(t, h, order("1", 9))
	if e := p.env(); e.Sequence != 9 || e.Epoch != epoch {
		t.Fatalf("live %+v; want sequence 9 of %s", e, epoch)
	}
}

// TestSweepThenRepublishIsNotRecovered is the defect of the epoch issue: a
// client saw orders 1..5; the idle topic is forgotten; a new run reaches 8.
// A resume from 3 in the old epoch must not be answered with the new 4..8.
func TestSweepThenRepublishIsNotRecovered(t *testing.T) {
	h, b := newHub(t, func(_ *engine.Config, l *engine.HistoryLimits) { l.TTL = time.Minute })
	var old string
	for i := 1; i <= 5; i++ {
		old = publish(t, h, order("1", i)).Epoch()
	}
	if n := b.Sweep(time.Now().Add(2 * time.Minute)); n != 1 {
		t.Fatalf("swept %d topics; want the idle one", n)
	}
	var fresh *engine.Event
	for i := 1; i <= 8; i++ {
		fresh = publish(t, h, order("1", i))
	}
	if fresh.Epoch() == old || fresh.Sequence() != 8 {
		t.Fatalf("new run %s at %d; want a new epoch at 8", fresh.Epoch(), fresh.Sequence())
	}
	r, _ := resume(t, h, 3, old, 0)
	if r.Recovered || r.Position.Epoch != fresh.Epoch() {
		t.Fatalf("resume from 3 of the old run: %+v; want recovered false and the new epoch", r)
	}
	// From nothing seen, the new run is replayed whole.
	r, got := resume(t, h, 0, old, 8)
	if !r.Recovered || fmt.Sprint(got) != "[1 2 3 4 5 6 7 8]" {
		t.Fatalf("since 0: %+v %v", r, got)
	}
}

func TestSweepKeepsWatchedAndRecentTopics(t *testing.T) {
	h, b := newHub(t, func(_ *engine.Config, l *engine.HistoryLimits) { l.TTL = time.Minute })
	publish(t, h, order("gone", 1))
	publish(t, h, order("watched", 1))
	s, _ := newPair(t, h, false)
	subscribe(t, h, s, "orders:watched", engine.Reliable, engine.SubscribeOptions{})
	if n := b.Sweep(time.Now()); n != 0 {
		t.Fatalf("swept %d topics with fresh history", n)
	}
	if n := b.Sweep(time.Now().Add(2 * time.Minute)); n != 1 {
		t.Fatalf("swept %d; want only the idle, unwatched topic", n)
	}
	for topic, want := range map[string]bool{"orders:gone": false, "orders:watched": true} {
		hist, _ := b.History(context.Background(), topic, 0, 0)
		if (hist.Last != nil) != want {
			t.Fatalf("%s kept: %v; want %v", topic, hist.Last != nil, want)
		}
	}
}

// TestReplayStreamsWithinBudget resumes a 10,000-event history on a
// connection that reads slowly: the replay is queued a page at a time as
// the connection drains, never the whole history at once, and live events
// published meanwhile join it with no gap and no duplicate.
func TestReplayStreamsWithinBudget(t *testing.T) {
	const budget = 64 << 10
	h, _ := newHub(t, func(c *engine.Config, _ *engine.HistoryLimits) { c.MaxPendingBytes = budget })
	pad := strings.Repeat("x", 300)
	msg := func(n int) engine.Message {
		m := order("1", n)
		m.Data = []byte(fmt.Sprintf(`{"n":%d,"pad":"%s"}`, n, pad))
		return m
	}
	for i := 1; i <= 10000; i++ {
		publish(t, h, msg(i))
	}
	s, p := newPair(t, h, false)
	since := uint64(0)
	if _, r := subscribe(t, h, s, "orders:1", engine.Reliable, engine.SubscribeOptions{Since: &since}); !r.Recovered {
		t.Fatalf("%+v", r)
	}
	maxQueued := 0
	next := 10001
	for want := uint64(1); want <= 10100; want++ {
		if want%100 == 0 {
			_, queued := s.Pending()
			maxQueued = max(maxQueued, queued)
			publish(t, h, msg(next)) // live, while the replay runs
			next++
		}
		if e := p.env(); e.Sequence != want {
			t.Fatalf("got sequence %d; want %d", e.Sequence, want)
		}
	}
	if maxQueued > budget {
		t.Fatalf("queued %d bytes during the replay; the budget is %d", maxQueued, budget)
	}
	if s.CloseCode() != 0 {
		t.Fatalf("closed with %d", s.CloseCode())
	}
}

func TestFramesSharedAcrossSubscribers(t *testing.T) {
	h, _ := newHub(t, func(c *engine.Config, _ *engine.HistoryLimits) { c.DeflateThreshold = 16 })
	sa, pa := newPair(t, h, true)
	sb, pb := newPair(t, h, true)
	for _, s := range []*engine.Outbox{sa, sb} {
		subscribe(t, h, s, "tick:A", engine.Conflated, engine.SubscribeOptions{})
	}
	publish(t, h, tick("A", 2))
	op, a := pa.read()
	_, b := pb.read()
	if string(a) != string(b) || op&0x40 == 0 {
		t.Fatalf("peers got different bytes (%q vs %q) or an uncompressed frame (%#x)", a, b, op)
	}
	var out strings.Builder
	h.Metrics().WritePrometheus(&out)
	if !strings.Contains(out.String(), "marketcast_frames_encoded_total 1\n") {
		t.Fatalf("one publish to two subscribers encoded more than once:\n%s", out.String())
	}
	// A projection is a variant of its own.
	sc, pc := newPair(t, h, false)
	subscribe(t, h, sc, "tick:A", engine.Conflated, engine.SubscribeOptions{Projection: frame.Intern([]string{"volume"})})
	publish(t, h, tick("A", 3))
	if e := pc.env(); string(e.Data) != `{"volume":"3"}` {
		t.Fatalf("projected data %s", e.Data)
	}
}

func TestUnsubscribeStopsDelivery(t *testing.T) {
	h, _ := newHub(t, nil)
	s, p := newPair(t, h, false)
	sub, _ := subscribe(t, h, s, "tick:A", engine.Conflated, engine.SubscribeOptions{})
	subscribe(t, h, s, "tick:B", engine.Conflated, engine.SubscribeOptions{})
	h.Unsubscribe(sub)
	h.Unsubscribe(sub) // twice is harmless
	publish(t, h, tick("A", 1))
	publish(t, h, tick("B", 1))
	if e := p.env(); e.Symbol != "B" {
		t.Fatalf("got %+v after unsubscribing A", e)
	}
	if _, err := h.Publish(context.Background(), engine.Message{}); err != engine.ErrMissingTopic {
		t.Fatalf("got %v; want ErrMissingTopic", err)
	}
}

// lossyBroker is the memory broker with a faulty line to the hub: it
// stores every event but drops or repeats chosen ones on the way, as a
// network between a broker and a node can.
type lossyBroker struct {
	*engine.MemoryBroker
	drop, repeat map[uint64]bool
}

func (b *lossyBroker) SetHandler(h engine.EventHandler) {
	b.MemoryBroker.SetHandler(handlerFunc(func(ev *engine.Event) {
		if b.drop[ev.Sequence()] {
			return
		}
		h.Apply(ev)
		if b.repeat[ev.Sequence()] {
			h.Apply(ev)
		}
	}))
}

type handlerFunc func(*engine.Event)

func (f handlerFunc) Apply(ev *engine.Event) { f(ev) }

// TestHubFillsGapsAndDropsDuplicates: a lost event is read back from the
// broker before anything after it is delivered, and a repeated one is
// delivered once.
func TestHubFillsGapsAndDropsDuplicates(t *testing.T) {
	def := configs.Default()
	b := &lossyBroker{MemoryBroker: engine.NewMemoryBroker(def.HistoryLimits()),
		drop: map[uint64]bool{3: true, 4: true}, repeat: map[uint64]bool{2: true, 6: true}}
	h := engine.NewHub(def.Engine(), b)
	s, p := newPair(t, h, false)
	subscribe(t, h, s, "orders:1", engine.Reliable, engine.SubscribeOptions{})
	for i := 1; i <= 7; i++ {
		publish(t, h, order("1", i))
	}
	for want := uint64(1); want <= 7; want++ {
		if e := p.env(); e.Sequence != want {
			t.Fatalf("got %d; want %d", e.Sequence, want)
		}
	}
	if g, bf, d := metric(h, "marketcast_stream_gaps_total"), metric(h, "marketcast_stream_backfills_total"),
		metric(h, "marketcast_stream_duplicates_total"); g != 1 || bf != 1 || d < 2 {
		// Events held during the backfill that it read from history count
		// as duplicates too, so at least the two repeats.
		t.Fatalf("gaps %v, backfills %v, duplicates %v; want 1, 1, >= 2", g, bf, d)
	}
}

func metric(h *engine.Hub, name string) float64 {
	var out strings.Builder
	h.Metrics().WritePrometheus(&out)
	for _, line := range strings.Split(out.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// TestNewEpochResetsSubscribers: an event of another run (a lost store)
// ends the old run for this node; its subscribers are told to resume.
func TestNewEpochResetsSubscribers(t *testing.T) {
	h, _ := newHub(t, nil)
	publish(t, h, order("1", 1))
	s, p := newPair(t, h, false)
	subscribe(t, h, s, "orders:1", engine.Reliable, engine.SubscribeOptions{})
	m := order("1", 1)
	h.Apply(engine.NewEvent(&m, 1, "another-run", time.Now()))
	op, payload := p.read()
	if op != 0x88 || binary.BigEndian.Uint16(payload) != protocol.CloseResumeRequired {
		t.Fatalf("got opcode %#x %q; want close 4009", op, payload)
	}
}

// placed is a kline update with its place in time (Order).
func placed(place int, tag string, closed bool) engine.Message {
	m := bar(place, closed)
	m.Order = int64(place)
	m.Data = []byte(fmt.Sprintf(`{"start":%d,"from":%q,"closed":%v}`, place, tag, closed))
	return m
}

// TestFinalsKeepOnePerPlace: the closed bars a kline topic keeps are in
// order, one per bar, the store's over the node's own; a subscription
// that had a bar from history is not sent it again, nor stale updates of
// it, when a lagging node closes it live.
func TestFinalsKeepOnePerPlace(t *testing.T) {
	h, _ := newHub(t, func(c *engine.Config, _ *engine.HistoryLimits) { c.FlushDelay = 0; c.BarHistory = 10 })
	publish(t, h, placed(1, "own", true))
	publish(t, h, placed(3, "own", true))
	store := func(place int) *engine.Event {
		m := placed(place, "store", true)
		return engine.NewEvent(&m, 0, "", time.Now())
	}
	if err := h.MergeFinals("kline_1m:X", []*engine.Event{store(2), store(3), store(4)}); err != nil {
		t.Fatal(err)
	}
	publish(t, h, placed(2, "own-late", true)) // a lagging node closes bar 2 after the merge
	var got []string
	for _, ev := range h.Finals("kline_1m:X") {
		got = append(got, string(ev.Message().Data))
	}
	want := []string{`{"start":1,"from":"own","closed":true}`, `{"start":2,"from":"store","closed":true}`,
		`{"start":3,"from":"store","closed":true}`, `{"start":4,"from":"store","closed":true}`}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("finals\n got %v\nwant %v", got, want)
	}

	o, p := newPair(t, h, false)
	subscribe(t, h, o, "kline_1m:X", engine.Conflated, engine.SubscribeOptions{Snapshot: true, History: 10})
	for _, w := range want {
		if e := p.env(); string(e.Data) != w || !e.Snapshot {
			t.Fatalf("history: %s; want %s", e.Data, w)
		}
	}
	publish(t, h, placed(3, "own-late", true))  // closed already: not sent
	publish(t, h, placed(4, "own-late", false)) // an update of a closed bar: not sent
	publish(t, h, placed(5, "own", false))
	if e := p.env(); string(e.Data) != `{"start":5,"from":"own","closed":false}` {
		t.Fatalf("live after history: %s; want the forming bar 5", e.Data)
	}
}

// TestFlushIsAdaptive: a live frame to an idle connection is written at
// once; one that follows it within the flush delay waits for the delay
// (to share a write with the next); an answer never waits, and takes the
// waiting frame with it. The delay here is an hour: anything that waited
// for it would time the test out.
func TestFlushIsAdaptive(t *testing.T) {
	h, _ := newHub(t, func(c *engine.Config, _ *engine.HistoryLimits) { c.FlushDelay = time.Hour })
	o, p := newPair(t, h, false)
	subscribe(t, h, o, "orders:1", engine.Reliable, engine.SubscribeOptions{})
	publish(t, h, order("1", 1))
	if e := p.env(); string(e.Data) != `{"n":1}` {
		t.Fatalf("first frame %s", e.Data)
	}
	// The flusher has finished with the first (a write in progress would take the next).
	testwait.For(t, "the flusher to exit", func() bool { flushing, _ := o.FlusherState(); return !flushing })
	publish(t, h, order("1", 2)) // right after a write: held
	if frames, _ := o.Pending(); frames != 1 {
		t.Fatalf("%d frames queued; want the second held", frames)
	}
	if _, held := o.FlusherState(); !held {
		t.Fatal("a frame right after a write was not held for the flush delay")
	}
	got := make(chan envelope, 2)
	go func() {
		for range 2 {
			got <- p.env()
		}
	}()
	o.Send([]byte("\x81\x0f{\"type\":\"pong\"}")) // an answer: at once, with the held frame before it
	if e := <-got; string(e.Data) != `{"n":2}` {
		t.Fatalf("held frame %s", e.Data)
	}
	if e := <-got; e.Type != "pong" {
		t.Fatalf("answer %+v", e)
	}
}

// TestBatchWritesOnceAtEnd: what a batch brings a connection is queued,
// not written, until the batch ends; then it leaves together.
func TestBatchWritesOnceAtEnd(t *testing.T) {
	h, _ := newHub(t, func(c *engine.Config, _ *engine.HistoryLimits) { c.FlushDelay = 0 })
	o, p := newPair(t, h, false)
	for _, s := range []string{"A", "B", "C"} {
		subscribe(t, h, o, "tick:"+s, engine.Conflated, engine.SubscribeOptions{})
	}
	b := h.NewBatch()
	for i, s := range []string{"A", "B", "C"} {
		if _, err := b.Publish(context.Background(), tick(s, i)); err != nil {
			t.Fatal(err)
		}
	}
	if frames, _ := o.Pending(); frames != 3 {
		t.Fatalf("%d frames pending before the batch ended; want 3 (none written)", frames)
	}
	b.End()
	for _, s := range []string{"A", "B", "C"} {
		if e := p.env(); e.Symbol != s {
			t.Fatalf("got %s; want %s", e.Symbol, s)
		}
	}
}

// lateBroker holds every event back from the hub until release: what a
// node sees when the stream has stored an event that its watch has not
// brought yet (a cluster's history read is ahead of its delivery).
type lateBroker struct {
	*engine.MemoryBroker
	h    engine.EventHandler
	held []*engine.Event
}

func (b *lateBroker) SetHandler(h engine.EventHandler) {
	b.h = h
	b.MemoryBroker.SetHandler(handlerFunc(func(ev *engine.Event) { b.held = append(b.held, ev) }))
}

func (b *lateBroker) release() {
	for _, ev := range b.held {
		b.h.Apply(ev)
	}
	b.held = nil
}

// TestLateSubscriberDoesNotSkipALiveOnesEvents: a subscriber that found
// the stream empty is live, waiting for event 1; a second one subscribes
// once event 1 is stored but before it reached this node. The second
// subscribe must not make the node take event 1 as already applied: the
// first subscriber would never get it (the chaos test saw "first message
// 2 after position 0").
func TestLateSubscriberDoesNotSkipALiveOnesEvents(t *testing.T) {
	def := configs.Default()
	b := &lateBroker{MemoryBroker: engine.NewMemoryBroker(def.HistoryLimits())}
	h := engine.NewHub(def.Engine(), b)
	first, p := newPair(t, h, false)
	if _, r := subscribe(t, h, first, "orders:u", engine.Reliable, engine.SubscribeOptions{}); r.Position.Seq != 0 {
		t.Fatalf("an empty stream stands at %d", r.Position.Seq)
	}
	publish(t, h, order("u", 1)) // stored; not yet here
	second, q := newPair(t, h, false)
	if _, r := subscribe(t, h, second, "orders:u", engine.Reliable, engine.SubscribeOptions{}); r.Position.Seq != 1 {
		t.Fatalf("the stream stands at %d, want 1", r.Position.Seq)
	}
	b.release() // event 1 arrives
	publish(t, h, order("u", 2))
	b.release()
	for want := uint64(1); want <= 2; want++ {
		if e := p.env(); e.Sequence != want {
			t.Fatalf("the first subscriber got %d; want %d", e.Sequence, want)
		}
	}
	if e := q.env(); e.Sequence != 2 {
		t.Fatalf("the second subscriber got %d; want 2 (it stood at 1)", e.Sequence)
	}
}
