package natsbroker

import (
	"context"
	crand "crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketcast/marketcast/engine"
)

// Publish implements engine.Broker.
//
// Every attempt of one call carries the same JetStream message id: the
// caller's idempotency key, or one made for the call. So however often an
// attempt is retried (a lost race, a lost answer), JetStream stores the
// message at most once.
//
// The answer is exact. nil: stored. engine.ErrUnavailable: not stored (no
// attempt can still be stored later). engine.ErrOutcomeUnknown: an attempt
// reached NATS and its outcome could not be learned within the bound (NATS
// froze, a leader died): the error names the key a retry must carry to be
// stored at most once. The whole call takes at most Config.Timeout.
//
// Several nodes publishing to one topic at once take turns: the loser of a
// race re-reads the head and tries again after a random pause that grows
// with each loss.
func (b *Broker) Publish(ctx context.Context, m *engine.Message) (*engine.Event, error) {
	if err := b.Ready(); err != nil {
		b.metrics.failed.Inc("not_stored")
		return nil, unavailable(err) // nothing sent
	}
	// The caller going away must not leave an attempt half done: the bound
	// is the broker's.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.Timeout)
	defer cancel()
	p := &publishing{m: m, subj: subject(m.Topic), key: m.IdempotencyKey}
	if p.key == "" {
		p.key = autoKey()
	}
	p.id = msgID(p.subj, p.key)
	ev, err := b.publish(ctx, p)
	switch {
	case err == nil:
		b.metrics.published.Inc()
		return ev, nil
	case p.unknown:
		b.metrics.failed.Inc("unknown")
		return nil, &engine.OutcomeUnknown{Key: p.key, Cause: err}
	}
	b.metrics.failed.Inc("not_stored")
	return nil, unavailable(err)
}

// publishing is one Publish call: its message, its id, and the attempts
// whose outcome is not known.
type publishing struct {
	m        *engine.Message
	subj     string
	key, id  string
	unknown  bool   // an attempt may have been stored (its answer lost, or not to be trusted)
	lowest   uint64 // the lowest subject sequence such an attempt named
	highest  uint64 // the highest
	conflict int    // races lost
	lostRace bool   // the last attempt lost a race (else its answer was lost)
	retries  int
}

