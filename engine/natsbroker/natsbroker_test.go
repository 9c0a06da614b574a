package natsbroker_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/engine/natsbroker"
	"github.com/marketcast/marketcast/engine/natsbroker/natstest"
	"github.com/marketcast/marketcast/internal/testwait"
	"github.com/marketcast/marketcast/protocol"
)

// node is one marketcast node's engine: a NATS connection, the broker and a
// hub, as a server process has them.
type node struct {
	nc     *nats.Conn
	broker *natsbroker.Broker
	hub    *engine.Hub
}

func brokerConfig() natsbroker.Config {
	def := configs.Default()
	return natsbroker.Config{Stream: "MC_PRIV", Replicas: 1, History: def.HistoryLimits(), MaxAge: time.Hour,
		MaxBytes: -1, Duplicates: time.Minute, HeadCheck: 200 * time.Millisecond,
		// Generous: a busy machine running the race detector is slow, and
		// no test here is about the bound but those that set it.
		Timeout: 10 * time.Second,
		Key:     []byte("natsbroker-test-message-key")}
}

func newNode(t *testing.T, url string, tune func(*natsbroker.Config)) *node {
	t.Helper()
	cfg := brokerConfig()
	if tune != nil {
		tune(&cfg)
	}
	n := &node{}
	var err error
	n.nc, err = nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectBufSize(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectHandler(func(*nats.Conn) {
			if n.broker != nil {
				n.broker.Reconnected()
			}
		}), nats.DisconnectErrHandler(func(*nats.Conn, error) {
			if n.broker != nil {
				n.broker.Disconnected()
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	n.broker, err = natsbroker.New(context.Background(), n.nc, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ecfg := configs.Default().Engine()
	n.hub = engine.NewHub(ecfg, n.broker)
	t.Cleanup(func() { n.broker.Close(); n.nc.Close() })
	return n
}

func order(user string, n int) engine.Message {
	return engine.Message{Topic: "orders:" + user, Mode: engine.Reliable, Type: "order_update", Channel: "orders",
		Data: []byte(fmt.Sprintf(`{"n":%d}`, n))}
}

// peer reads what an outbox writes to the other end of a pipe.
type peer struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

type envelope struct {
	Type     string          `json:"type"`
	Sequence uint64          `json:"sequence"`
	Epoch    string          `json:"epoch"`
	Snapshot bool            `json:"snapshot"`
	Data     json.RawMessage `json:"data"`
}

// next returns the next data frame's envelope, or the close code.
func (p *peer) next(timeout time.Duration) (envelope, uint16, error) {
	_ = p.c.SetReadDeadline(time.Now().Add(timeout))
	var h [2]byte
	if _, err := io.ReadFull(p.br, h[:]); err != nil {
		return envelope{}, 0, err
	}
	n := int(h[1] & 0x7f)
	if n == 126 {
		var b [2]byte
		_, _ = io.ReadFull(p.br, b[:])
		n = int(binary.BigEndian.Uint16(b[:]))
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(p.br, payload); err != nil {
		return envelope{}, 0, err
	}
	if h[0]&0x0f == 0x8 {
		return envelope{}, binary.BigEndian.Uint16(payload), nil
	}
	var e envelope
	err := json.Unmarshal(payload, &e)
	return e, 0, err
}

func (p *peer) must() envelope {
	p.t.Helper()
	e, code, err := p.next(10 * time.Second)
	if err != nil || code != 0 {
		p.t.Fatalf("next frame: %v (close %d)", err, code)
	}
	return e
}

// subscribe opens an outbox on a pipe and subscribes it to topic.
func (n *node) subscribe(t *testing.T, topic string, opts engine.SubscribeOptions) (*peer, engine.Resume) {
	t.Helper()
	server, client := net.Pipe()
	t.Cleanup(func() { server.Close(); client.Close() })
	out := n.hub.NewOutbox(server, false)
	sub, r, err := n.hub.Subscribe(context.Background(), out, topic, engine.Reliable, opts)
	if err != nil {
		t.Fatal(err)
	}
	n.hub.Start(sub)
	return &peer{t: t, c: client, br: bufio.NewReader(client)}, r
}

// TestContiguousUnderConcurrentPublishers: three nodes publish to one topic
// at once; the topic's sequence is 1..N with no gap and no duplicate, in one
// epoch, and a subscriber on a fourth node sees every event in order.
func TestContiguousUnderConcurrentPublishers(t *testing.T) {
	srv := natstest.Start(t, "")
	watcher := newNode(t, srv.URL(), nil)
	p, _ := watcher.subscribe(t, "orders:u", engine.SubscribeOptions{})
	const per = 150
	var mu sync.Mutex
	var seqs []uint64
	epochs := map[string]bool{}
	var wg sync.WaitGroup
	for range 3 {
		n := newNode(t, srv.URL(), nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				ev, err := n.hub.Publish(context.Background(), order("u", i))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seqs = append(seqs, ev.Sequence())
				epochs[ev.Epoch()] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("sequences %v...: want 1..%d with no gap or duplicate", seqs[:i+1], 3*per)
		}
	}
	if len(epochs) != 1 {
		t.Fatalf("epochs %v; want one run", epochs)
	}
	for want := uint64(1); want <= 3*per; want++ {
		if e := p.must(); e.Sequence != want {
			t.Fatalf("watcher got %d; want %d", e.Sequence, want)
		}
	}
}

// TestResumeOnAnotherNode: events published through node A are replayed to
// a client that resumes on node B, then live events follow.
func TestResumeOnAnotherNode(t *testing.T) {
	srv := natstest.Start(t, "")
	a, b := newNode(t, srv.URL(), nil), newNode(t, srv.URL(), nil)
	var epoch string
	for i := 1; i <= 40; i++ {
		epoch = publish(t, a, order("u", i)).Epoch()
	}
	for _, since := range []uint64{38, 5} { // a short gap (walked back) and a long one (located, batched)
		p, r := b.subscribe(t, "orders:u", engine.SubscribeOptions{Since: &since, Epoch: epoch})
		if !r.Recovered || r.Position.Seq != 40 || r.Position.Epoch != epoch {
			t.Fatalf("since %d: %+v", since, r)
		}
		for want := since + 1; want <= 40; want++ {
			if e := p.must(); e.Sequence != want || e.Epoch != epoch {
				t.Fatalf("since %d: replay got %d (%s); want %d", since, e.Sequence, e.Epoch, want)
			}
		}
	}
	publish(t, a, order("u", 41))
	// The last subscriber gets 41 live; an old epoch is refused.
	since := uint64(3)
	_, r := b.subscribe(t, "orders:u", engine.SubscribeOptions{Since: &since, Epoch: "another-run"})
	if r.Recovered {
		t.Fatal("a resume in another epoch was recovered")
	}
}

func publish(t *testing.T, n *node, m engine.Message) *engine.Event {
	t.Helper()
	ev, err := n.hub.Publish(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestNATSRestartKeepsRunsAndBackfills: NATS restarts with the same store
// while a subscriber stays connected; publishes while it is down fail at
// once with ErrUnavailable; afterwards the run continues in the same epoch
// and the subscriber misses nothing.
func TestNATSRestartKeepsRunsAndBackfills(t *testing.T) {
	srv := natstest.Start(t, "")
	a, b := newNode(t, srv.URL(), nil), newNode(t, srv.URL(), nil)
	p, _ := b.subscribe(t, "orders:u", engine.SubscribeOptions{})
	first := publish(t, a, order("u", 1))
	p.must()
	srv.Stop()
	testwait.For(t, "the node to see NATS gone", func() bool { return a.broker.Ready() != nil })
	_, err := a.hub.Publish(context.Background(), order("u", 2))
	if !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("publish with NATS down: %v; want ErrUnavailable (not sent)", err)
	}
	srv.Restart(false)
	var ev *engine.Event
	testwait.Check(t, func() error { // publishes fail until the node has reconnected
		ev, err = a.hub.Publish(context.Background(), order("u", 2))
		return err
	})
	if ev.Sequence() != 2 || ev.Epoch() != first.Epoch() {
		t.Fatalf("after the restart: %v %v; want sequence 2 of %s", ev, err, first.Epoch())
	}
	if e := p.must(); e.Sequence != 2 {
		t.Fatalf("subscriber got %d after the restart; want 2", e.Sequence)
	}
}

// TestWipedStoreStartsANewEpoch: NATS comes back without its store; the
// next publish starts a new run, the node's subscriber of the old run is
// told to resume (4009), and a resume from the old run is not recovered.
func TestWipedStoreStartsANewEpoch(t *testing.T) {
	srv := natstest.Start(t, "")
	a := newNode(t, srv.URL(), nil)
	old := publish(t, a, order("u", 1))
	publish(t, a, order("u", 2))
	p, _ := a.subscribe(t, "orders:u", engine.SubscribeOptions{})
	srv.Restart(true)
	var ev *engine.Event
	testwait.Check(t, func() (err error) { // publishes fail until the node has reconnected
		ev, err = a.hub.Publish(context.Background(), order("u", 3))
		return err
	})
	if ev.Sequence() != 1 || ev.Epoch() == old.Epoch() {
		t.Fatalf("after a wiped store: %v; want sequence 1 of a new epoch", ev)
	}
	if _, code, err := p.next(10 * time.Second); err != nil || code != protocol.CloseResumeRequired {
		t.Fatalf("old-run subscriber: close %d, %v; want 4009", code, err)
	}
	since := uint64(2)
	_, r := a.subscribe(t, "orders:u", engine.SubscribeOptions{Since: &since, Epoch: old.Epoch()})
	if r.Recovered || r.Position.Epoch != ev.Epoch() {
		t.Fatalf("resume from the wiped run: %+v", r)
	}
}

// TestGapIsBackfilled: a republished event lost on the way to a node is read
// back from the stream before anything after it is delivered; a lost last
// event is caught by the head check.
func TestGapIsBackfilled(t *testing.T) {
	srv := natstest.Start(t, "")
	a, b := newNode(t, srv.URL(), nil), newNode(t, srv.URL(), nil)
	restore := natsbroker.DropLive(b.broker, func(seq uint64) bool { return seq == 3 || seq == 6 })
	defer restore()
	p, _ := b.subscribe(t, "orders:u", engine.SubscribeOptions{})
	for i := 1; i <= 6; i++ {
		publish(t, a, order("u", i))
	}
	for want := uint64(1); want <= 6; want++ { // 6 is the last: only the head check finds it
		if e := p.must(); e.Sequence != want {
			t.Fatalf("got %d; want %d", e.Sequence, want)
		}
	}
}

// TestIdempotentRetry: a publish retried with the same key is stored once,
// and the retry is answered with the original's position.
func TestIdempotentRetry(t *testing.T) {
	srv := natstest.Start(t, "")
	a, b := newNode(t, srv.URL(), nil), newNode(t, srv.URL(), nil)
	m := order("u", 1)
	m.IdempotencyKey = "backend-order-1"
	first := publish(t, a, m)
	publish(t, a, order("u", 2))
	again := publish(t, b, m) // the retry lands on another node
	if again.Sequence() != first.Sequence() || again.Epoch() != first.Epoch() {
		t.Fatalf("retry stored at %d; want the original %d", again.Sequence(), first.Sequence())
	}
	if next := publish(t, a, order("u", 3)); next.Sequence() != 3 {
		t.Fatalf("next sequence %d; want 3 (the retry was not stored)", next.Sequence())
	}
}

// TestHistoryWindow: history older than the resume window is not replayed,
// though the run (its last message, its epoch) is kept.
func TestHistoryWindow(t *testing.T) {
	srv := natstest.Start(t, "")
	a := newNode(t, srv.URL(), func(c *natsbroker.Config) { c.History.TTL = 300 * time.Millisecond })
	ev := publish(t, a, order("u", 1))
	publish(t, a, order("u", 2))
	testwait.For(t, "1 and 2 to leave the window", func() bool {
		h, err := a.broker.History(context.Background(), "orders:u", 0, 10)
		return err == nil && h.First == 0 && len(h.Events) == 0
	})
	publish(t, a, order("u", 3))
	h, err := a.broker.History(context.Background(), "orders:u", 0, 10)
	if err != nil || h.First != 3 || h.Last.Sequence() != 3 || h.Last.Epoch() != ev.Epoch() {
		t.Fatalf("history %+v %v; want first 3 (1 and 2 are out of the window), same epoch", h, err)
	}
	since := uint64(1)
	if _, r := a.subscribe(t, "orders:u", engine.SubscribeOptions{Since: &since, Epoch: ev.Epoch()}); r.Recovered {
		t.Fatal("a resume from beyond the window was recovered")
	}
}
