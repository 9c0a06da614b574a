package brokertest

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
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/internal/testwait"
)

// hubConfig is the hub every node of the suite runs: a small replay page,
// so that resumes stream history page by page.
func hubConfig() engine.Config {
	return engine.Config{Shards: 4, DeflateThreshold: 512, MaxPendingBytes: 4 << 20, WriteTimeout: 10 * time.Second,
		Linger: linger, ReplayPage: 4}
}

// linger is the hubs' Config.Linger.
const linger = 30 * time.Second

// node is one marketcast node of the suite: a broker of the backend, seen
// through a faulty line that can lose events and fail reads, and a hub.
type node struct {
	t      *testing.T
	broker engine.Broker // the backend's, unwrapped
	line   *line
	hub    *engine.Hub
}

// nodes returns n nodes on be: distinct ones as far as be has them, then
// the same ones again (a broker that serves one node is every node).
func nodes(t *testing.T, be Backend, n int) []*node {
	t.Helper()
	out := make([]*node, 0, n)
	for i := range n {
		if i < be.Nodes() {
			out = append(out, newNode(t, be.Node(t)))
		} else {
			out = append(out, out[i%be.Nodes()])
		}
	}
	return out
}

func newNode(t *testing.T, b engine.Broker) *node {
	l := &line{Broker: b}
	return &node{t: t, broker: b, line: l, hub: engine.NewHub(hubConfig(), l)}
}

// line is a broker as a node sees it over a network: events can be lost or
// repeated on their way to the hub, and reads can fail. It also records
// every event that reaches the hub.
type line struct {
	engine.Broker

	mu       sync.Mutex
	lose     map[string]bool // "topic/seq": lose the first copy of that event
	repeat   map[string]bool // "topic/seq": deliver the first copy twice
	received []*engine.Event // every event handed to the hub, in order
	arrived  chan struct{}   // signalled on each event

	failReads atomic.Int32 // the next n History calls fail
}

func eventKey(topic string, seq uint64) string { return topic + "/" + strconv.FormatUint(seq, 10) }

// SetHandler implements engine.Broker: the hub's handler behind the line.
func (l *line) SetHandler(h engine.EventHandler) {
	l.arrived = make(chan struct{}, 1)
	l.Broker.SetHandler(handlerFunc(func(ev *engine.Event) {
		k := eventKey(ev.Topic(), ev.Sequence())
		l.mu.Lock()
		lost, twice := l.lose[k], l.repeat[k]
		delete(l.lose, k)
		delete(l.repeat, k)
		if !lost {
			l.received = append(l.received, ev)
		}
		l.mu.Unlock()
		if lost {
			return
		}
		h.Apply(ev)
		if twice {
			h.Apply(ev)
		}
		select {
		case l.arrived <- struct{}{}:
		default:
		}
	}))
}

// History implements engine.Broker, failing when told to.
func (l *line) History(ctx context.Context, topic string, after uint64, limit int) (engine.History, error) {
	for {
		n := l.failReads.Load()
		if n <= 0 {
			break
		}
		if l.failReads.CompareAndSwap(n, n-1) {
			return engine.History{}, fmt.Errorf("%w: brokertest: read failed on purpose", engine.ErrUnavailable)
		}
	}
	return l.Broker.History(ctx, topic, after, limit)
}

// loseFirst makes the line lose the first copy of each of topic's events
// seqs, and repeat those of again.
func (l *line) loseFirst(topic string, seqs []uint64, again []uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lose == nil {
		l.lose, l.repeat = map[string]bool{}, map[string]bool{}
	}
	for _, s := range seqs {
		l.lose[eventKey(topic, s)] = true
	}
	for _, s := range again {
		l.repeat[eventKey(topic, s)] = true
	}
}

// got returns the sequences of topic's events that reached the hub.
func (l *line) got(topic string) []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []uint64
	for _, ev := range l.received {
		if ev.Topic() == topic {
			out = append(out, ev.Sequence())
		}
	}
	return out
}

type handlerFunc func(*engine.Event)

func (f handlerFunc) Apply(ev *engine.Event) { f(ev) }

// msg is the n-th test message of a reliable topic.
func msg(topic string, n int) engine.Message {
	push, _, _ := strings.Cut(topic, ":")
	return engine.Message{Topic: topic, Mode: engine.Reliable, Type: "order_update", Channel: push,
		Data: []byte(fmt.Sprintf(`{"n":%d}`, n))}
}