func (b *Broker) publish(ctx context.Context, p *publishing) (*engine.Event, error) {
	for try := 0; ; try++ {
		if try > 0 {
			// After a lost race, a random pause that grows with each loss;
			// after a lost answer, a short one (NATS is struggling).
			pause := time.Duration(rand.Int64N(int64(min(time.Millisecond<<min(p.conflict, 6), 50*time.Millisecond)) + 1))
			if !p.lostRace {
				pause = min(10*time.Millisecond<<min(p.retries, 4), 100*time.Millisecond)
			}
			p.retries++
			select {
			case <-ctx.Done():
				if p.conflict > 0 {
					return nil, fmt.Errorf("topic %s: %d conflicting publishes in a row: %w", p.m.Topic, p.conflict, ctx.Err())
				}
				return nil, ctx.Err()
			case <-time.After(pause):
			}
		}
		gen := b.heads.generation()
		h, err := b.head(ctx, p.m.Topic, p.subj, try > 0)
		if err != nil {
			b.failed(err)
			return nil, err
		}
		if p.unknown {
			// Did an earlier attempt land after all?
			own, err := b.findOwn(ctx, p, h)
			if err != nil {
				b.failed(err)
				return nil, err
			}
			if own != nil {
				b.metrics.resolved.Inc()
				b.stored(p.subj, head{last: own.streamSeq, at: own.streamSeq, seq: own.ev.Sequence(), epoch: own.ev.Epoch(), id: own.id}, gen, own.ev)
				return own.ev, nil
			}
			if h.last > p.highest {
				// The subject moved past every subject sequence an earlier
				// attempt named: none of them can ever be stored.
				b.metrics.resolved.Inc()
				p.unknown = false
			}
		}
		seq, epoch := h.seq+1, h.epoch
		if h.at == 0 {
			seq, epoch = 1, engine.NewEpoch() // nothing of marketcast's: a new run
		}
		at := time.Now()
		msg := b.message(p, seq, epoch, at, h.at)
		// A frozen server must leave time to learn what became of the
		// attempt: it gets most of what is left, not all.
		actx, cancel := attemptCtx(ctx)
		send := func() (*jetstream.PubAck, error) {
			return b.js.PublishMsg(actx, msg, jetstream.WithMsgID(p.id), jetstream.WithExpectLastSequencePerSubject(h.last))
		}
		var ack *jetstream.PubAck
		if hook := b.testAttempt.Load(); hook != nil {
			ack, err = (*hook)(b.attempts.Add(1), send)
		} else {
			ack, err = send()
		}
		cancel()
		switch {
		case err == nil && ack.Duplicate:
			// Stored before: by an earlier attempt of this call, or by the
			// caller's earlier call with the same key.
			orig, err := b.get(ctx, getRequest{Seq: ack.Sequence}, true)
			if err != nil || orig == nil || orig.ev == nil {
				if err == nil {
					err = fmt.Errorf("stream sequence %d is gone", ack.Sequence)
				}
				p.unknown = true // it is stored; we cannot say where
				return nil, fmt.Errorf("the original of a duplicate publish: %w", err)
			}
			if orig.ev.Topic() != p.m.Topic {
				return nil, fmt.Errorf("natsbroker: the original of a duplicate publish to %s is a message of %s", p.m.Topic, orig.ev.Topic())
			}
			b.handler.Apply(orig.ev)
			return orig.ev, nil
		case err == nil:
			ev := engine.NewEvent(p.m, seq, epoch, at)
			b.noteSeq(ack.Sequence)
			b.stored(p.subj, head{last: ack.Sequence, at: ack.Sequence, seq: seq, epoch: epoch, id: p.id}, gen, ev)
			return ev, nil
		case isConflict(err):
			// Another message is the subject's last: another node's, or an
			// earlier attempt of ours. Not stored, as a rule; but while a
			// leader changes, a deposed one may still answer (it refuses by
			// its old state) while the new one stores the same message. So
			// the next round checks the stream before anything is said.
			b.metrics.conflicts.Inc()
			b.heads.lost(p.subj, time.Now())
			p.conflict++
			p.lostRace = true
			p.maybeStored(h.last)
		case notStored(err):
			b.failed(err)
			return nil, err
		default:
			// The attempt may have reached NATS: a timeout, a lost
			// connection. Its outcome is learned below, or reported as
			// unknown.
			p.lostRace = false
			p.maybeStored(h.last)
			if ctx.Err() != nil {
				b.down(fmt.Errorf("NATS did not answer a publish within %v", b.cfg.Timeout))
				return nil, err
			}
		}
	}
}

// maybeStored notes an attempt that may have been stored, which named
// last as the subject's last message: until the stream shows it is there
// (found by its id) or can never be (the subject moved past every such
// last), the call cannot say "not stored".
func (p *publishing) maybeStored(last uint64) {
	if !p.unknown || last < p.lowest {
		p.lowest = last
	}
	p.highest = max(p.highest, last)
	p.unknown = true
}

// attemptCtx bounds one attempt to most of what is left of ctx.
func attemptCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	d, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, time.Until(d)*3/5)
}

