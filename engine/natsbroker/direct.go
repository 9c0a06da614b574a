package natsbroker

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketcast/marketcast/engine"
)

// stored is a message of the stream as an engine event.
type stored struct {
	streamSeq uint64 // its place in the stream
	prev      uint64 // the stream sequence of the topic's message before it
	ev        *engine.Event
}

// decode turns a stored message of subj into an event.
func decode(subj string, h nats.Header, data []byte) (*stored, error) {
	topic, ok := topicOf(subj)
	if !ok {
		return nil, fmt.Errorf("subject %q is not a topic", subj)
	}
	seq, err := strconv.ParseUint(h.Get(hdrSeq), 10, 64)
	if err != nil || seq == 0 {
		return nil, fmt.Errorf("header %s %q", hdrSeq, h.Get(hdrSeq))
	}
	ns, err := strconv.ParseInt(h.Get(hdrTime), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("header %s %q", hdrTime, h.Get(hdrTime))
	}
	epoch := h.Get(hdrEpoch)
	if epoch == "" {
		return nil, fmt.Errorf("no %s", hdrEpoch)
	}
	m := &engine.Message{Topic: topic, Mode: engine.Reliable, Type: h.Get(hdrType), Channel: h.Get(hdrChannel),
		StrategyID: h.Get(hdrStrategy), Broadcast: h.Get(hdrBroadcast) == "1", Data: data}
	sm := &stored{ev: engine.NewEvent(m, seq, epoch, time.Unix(0, ns))}
	sm.streamSeq, _ = strconv.ParseUint(h.Get(jetstream.SequenceHeader), 10, 64)
	sm.prev, _ = strconv.ParseUint(h.Get(hdrPrev), 10, 64)
	return sm, nil
}

// getRequest is JetStream's direct get request (the server's
// JSApiMsgGetRequest; nats.go wraps only part of it).
type getRequest struct {
	Seq       uint64     `json:"seq,omitempty"`
	LastFor   string     `json:"last_by_subj,omitempty"`
	NextFor   string     `json:"next_by_subj,omitempty"`
	Batch     int        `json:"batch,omitempty"`
	StartTime *time.Time `json:"start_time,omitempty"`
	MultiLast []string   `json:"multi_last,omitempty"`
}

func (b *Broker) directSubject() string { return "$JS.API.DIRECT.GET." + b.cfg.Stream }

// getOne sends a direct get answered by one message; nil when there is
// none.
func (b *Broker) getOne(ctx context.Context, req getRequest) (*stored, error) {
	body, _ := json.Marshal(req)
	rctx, cancel := b.requestCtx(ctx)
	defer cancel()
	msg, err := b.nc.RequestWithContext(rctx, b.directSubject(), body)
	if err != nil {
		return nil, err
	}
	switch st := msg.Header.Get("Status"); st {
	case "":
	case "404":
		return nil, nil
	default:
		return nil, fmt.Errorf("direct get: %s %s", st, msg.Header.Get("Description"))
	}
	return decode(msg.Header.Get(jetstream.SubjectHeader), msg.Header, msg.Data)
}

// getMany sends a direct get answered by several messages and an end of
// batch (status 204).
func (b *Broker) getMany(ctx context.Context, req getRequest) ([]*stored, error) {
	body, _ := json.Marshal(req)
	rctx, cancel := b.requestCtx(ctx)
	defer cancel()
	inbox := b.nc.NewRespInbox()
	sub, err := b.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := b.nc.PublishRequest(b.directSubject(), inbox, body); err != nil {
		return nil, err
	}
	var out []*stored
	for {
		msg, err := sub.NextMsgWithContext(rctx)
		if err != nil {
			return nil, err
		}
		switch st := msg.Header.Get("Status"); st {
		case "":
		case "204": // end of batch
			return out, nil
		case "404":
			return out, nil
		default:
			return nil, fmt.Errorf("direct get: %s %s", st, msg.Header.Get("Description"))
		}
		sm, err := decode(msg.Header.Get(jetstream.SubjectHeader), msg.Header, msg.Data)
		if err != nil {
			return nil, err
		}
		out = append(out, sm)
	}
}

func (b *Broker) lastBySubject(ctx context.Context, subj string) (*stored, error) {
	return b.getOne(ctx, getRequest{LastFor: subj})
}

// getFirst is the topic's first message stored at or after t.
func (b *Broker) getFirst(ctx context.Context, subj string, t time.Time) (*stored, error) {
	return b.getOne(ctx, getRequest{NextFor: subj, StartTime: &t})
}

// nextBySubject is the topic's first message at or after stream sequence seq.
func (b *Broker) nextBySubject(ctx context.Context, subj string, seq uint64) (*stored, error) {
	return b.getOne(ctx, getRequest{NextFor: subj, Seq: seq})
}

func (b *Broker) getBySeq(ctx context.Context, seq uint64) (*stored, error) {
	if seq == 0 {
		return nil, nil
	}
	return b.getOne(ctx, getRequest{Seq: seq})
}

// batch reads up to n messages of subj from stream sequence seq on.
func (b *Broker) batch(ctx context.Context, subj string, seq uint64, n int) ([]*stored, error) {
	return b.getMany(ctx, getRequest{NextFor: subj, Seq: seq, Batch: n})
}

// lastOfMany reads the last message of each subject (at most 1024).
func (b *Broker) lastOfMany(ctx context.Context, subjects []string) ([]*stored, error) {
	return b.getMany(ctx, getRequest{MultiLast: subjects, Batch: len(subjects)})
}
