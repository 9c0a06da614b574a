package natsfeed

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketcast/marketcast/protocol"
)

// BarStream keeps the closed bars of every kline topic for the cluster.
const BarStream = "MC_BARS"

// maxStoredBar bounds a stored bar's size: a bar is a few hundred bytes.
const maxStoredBar = 4096

// maxStoredBars bounds a topic's bars in the stream (feed.bar_history is at
// most 5,000) and so one load's batch.
const maxStoredBars = 5000

// loadTimeout bounds loading a topic's bars.
const loadTimeout = 5 * time.Second

// BarStore keeps closed bars in a JetStream stream, one subject per kline
// topic (mc.bars.<interval>.<symbol>), at most the bar history of each.
// Every node builds the same bars from the same ticks and stores each when
// it closes; the stream's duplicate window keeps the first. When nodes
// disagree on a bar (they lost different ticks while NATS was away), the
// node whose copy was refused takes the stored one (OnReplaced), so every
// node's history shows the same bar.
type BarStore struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	perTopic int
	replicas int

	saves      chan *protocol.Publication
	onReplaced func(stored *protocol.Publication)
	done       chan struct{}
	stopped    chan struct{}
}

// saveQueue bounds the bars waiting to be stored: a bar lost here is
// stored by the other nodes, or only shortens a late node's history.
const saveQueue = 4096

// NewBarStore returns a store on nc keeping perTopic bars of each topic
// with the given replicas (Ensure makes the stream); Close stops it.
func NewBarStore(nc *nats.Conn, perTopic, replicas int) *BarStore {
	js, _ := jetstream.New(nc) // fails only for invalid options
	s := &BarStore{nc: nc, js: js, perTopic: max(perTopic, 1), replicas: max(replicas, 1),
		saves: make(chan *protocol.Publication, saveQueue), onReplaced: func(*protocol.Publication) {},
		done: make(chan struct{}), stopped: make(chan struct{})}
	go s.run()
	return s
}

// OnReplaced sets what is told of a bar this node closed whose stored copy
// (another node's, stored first) differs: the stored one. Set it before
// bars are saved.
func (s *BarStore) OnReplaced(f func(stored *protocol.Publication)) { s.onReplaced = f }

// Ensure creates (or updates) the stream, in files with the store's
// replicas.
func (s *BarStore) Ensure(ctx context.Context) error {
	return ensureStream(ctx, s.js, jetstream.StreamConfig{
		Name:              BarStream,
		Description:       "marketcast: closed bars of every kline topic, for nodes that start late",
		Subjects:          []string{"mc.bars.>"},
		Storage:           jetstream.FileStorage,
		Replicas:          s.replicas,
		MaxMsgsPerSubject: int64(s.perTopic),
		Discard:           jetstream.DiscardOld,
		Duplicates:        10 * time.Minute, // every node stores each bar when its own clock closes it
		AllowDirect:       true,
	}, false)
}

// Close stops storing; bars still queued are dropped.
func (s *BarStore) Close() {
	close(s.done)
	<-s.stopped
}

func barSubject(ch *protocol.Channel, symbol string) string {
	return "mc.bars." + ch.Push + "." + symbol
}

// Save stores a closed bar, in the background: it never holds up the
// caller (the bar builder).
func (s *BarStore) Save(p *protocol.Publication) {
	select {
	case s.saves <- p:
	default: // the store is far behind: the other nodes store this bar
	}
}

func (s *BarStore) run() {
	defer close(s.stopped)
	for {
		select {
		case <-s.done:
			return
		case p := <-s.saves:
			s.save(p)
		}
	}
}

// save stores one bar and, when the stream already had another node's copy
// that differs, reports the stored one.
func (s *BarStore) save(p *protocol.Publication) {
	if p.Time.IsZero() {
		return
	}
	// A partial bar (its node did not see all of it) is stored under an id
	// of its own, so it never takes the place of the complete one in the
	// duplicate window; Load prefers the complete one. A single node's
	// partial bar (after a restart, say) is then still kept: a gap in
	// history would say less than it does.
	id := p.Channel.Push + "|" + p.ID + "|" + p.Time.UTC().Format(protocol.TimeLayout)
	if bytes.Contains(p.Data, []byte(`"partial":true`)) {
		id += "|partial"
	}
	msg := nats.NewMsg(barSubject(p.Channel, p.ID))
	msg.Data = p.Data
	msg.Header.Set(jetstream.MsgIDHeader, id)
	ctx, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	ack, err := s.js.PublishMsg(ctx, msg)
	if err != nil || !ack.Duplicate {
		return
	}
	req, _ := json.Marshal(struct {
		Seq uint64 `json:"seq"`
	}{ack.Sequence})
	stored, err := s.nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+BarStream, req)
	if err != nil || stored.Header.Get("Status") != "" || stored.Header.Get(jetstream.SubjectHeader) != msg.Subject ||
		bytes.Equal(stored.Data, p.Data) {
		return
	}
	sp, err := protocol.Validate(&protocol.Item{Channel: p.Channel.Push, Symbol: p.ID, Data: stored.Data}, maxStoredBar)
	if err == nil && sp.Final {
		s.onReplaced(sp)
	}
}

// Load returns up to n of a kline topic's most recent closed bars, oldest
// first. The stream keeps at most the bar history per topic, so one direct
// get of a batch from the topic's first message reads them all, with no
// consumer to create: it answers a subscription's "history".
func (s *BarStore) Load(ctx context.Context, ch *protocol.Channel, symbol string, n int) ([]*protocol.Publication, error) {
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	subj := barSubject(ch, symbol)
	body, _ := json.Marshal(struct {
		Seq     uint64 `json:"seq"`
		NextFor string `json:"next_by_subj"`
		Batch   int    `json:"batch"`
	}{1, subj, maxStoredBars})
	inbox := s.nc.NewRespInbox()
	sub, err := s.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := s.nc.PublishRequest("$JS.API.DIRECT.GET."+BarStream, inbox, body); err != nil {
		return nil, err
	}
	var out []*protocol.Publication
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, fmt.Errorf("natsfeed: bars of %s: %w", subj, err)
		}
		switch st := m.Header.Get("Status"); st {
		case "":
		case "204", "404": // the end of the batch; no bars at all
			out = preferComplete(out)
			if len(out) > n {
				out = out[len(out)-n:]
			}
			return out, nil
		default:
			return nil, fmt.Errorf("natsfeed: bars of %s: %s %s", subj, st, m.Header.Get("Description"))
		}
		// Checked as any input is: the stream is shared, and this gives
		// the bar its start time, its place in the history.
		p, err := protocol.Validate(&protocol.Item{Channel: ch.Push, Symbol: symbol, Data: m.Data}, maxStoredBar)
		if err != nil || !p.Final {
			continue
		}
		out = append(out, p)
	}
}

// preferComplete keeps one bar per start time, in order: the complete one
// where a partial one was stored too.
func preferComplete(bars []*protocol.Publication) []*protocol.Publication {
	partial := func(p *protocol.Publication) bool { return bytes.Contains(p.Data, []byte(`"partial":true`)) }
	slices.SortStableFunc(bars, func(a, b *protocol.Publication) int { return a.Time.Compare(b.Time) })
	out := bars[:0]
	for _, p := range bars {
		if n := len(out); n > 0 && out[n-1].Time.Equal(p.Time) {
			if partial(out[n-1]) && !partial(p) {
				out[n-1] = p
			}
			continue
		}
		out = append(out, p)
	}
	return out
}