// message builds the stored message: the topic's sequence, epoch, time and
// envelope in headers, signed.
func (b *Broker) message(p *publishing, seq uint64, epoch string, at time.Time, prev uint64) *nats.Msg {
	m := p.m
	msg := nats.NewMsg(p.subj)
	msg.Data = m.Data
	msg.Header.Set(hdrSeq, strconv.FormatUint(seq, 10))
	msg.Header.Set(hdrEpoch, epoch)
	msg.Header.Set(hdrTime, strconv.FormatInt(at.UnixNano(), 10))
	msg.Header.Set(hdrType, m.Type)
	msg.Header.Set(hdrChannel, m.Channel)
	msg.Header.Set(hdrPrev, strconv.FormatUint(prev, 10))
	if m.StrategyID != "" {
		msg.Header.Set(hdrStrategy, m.StrategyID)
	}
	if m.Broadcast {
		msg.Header.Set(hdrBroadcast, "1")
	}
	b.sign.sign(p.subj, msg)
	return msg
}

// stored records a message of ours now in the stream, and hands it to this
// node's subscribers, who need not wait for the republish.
func (b *Broker) stored(subj string, h head, gen uint64, ev *engine.Event) {
	b.heads.put(subj, h, gen)
	b.handler.Apply(ev)
}

// head returns where the topic stands for a publish: the cached head when
// it can be trusted, else one read. After a first attempt (fresh) it is
// always read, from the leader.
func (b *Broker) head(ctx context.Context, topic, subj string, fresh bool) (head, error) {
	if !fresh {
		if h, ok := b.heads.get(subj, b.watching(topic), time.Now()); ok {
			return h, nil
		}
	}
	gen := b.heads.generation()
	h, _, err := b.readHead(ctx, subj, fresh)
	if err != nil {
		return head{}, err
	}
	b.heads.put(subj, h, gen)
	return h, nil
}

// findOwn looks for a message of this call stored by an attempt whose
// answer was lost: among the topic's messages after the lowest subject
// sequence an attempt named, up to the head h.
func (b *Broker) findOwn(ctx context.Context, p *publishing, h head) (*stored, error) {
	if h.last == 0 || h.last <= p.lowest {
		return nil, nil // nothing after: not stored (yet)
	}
	if h.id == p.id {
		sm, err := b.get(ctx, getRequest{Seq: h.last}, true)
		if err != nil || (sm != nil && sm.ev != nil) {
			return sm, err
		}
	}
	if h.at == h.last && p.lowest == p.highest && h.prev == p.lowest {
		// The head, not ours, was written right after the one message
		// every attempt named: nothing of ours lies between.
		return nil, nil
	}
	for next := p.lowest + 1; next <= h.last; {
		sm, err := b.get(ctx, getRequest{NextFor: p.subj, Seq: next}, true)
		if err != nil || sm == nil {
			return nil, err
		}
		if sm.id == p.id && sm.ev != nil {
			return sm, nil
		}
		next = sm.streamSeq + 1
	}
	return nil, nil
}

// failed notes a failure to reach the stream: NATS unreachable, silent, or
// without the stream; the node then refuses publishes (unsent) until the
// prober finds it answering again. Other errors say nothing of the stream.
func (b *Broker) failed(err error) {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		b.heads.clear() // the stream may be gone; the prober makes it again
		b.down(fmt.Errorf("stream %s does not answer (gone?)", b.cfg.Stream))
	case errors.As(err, &apiErr) && apiErr.Code != 503:
	case errors.Is(err, context.Canceled):
	default:
		b.down(err)
	}
}

// notStored reports whether err proves a publish attempt was not stored:
// NATS answered it with an error, nobody took it, or it was never sent.
func notStored(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrReconnectBufExceeded) || errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, nats.ErrInvalidConnection)
}

func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// msgID is the JetStream message id of a publish to subj with an
// idempotency key: unique per topic, as the key is.
func msgID(subj, key string) string { return subj + "|" + key }

// autoKey is the idempotency key of a call that brought none.
func autoKey() string {
	var b [15]byte
	_, _ = crand.Read(b[:]) // crypto/rand never fails on Linux
	return "mc-" + base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])
}

// unavailable wraps a failure to store for the publish API (503).
func unavailable(err error) error { return fmt.Errorf("%w: %v", engine.ErrUnavailable, err) }
