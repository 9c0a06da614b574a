package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketcast/marketcast/engine/throttle"
)

// How often the prober checks the stream: every probeEvery while the node
// can publish; from probeRetry, doubling up to probeEvery, while it cannot.
const (
	probeEvery = time.Second
	probeRetry = 100 * time.Millisecond
)

// remakeAfter is how long a node waits before it makes again a stream that
// was deleted. NATS announces a deletion (and stops answering for the
// stream) before it has removed the old stream's files; a stream of the
// same name made in that window opens the old files, comes up with the old
// stream's state, and then loses its files when the removal ends: acked
// messages vanish and publishes time out (seen here under load, within
// milliseconds of the advisory; nats-server PR 3039 puts the window under
// two seconds).
const remakeAfter = 2 * time.Second

// health is whether the broker can publish, and what it knows of the
// stream's identity.
type health struct {
	mu      sync.Mutex
	reason  string    // why the broker cannot publish; "" when it can
	created time.Time // the stream's creation time
	lastSeq uint64    // the highest stream sequence seen in it
	// missing is when the stream was first seen gone (deleted, or not
	// found after it was once there); zero while it is there.
	missing time.Time
	// reconnected says the node reconnected since it last saw the stream:
	// NATS restarted (without its store, if the stream is gone), and no
	// removal of old files can be under way, so a missing stream is made at
	// once. A deletion seen afterwards clears it.
	reconnected bool
	kickc       chan struct{}
	log         *throttle.Log
}

func (h *health) init(reason string) {
	h.reason = reason
	h.kickc = make(chan struct{}, 1)
}

// kick makes the prober check now.
func (h *health) kick() {
	select {
	case h.kickc <- struct{}{}:
	default:
	}
}

// gone notes that the stream was deleted at now (its advisory), unless
// that was already noted.
func (h *health) gone(now time.Time) {
	h.mu.Lock()
	if h.missing.IsZero() {
		h.missing = now
	}
	h.reconnected = false
	h.mu.Unlock()
}

// present notes that the stream is there.
func (h *health) present() {
	h.mu.Lock()
	h.missing, h.reconnected = time.Time{}, false
	h.mu.Unlock()
}

// reconnect notes that the node reconnected to NATS.
func (h *health) reconnect() {
	h.mu.Lock()
	h.missing, h.reconnected = time.Time{}, true
	h.mu.Unlock()
}

// remakeWait is how long to wait before making the stream, found missing
// at now: nothing for a stream this node never saw (a new deployment) or
// not since it reconnected, else what is left of remakeAfter since it went.
func (h *health) remakeWait(now time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if (h.created.IsZero() && h.missing.IsZero()) || h.reconnected {
		return 0
	}
	if h.missing.IsZero() {
		h.missing = now
	}
	return h.missing.Add(remakeAfter).Sub(now)
}

// Ready is nil while the broker can publish, else why it cannot: NATS is
// unreachable, does not answer, or the stream is missing or has no
// leader. Publishes fail at once (not stored) while it is not nil; the
// node's /readyz reports it.
func (b *Broker) Ready() error {
	b.health.mu.Lock()
	defer b.health.mu.Unlock()
	if b.health.reason != "" {
		return errors.New(b.health.reason)
	}
	return nil
}

// down marks the broker unable to publish, for err, until the prober finds
// the stream answering again.
func (b *Broker) down(err error) {
	reason := b.explain(err).Error()
	b.health.mu.Lock()
	was := b.health.reason
	b.health.reason = reason
	b.health.mu.Unlock()
	if was == "" {
		b.health.log.Warn("cluster cannot publish: publishes answer 503 until it can", "reason", reason)
	}
	b.health.kick()
}

func (b *Broker) up() {
	b.health.mu.Lock()
	was := b.health.reason
	b.health.reason = ""
	b.health.mu.Unlock()
	if was != "" {
		b.log.Info("cluster can publish", "stream", b.cfg.Stream, "after", was)
	}
}

