package natsfeed

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketcast/marketcast/protocol"
)

// BarStream keeps the closed bars of every kline topic for the cluster.
const BarStream = "MC_BARS"

// maxStoredBar bounds a stored bar's size: a bar is a few hundred bytes.
const maxStoredBar = 4096

// BarStore keeps closed bars in a JetStream stream, one subject per kline
// topic (mc.bars.<interval>.<symbol>), at most the bar history of each.
// Every node builds the same bars from the same ticks and stores each when
// it closes; the stream's duplicate window keeps one.
type BarStore struct {
	nc *nats.Conn
	js jetstream.JetStream
}

// NewBarStore creates (or updates) the stream.
func NewBarStore(ctx context.Context, nc *nats.Conn, perTopic int) (*BarStore, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              BarStream,
		Description:       "marketcast: closed bars of every kline topic, for nodes that start late",
		Subjects:          []string{"mc.bars.>"},
		Storage:           jetstream.FileStorage,
		MaxMsgsPerSubject: int64(max(perTopic, 1)),
		Discard:           jetstream.DiscardOld,
		Duplicates:        10 * time.Minute, // every node stores each bar when its own clock closes it
		AllowDirect:       true,
	})
	if err != nil {
		return nil, fmt.Errorf("natsfeed: stream %s: %w", BarStream, err)
	}
	return &BarStore{nc: nc, js: js}, nil
}

func barSubject(ch *protocol.Channel, symbol string) string {
	return "mc.bars." + ch.Push + "." + symbol
}

// Save stores a closed bar, without waiting for the store's ack: a bar lost
// here is rebuilt by the other nodes, or only shortens a late node's history.
func (s *BarStore) Save(p *protocol.Publication) {
	var b struct {
		Start string `json:"start_time"`
	}
	if json.Unmarshal(p.Data, &b) != nil {
		return
	}
	msg := nats.NewMsg(barSubject(p.Channel, p.ID))
	msg.Data = p.Data
	msg.Header.Set(jetstream.MsgIDHeader, p.Channel.Push+"|"+p.ID+"|"+b.Start)
	_ = s.nc.PublishMsg(msg)
}

// Load returns up to n of a kline topic's most recent closed bars, oldest
// first (the stream keeps at most the bar history per topic, so it reads
// them all).
func (s *BarStore) Load(ctx context.Context, ch *protocol.Channel, symbol string, n int) ([]*protocol.Publication, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, BarStream)
	if err != nil {
		return nil, err
	}
	subj := barSubject(ch, symbol)
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return nil, err
	}
	total := info.State.Subjects[subj]
	if total == 0 {
		return nil, nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}})
	if err != nil {
		return nil, err
	}
	var out []*protocol.Publication
	for uint64(len(out)) < total {
		batch, err := cons.Fetch(int(min(total-uint64(len(out)), 500)), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			// Checked as any input is: the stream is shared, and this
			// gives the bar its start time, its place in the history.
			p, err := protocol.Validate(&protocol.Item{Channel: ch.Push, Symbol: symbol, Data: m.Data()}, maxStoredBar)
			if err != nil || !p.Final {
				continue
			}
			out = append(out, p)
		}
		if got == 0 {
			break
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out, nil
}
