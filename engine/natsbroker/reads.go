package natsbroker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/textproto"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketcast/marketcast/engine"
)

// stored is a message of the stream.
type stored struct {
	subj      string // the topic's subject
	streamSeq uint64 // its place in the stream
	id        string // its JetStream message id
	// ev is the message as an engine event; nil when marketcast did not
	// write it (undecodable, unsigned, or signed with another key).
	ev *engine.Event
	// prev is the stream sequence of the topic's message before it, as its
	// writer saw it (Mc-Prev).
	prev uint64
}

// errNotGenuine says why a message is not one marketcast wrote.
var errNotGenuine = errors.New("not written by marketcast")

// decode turns a message of subj into a stored message. A message without
// a valid signature comes back with no event and an error saying why; the
// caller skips it.
func (b *Broker) decode(subj string, h nats.Header, data []byte) (*stored, error) {
	sm := &stored{subj: subj, id: h.Get(jetstream.MsgIDHeader)}
	sm.streamSeq, _ = strconv.ParseUint(h.Get(jetstream.SequenceHeader), 10, 64)
	topic, ok := topicOf(subj)
	if !ok {
		return sm, fmt.Errorf("%w: subject %q is not a topic", errNotGenuine, subj)
	}
	if !b.sign.valid(subj, h, data) {
		return sm, fmt.Errorf("%w: no valid %s", errNotGenuine, hdrSig)
	}
	seq, err := strconv.ParseUint(h.Get(hdrSeq), 10, 64)
	if err != nil || seq == 0 {
		return sm, fmt.Errorf("%w: header %s %q", errNotGenuine, hdrSeq, h.Get(hdrSeq))
	}
	ns, err := strconv.ParseInt(h.Get(hdrTime), 10, 64)
	if err != nil {
		return sm, fmt.Errorf("%w: header %s %q", errNotGenuine, hdrTime, h.Get(hdrTime))
	}
	epoch := h.Get(hdrEpoch)
	if epoch == "" {
		return sm, fmt.Errorf("%w: no %s", errNotGenuine, hdrEpoch)
	}
	sm.prev, _ = strconv.ParseUint(h.Get(hdrPrev), 10, 64)
	m := &engine.Message{Topic: topic, Mode: engine.Reliable, Type: h.Get(hdrType), Channel: h.Get(hdrChannel),
		StrategyID: h.Get(hdrStrategy), Broadcast: h.Get(hdrBroadcast) == "1", Data: data}
	sm.ev = engine.NewEvent(m, seq, epoch, time.Unix(0, ns))
	return sm, nil
}

// rejected counts and logs (at a bounded rate) a message marketcast did
// not write, found at subject.
func (b *Broker) rejected(subject string, err error) {
	b.metrics.undecodable.Inc()
	b.rejectLog.Warn("message not written by marketcast ignored", "subject", subject, "err", err)
}

// getRequest is JetStream's message get request (the server's
// JSApiMsgGetRequest; nats.go wraps only part of it).
type getRequest struct {
	Seq       uint64     `json:"seq,omitempty"`
	LastFor   string     `json:"last_by_subj,omitempty"`
	NextFor   string     `json:"next_by_subj,omitempty"`
	Batch     int        `json:"batch,omitempty"`
	StartTime *time.Time `json:"start_time,omitempty"`
	MultiLast []string   `json:"multi_last,omitempty"`
	UpToSeq   uint64     `json:"up_to_seq,omitempty"`
}

func (b *Broker) directSubject() string { return "$JS.API.DIRECT.GET." + b.cfg.Stream }