func (n *node) publish(m engine.Message) *engine.Event {
	n.t.Helper()
	ev, err := n.hub.Publish(context.Background(), m)
	if err != nil {
		n.t.Fatalf("publish to %s: %v", m.Topic, err)
	}
	return ev
}

func (n *node) history(topic string, after uint64, limit int) engine.History {
	n.t.Helper()
	h, err := n.broker.History(context.Background(), topic, after, limit)
	if err != nil {
		n.t.Fatalf("history of %s after %d: %v", topic, after, err)
	}
	return h
}

// client is a subscriber's connection: the far end of a pipe whose near
// end is the subscription's outbox.
type client struct {
	t      *testing.T
	topic  string
	frames chan frame
}

// frame is what a client read: an envelope, or a close code.
type frame struct {
	Type     string          `json:"type"`
	Sequence uint64          `json:"sequence"`
	Epoch    string          `json:"epoch"`
	Snapshot bool            `json:"snapshot"`
	Data     json.RawMessage `json:"data"`
	close    uint16
}

// subscribe subscribes a new connection to a reliable topic and starts it.
func (n *node) subscribe(topic string, opts engine.SubscribeOptions) (*client, engine.Resume) {
	n.t.Helper()
	c, r, err := n.trySubscribe(topic, opts)
	if err != nil {
		n.t.Fatalf("subscribe to %s: %v", topic, err)
	}
	return c, r
}

func (n *node) trySubscribe(topic string, opts engine.SubscribeOptions) (*client, engine.Resume, error) {
	server, conn := net.Pipe()
	n.t.Cleanup(func() { server.Close(); conn.Close() })
	out := n.hub.NewOutbox(server, false)
	sub, r, err := n.hub.Subscribe(context.Background(), out, topic, engine.Reliable, opts)
	if err != nil {
		return nil, r, err
	}
	n.hub.Start(sub)
	c := &client{t: n.t, topic: topic, frames: make(chan frame, 1024)}
	go c.read(conn)
	return c, r, nil
}

// read parses server frames until the connection ends.
func (c *client) read(conn net.Conn) {
	defer close(c.frames)
	br := bufio.NewReader(conn)
	for {
		var h [2]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return
		}
		n := int(h[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(br, b[:]); err != nil {
				return
			}
			n = int(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(br, b[:]); err != nil {
				return
			}
			n = int(binary.BigEndian.Uint64(b[:]))
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(br, payload); err != nil {
			return
		}
		var f frame
		if h[0]&0x0f == 0x8 { // close
			if len(payload) >= 2 {
				f.close = binary.BigEndian.Uint16(payload)
			}
			c.frames <- f
			return
		}
		if err := json.Unmarshal(payload, &f); err != nil {
			f.Type = "undecodable: " + string(payload)
		}
		c.frames <- f
	}
}

// next returns the next frame (a hang guard ends the wait, never a
// measurement).
func (c *client) next() frame {
	c.t.Helper()
	select {
	case f, ok := <-c.frames:
		if !ok {
			c.t.Fatalf("%s: connection ended", c.topic)
		}
		return f
	case <-time.After(testwait.Deadline):
		c.t.Fatalf("%s: no frame within %v", c.topic, testwait.Deadline)
	}
	return frame{}
}

// expect reads events from..to of epoch, in order, as live or replayed
// events (no snapshot).
func (c *client) expect(from, to uint64, epoch string) {
	c.t.Helper()
	for want := from; want <= to; want++ {
		f := c.next()
		if f.close != 0 || f.Sequence != want || f.Epoch != epoch || f.Snapshot {
			c.t.Fatalf("%s: got %+v (close %d); want event %d of %s", c.topic, f, f.close, want, epoch)
		}
	}
}

// expectClose reads until the connection is closed with code.
func (c *client) expectClose(code uint16) {
	c.t.Helper()
	for {
		f := c.next()
		if f.close == 0 {
			continue // what was queued before the close
		}
		if f.close != code {
			c.t.Fatalf("%s: closed with %d; want %d", c.topic, f.close, code)
		}
		return
	}
}

// seqs lists the sequences of events.
func seqs(evs []*engine.Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, ev := range evs {
		out[i] = ev.Sequence()
	}
	return out
}

// span is from..to as a list.
func span(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func sameSeqs(a, b []uint64) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

// metric reads one of a hub's metrics.
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