// noteSeq records a stream sequence an ack named: the stream can never be
// shorter than that again unless it was replaced.
func (b *Broker) noteSeq(seq uint64) {
	b.health.mu.Lock()
	b.health.lastSeq = max(b.health.lastSeq, seq)
	b.health.mu.Unlock()
}

// explain says what a NATS error means for the node.
func (b *Broker) explain(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, nats.ErrReconnectBufExceeded), errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrNoServers), !b.nc.IsConnected():
		return fmt.Errorf("NATS unreachable at %s", b.cfg.Server)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return fmt.Errorf("NATS at %s did not answer within %v", b.cfg.Server, b.cfg.Timeout)
	}
	return err
}

// probe checks the stream until the broker closes: every second while all
// is well, sooner after a failure or a kick.
func (b *Broker) probe() {
	defer b.wg.Done()
	wait := probeEvery
	for {
		t := time.NewTimer(wait)
		select {
		case <-b.done:
			t.Stop()
			return
		case <-b.health.kickc:
			t.Stop()
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.cfg.Timeout)
		ok := b.probeOnce(ctx, false)
		cancel()
		switch {
		case ok:
			wait = probeEvery
		case wait >= probeEvery:
			wait = probeRetry
		default:
			wait = min(2*wait, probeEvery)
		}
	}
}

// probeOnce checks that the stream answers and has a leader, making it when
// it is missing (and, with ensure, bringing its settings in line), and
// notices a replaced stream: another creation time, or fewer messages than
// were once acknowledged. It reports whether the broker can publish.
func (b *Broker) probeOnce(ctx context.Context, ensure bool) bool {
	if !b.nc.IsConnected() {
		b.down(nats.ErrConnectionReconnecting)
		return false
	}
	b.health.mu.Lock()
	seen := b.health.lastSeq // before asking: acks that come meanwhile may pass the answer
	b.health.mu.Unlock()
	if ensure {
		if err := b.ensureStream(ctx); err != nil {
			b.down(err)
			return false
		}
	}
	st, err := b.js.Stream(ctx, b.cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if err = b.ensureStream(ctx); err == nil {
			st, err = b.js.Stream(ctx, b.cfg.Stream)
		}
	}
	if err != nil {
		b.down(fmt.Errorf("stream %s: %w", b.cfg.Stream, b.explain(err)))
		return false
	}
	info := st.CachedInfo()
	b.health.present()
	if info.Cluster != nil && info.Cluster.Leader == "" {
		b.down(fmt.Errorf("stream %s has no leader", b.cfg.Stream))
		return false
	}
	b.health.mu.Lock()
	replaced := !b.health.created.IsZero() && (!info.Created.Equal(b.health.created) || info.State.LastSeq < seen)
	b.health.created = info.Created
	if replaced {
		b.health.lastSeq = info.State.LastSeq
	} else {
		b.health.lastSeq = max(b.health.lastSeq, info.State.LastSeq)
	}
	b.health.mu.Unlock()
	if replaced {
		b.replaced(fmt.Sprintf("created %v, %d messages, after %d were acknowledged", info.Created, info.State.LastSeq, seen))
	}
	b.up()
	return true
}

// replaced forgets what the node knew of a stream that was made again or
// restored: no cached head of the old one may name a place in the new one,
// where the old runs do not continue. Watched topics are checked at once.
func (b *Broker) replaced(how string) {
	b.metrics.streamResets.Inc()
	b.heads.clear()
	b.log.Warn("the stream was replaced: its topics start new runs (resumes across it answer recovered: false)",
		"stream", b.cfg.Stream, "now", how)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b.checkHeadsOnce(ctx)
	}()
}