// get reads one message: nil when there is none. A fresh read comes from
// the stream's leader, which has every acknowledged message; any other
// is a direct get, which any replica may answer, one that lags included
// (on one server they are the same).
func (b *Broker) get(ctx context.Context, req getRequest, fresh bool) (*stored, error) {
	if fresh && b.cfg.Replicas > 1 {
		return b.getFromLeader(ctx, req)
	}
	subject, body := b.directSubject(), []byte(nil)
	if req.LastFor != "" && req.UpToSeq == 0 && len(req.MultiLast) == 0 {
		// The last message of a subject, the commonest read (a publish's
		// head): the subject goes in the request's subject, no JSON at
		// either end.
		subject += "." + req.LastFor
	} else {
		body, _ = json.Marshal(req)
	}
	rctx, cancel := b.requestCtx(ctx)
	defer cancel()
	msg, err := b.nc.RequestWithContext(rctx, subject, body)
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
	return b.decodeMsg(msg), nil
}

// decodeMsg decodes a direct get's answer; one that is not a valid
// marketcast message is reported (rejected) and has no event.
func (b *Broker) decodeMsg(msg *nats.Msg) *stored {
	subj := msg.Header.Get(jetstream.SubjectHeader)
	sm, err := b.decode(subj, msg.Header, msg.Data)
	if err != nil {
		b.rejected(subj, err)
	}
	return sm
}