// streamConfig is the stream as this node wants it.
func (b *Broker) streamConfig() jetstream.StreamConfig {
	storage := jetstream.FileStorage
	if b.cfg.Memory {
		storage = jetstream.MemoryStorage
	}
	return jetstream.StreamConfig{
		Name:              b.cfg.Stream,
		Description:       "marketcast private streams: one subject per topic",
		Subjects:          []string{privPrefix + ">"},
		Storage:           storage,
		Replicas:          b.cfg.Replicas,
		MaxMsgsPerSubject: int64(b.cfg.History.Size),
		MaxAge:            b.cfg.MaxAge,
		MaxBytes:          b.cfg.MaxBytes,
		Discard:           jetstream.DiscardOld,
		Duplicates:        b.cfg.Duplicates,
		AllowDirect:       true,
		RePublish:         &jetstream.RePublish{Source: privPrefix + ">", Destination: livePrefix + privPrefix + ">"},
	}
}

// ensureStream creates the stream, or brings an existing one's settings in
// line with the configuration. A stream this node creates starts at a
// random stream sequence, so that no place a node remembers from an
// earlier stream of the same name is a place in this one.
func (b *Broker) ensureStream(ctx context.Context) error {
	want := b.streamConfig()
	st, err := b.js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if wait := b.health.remakeWait(time.Now()); wait > 0 {
			return fmt.Errorf("natsbroker: stream %s was deleted: made again in %v, once NATS has removed the old one",
				want.Name, wait.Round(time.Millisecond))
		}
		want.FirstSeq = 1<<32 + rand.Uint64N(1<<44)
		_, err = b.js.CreateStream(ctx, want)
		switch {
		case errors.Is(err, jetstream.ErrStreamNameAlreadyInUse):
			return nil // another node made it first
		case err == nil:
			b.log.Info("stream created", "stream", want.Name, "replicas", want.Replicas, "first_seq", want.FirstSeq)
			return nil
		}
		return fmt.Errorf("natsbroker: stream %s: %w", want.Name, err)
	}
	if err != nil {
		return fmt.Errorf("natsbroker: stream %s: %w", want.Name, err)
	}
	have := st.CachedInfo().Config
	want.FirstSeq = have.FirstSeq
	if have.Storage != want.Storage {
		return fmt.Errorf("natsbroker: stream %s is stored in %v, configured %v: JetStream cannot change that in place "+
			"(remove the stream, losing every run, or set cluster.stream.storage back)", want.Name, have.Storage, want.Storage)
	}
	if sameStream(have, want) {
		return nil
	}
	if _, err := b.js.UpdateStream(ctx, want); err != nil {
		return fmt.Errorf("natsbroker: stream %s: %w", want.Name, err)
	}
	b.log.Info("stream settings updated", "stream", want.Name)
	return nil
}

// sameStream reports whether the settings this node manages agree.
func sameStream(a, b jetstream.StreamConfig) bool {
	return slices.Equal(a.Subjects, b.Subjects) && a.Replicas == b.Replicas && a.MaxMsgsPerSubject == b.MaxMsgsPerSubject &&
		a.MaxAge == b.MaxAge && a.MaxBytes == b.MaxBytes && a.Discard == b.Discard && a.Duplicates == b.Duplicates &&
		a.AllowDirect == b.AllowDirect && a.RePublish != nil && b.RePublish != nil && *a.RePublish == *b.RePublish
}

// watchAdvisories listens for the stream being deleted, created or
// restored by anyone, so a node learns at once that its cached heads name
// places in a stream that is gone (the prober would notice within a
// second). Without permission for advisories, the prober alone does.
func (b *Broker) watchAdvisories() {
	for _, kind := range []string{"CREATED", "DELETED", "RESTORE_COMPLETE"} {
		deleted := kind == "DELETED"
		sub, err := b.nc.Subscribe("$JS.EVENT.ADVISORY.STREAM."+kind+"."+b.cfg.Stream, func(*nats.Msg) {
			b.heads.clear()
			if deleted {
				b.health.gone(time.Now())
			}
			b.health.kick()
		})
		if err != nil {
			b.log.Warn("no stream advisories: a replaced stream is noticed by the prober", "err", err)
			return
		}
		b.advisories = append(b.advisories, sub)
	}
}