// getFromLeader reads one message through the stream leader's message get
// API.
func (b *Broker) getFromLeader(ctx context.Context, req getRequest) (*stored, error) {
	body, _ := json.Marshal(req)
	rctx, cancel := b.requestCtx(ctx)
	defer cancel()
	msg, err := b.nc.RequestWithContext(rctx, "$JS.API.STREAM.MSG.GET."+b.cfg.Stream, body)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Error   *jetstream.APIError `json:"error"`
		Message *struct {
			Subject string `json:"subject"`
			Seq     uint64 `json:"seq"`
			Header  []byte `json:"hdrs"`
			Data    []byte `json:"data"`
		} `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, fmt.Errorf("message get: %w", err)
	}
	if resp.Error != nil {
		if resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound {
			return nil, nil
		}
		return nil, fmt.Errorf("message get: %w", resp.Error)
	}
	if resp.Message == nil {
		return nil, errors.New("message get: empty answer")
	}
	h, err := parseHeader(resp.Message.Header)
	if err != nil {
		return nil, fmt.Errorf("message get: %w", err)
	}
	h.Set(jetstream.SequenceHeader, strconv.FormatUint(resp.Message.Seq, 10))
	sm, err := b.decode(resp.Message.Subject, h, resp.Message.Data)
	if err != nil {
		b.rejected(resp.Message.Subject, err)
	}
	return sm, nil
}

// parseHeader reads a NATS header block ("NATS/1.0\r\nKey: value\r\n\r\n").
func parseHeader(raw []byte) (nats.Header, error) {
	h := nats.Header{}
	if len(raw) == 0 {
		return h, nil
	}
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(raw)))
	if _, err := r.ReadLine(); err != nil { // NATS/1.0
		return nil, err
	}
	mh, err := r.ReadMIMEHeader()
	if err != nil && len(mh) == 0 {
		return h, nil
	}
	for k, v := range mh {
		h[k] = v
	}
	return h, nil
}

// getMany sends a direct get answered by several messages and an end of
// batch; messages marketcast did not write come back without an event.
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
		case "204", "404": // end of batch; nothing at all
			return out, nil
		default:
			return nil, fmt.Errorf("direct get: %s %s", st, msg.Header.Get("Description"))
		}
		out = append(out, b.decodeMsg(msg))
	}
}

// maxSkipped bounds how many messages marketcast did not write a read
// steps over at one topic's head: beyond, the topic has no run left (its
// next publish starts a new one), so such messages can never block it.
const maxSkipped = 32

// readHead reads where subj stands: its last message, and the last one
// marketcast wrote, stepping back over any it did not.
func (b *Broker) readHead(ctx context.Context, subj string, fresh bool) (head, *stored, error) {
	sm, err := b.get(ctx, getRequest{LastFor: subj}, fresh)
	if err != nil || sm == nil {
		return head{}, nil, err
	}
	h := head{last: sm.streamSeq, id: sm.id}
	for range maxSkipped {
		if sm.ev != nil {
			h.at, h.seq, h.epoch, h.prev = sm.streamSeq, sm.ev.Sequence(), sm.ev.Epoch(), sm.prev
			return h, sm, nil
		}
		if sm.streamSeq <= 1 {
			break
		}
		ms, err := b.getMany(ctx, getRequest{MultiLast: []string{subj}, UpToSeq: sm.streamSeq - 1, Batch: 1})
		if err != nil {
			return head{}, nil, err
		}
		if len(ms) == 0 {
			break
		}
		sm = ms[0]
	}
	return h, nil, nil // nothing marketcast wrote: a new run starts
}

// History implements engine.Broker. The decision a resume takes from it
// (the head, the oldest event in the window, the event before that) is
// read from the stream's leader, never from a replica that lags.
func (b *Broker) History(ctx context.Context, topic string, after uint64, limit int) (engine.History, error) {
	subj := subject(topic)
	gen := b.heads.generation()
	hd, last, err := b.readHead(ctx, subj, true)
	if err != nil {
		return engine.History{}, unavailable(err)
	}
	if last == nil {
		return engine.History{}, nil
	}
	b.heads.put(subj, hd, gen)
	h := engine.History{Last: last.ev}
	// The resume window: the stream keeps a topic longer (so its run
	// survives idle spells), but a resume may replay only what is younger
	// than the history TTL.
	first, err := b.windowStart(ctx, subj, time.Now().Add(-b.cfg.History.TTL), last)
	if err != nil {
		return engine.History{}, unavailable(err)
	}
	if first == nil {
		return h, nil
	}
	h.First = first.ev.Sequence()
	if limit <= 0 || after >= last.ev.Sequence() {
		return h, nil
	}
	from := max(after+1, h.First)
	events, err := b.read(ctx, subj, first, last, from, limit)
	if err != nil {
		return engine.History{}, unavailable(err)
	}
	h.Events = events
	return h, nil
}

// windowStart is the oldest message of last's run within the resume
// window that a resume can start from: nil when none is. A resume from
// before it (since = its sequence − 1) is sound only if the message its
// Mc-Prev names, when the stream still has it, is the run's previous one;
// when it is something else (the stream was replaced and a writer with a
// stale head continued an old run into it), the window starts one later.
func (b *Broker) windowStart(ctx context.Context, subj string, start time.Time, last *stored) (*stored, error) {
	sm, err := b.get(ctx, getRequest{NextFor: subj, StartTime: &start}, true)
	for skipped := 0; err == nil && sm != nil && sm.ev == nil && skipped < maxSkipped && sm.streamSeq < last.streamSeq; skipped++ {
		sm, err = b.get(ctx, getRequest{NextFor: subj, Seq: sm.streamSeq + 1}, true)
	}
	if err != nil || sm == nil || sm.ev == nil || sm.ev.Epoch() != last.ev.Epoch() {
		return nil, err
	}
	if sm.ev.Sequence() == 1 {
		return sm, nil // the run's start
	}
	prev, err := b.get(ctx, getRequest{Seq: sm.prev}, true)
	if err != nil {
		return nil, err
	}
	if prev == nil || (prev.ev != nil && prev.ev.Topic() == sm.ev.Topic() && prev.ev.Epoch() == sm.ev.Epoch() &&
		prev.ev.Sequence()+1 == sm.ev.Sequence()) {
		// The run's previous message, or one gone by the stream's limits
		// (older than its age, beyond its count).
		return sm, nil
	}
	if sm.streamSeq == last.streamSeq {
		return nil, nil
	}
	next, err := b.get(ctx, getRequest{NextFor: subj, Seq: sm.streamSeq + 1}, true)
	if err != nil || next == nil || next.ev == nil || next.ev.Epoch() != sm.ev.Epoch() || next.ev.Sequence() != sm.ev.Sequence()+1 {
		return nil, err
	}
	return next, nil
}

// read returns up to limit events of subj from sequence from on, first and
// last being the oldest message in the window and the newest; it stops
// early at a hole, and the caller sees the short read.
func (b *Broker) read(ctx context.Context, subj string, first, last *stored, from uint64, limit int) ([]*engine.Event, error) {
	if n := last.ev.Sequence() - from + 1; n <= 16 && int(n) <= limit {
		// A short gap, the common resume: walk back from the head along the
		// stored back-links, one read per event.
		out := make([]*engine.Event, n)
		cur := last
		for i := int(n) - 1; i >= 0; i-- {
			out[i] = cur.ev
			if i == 0 {
				break
			}
			prev, err := b.get(ctx, getRequest{Seq: cur.prev}, true)
			if err != nil {
				return nil, err
			}
			if prev == nil || prev.ev == nil || prev.ev.Epoch() != cur.ev.Epoch() || prev.ev.Sequence()+1 != cur.ev.Sequence() {
				return out[i:], nil // evicted under us: a short read
			}
			cur = prev
		}
		return out, nil
	}
	start, err := b.locate(ctx, subj, first, last, from)
	if err != nil {
		return nil, err
	}
	msgs, err := b.getMany(ctx, getRequest{NextFor: subj, Seq: start, Batch: limit})
	if err != nil {
		return nil, err
	}
	out := make([]*engine.Event, 0, len(msgs))
	next := start
	for len(out) < limit {
		var sm *stored
		if len(msgs) > 0 {
			sm, msgs = msgs[0], msgs[1:]
		} else {
			if next > last.streamSeq {
				break // the head is read
			}
			// A replica that lags ended the batch early: the rest from the
			// leader.
			if sm, err = b.get(ctx, getRequest{NextFor: subj, Seq: next}, true); err != nil {
				return nil, err
			}
			if sm == nil {
				break
			}
		}
		next = sm.streamSeq + 1
		if sm.ev == nil || (sm.ev.Epoch() == last.ev.Epoch() && sm.ev.Sequence() < from) {
			continue // not marketcast's (counted by the read), or before from
		}
		if sm.ev.Epoch() != last.ev.Epoch() || sm.ev.Sequence() != from+uint64(len(out)) {
			break // a hole: the caller sees a short read and reports it
		}
		out = append(out, sm.ev)
		if sm.streamSeq >= last.streamSeq {
			break
		}
	}
	return out, nil
}

// locate returns a stream sequence at or before the topic's event with
// sequence want (and after any earlier event of the topic), bisecting the
// stream between the oldest message in the window and the newest: both
// sequences grow together. Messages marketcast did not write are stepped
// over.
func (b *Broker) locate(ctx context.Context, subj string, first, last *stored, want uint64) (uint64, error) {
	if first.ev.Sequence() >= want {
		return first.streamSeq, nil
	}
	lo, hi := first.streamSeq, last.streamSeq // lo's event is before want; hi's is want or later
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		sm, err := b.get(ctx, getRequest{NextFor: subj, Seq: mid}, true)
		for skipped := 0; err == nil && sm != nil && sm.ev == nil && skipped < maxSkipped && sm.streamSeq < hi; skipped++ {
			sm, err = b.get(ctx, getRequest{NextFor: subj, Seq: sm.streamSeq + 1}, true)
		}
		switch {
		case err != nil:
			return 0, err
		case sm == nil || sm.ev == nil || sm.streamSeq >= hi || sm.ev.Sequence() > want:
			hi = mid // nothing before want in [mid, hi)
		case sm.ev.Sequence() == want:
			return sm.streamSeq, nil
		default:
			lo = sm.streamSeq
		}
	}
	return lo + 1, nil
}

// lastOfMany reads the last message of each subject (at most 1024).
func (b *Broker) lastOfMany(ctx context.Context, subjects []string) ([]*stored, error) {
	return b.getMany(ctx, getRequest{MultiLast: subjects, Batch: len(subjects)})
}
