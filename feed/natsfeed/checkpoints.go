package natsfeed

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// CheckpointBucket is the JetStream key-value bucket keeping each symbol's
// forming bars (its bar builder's state), one key per symbol, so a node
// that restarts goes on with its symbols and the bars it was building.
const CheckpointBucket = "MC_FORMING"

// checkpointTTL is how long a symbol's state is kept after its last
// change: longer than the longest exchange holiday, so a quiet symbol's
// catalogue entry survives it; a delisted contract's goes in the end.
const checkpointTTL = 14 * 24 * time.Hour

// maxCheckpoint bounds one symbol's state (six bars: about 1.5 KB).
const maxCheckpoint = 16 << 10

// Checkpoints keeps forming bars in the CheckpointBucket. Every node of a
// cluster builds the same bars from the same ticks, so one key per symbol
// serves them all: the last writer's state is as good as any.
type Checkpoints struct {
	js       jetstream.JetStream
	replicas int
}

// NewCheckpoints returns checkpoints on nc kept with the given replicas
// (Ensure makes the bucket, as the node's other streams: NATS may be away
// when the node starts).
func NewCheckpoints(nc *nats.Conn, replicas int) *Checkpoints {
	// A checkpoint saves every symbol that traded: room for a full
	// catalogue's acks in flight.
	js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1<<17)) // fails only for invalid options
	return &Checkpoints{js: js, replicas: max(replicas, 1)}
}

// Ensure creates (or updates) the bucket.
func (c *Checkpoints) Ensure(ctx context.Context) error {
	_, err := c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:       CheckpointBucket,
		Description:  "marketcast: each symbol's forming bars, for a node that restarts",
		History:      1,
		TTL:          checkpointTTL,
		MaxValueSize: maxCheckpoint,
		Storage:      jetstream.FileStorage,
		Replicas:     c.replicas,
	})
	if err != nil {
		return fmt.Errorf("natsfeed: bucket %s: %w", CheckpointBucket, err)
	}
	return nil
}

// Save keeps a symbol's state without waiting for the store's ack (Sync
// waits for them all): a lost one costs at most the ticks since the one
// before, on a restart.
func (c *Checkpoints) Save(symbol string, state []byte) {
	if len(state) > maxCheckpoint {
		return
	}
	_, _ = c.js.PublishAsync(checkpointPrefix+symbol, state)
}

// Sync waits until the store has acknowledged every state saved so far (a
// node that stops calls it after its last checkpoint), or ctx ends.
func (c *Checkpoints) Sync(ctx context.Context) error {
	select {
	case <-c.js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("natsfeed: checkpoints not all stored: %w", ctx.Err())
	}
}

// Load calls f with every symbol's last state.
//
// A key-value watch says it has sent every key's value with a marker that
// the client library derives from the consumer's pending count; on a NATS
// server that has just restarted, under load, it once came before every
// key had been sent, and a symbol was not restored (make test-busy). So
// Load checks what it got against the bucket's own count of keys and reads
// each one the watch did not send.
func (c *Checkpoints) Load(ctx context.Context, f func(symbol string, state []byte)) error {
	kv, err := c.js.KeyValue(ctx, CheckpointBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil // nothing was ever saved
	}
	if err != nil {
		return fmt.Errorf("natsfeed: checkpoints: %w", err)
	}
	seen := make(map[string]bool)
	if err := c.watch(ctx, kv, func(e jetstream.KeyValueEntry) {
		seen[e.Key()] = true
		if e.Operation() == jetstream.KeyValuePut {
			f(e.Key(), e.Value())
		}
	}); err != nil {
		return err
	}
	st, err := c.js.Stream(ctx, "KV_"+CheckpointBucket)
	if err != nil {
		return fmt.Errorf("natsfeed: checkpoints: %w", err)
	}
	if st.CachedInfo().State.NumSubjects <= uint64(len(seen)) {
		return nil
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(checkpointPrefix+">"))
	if err != nil {
		return fmt.Errorf("natsfeed: checkpoints: %w", err)
	}
	for subject := range info.State.Subjects {
		key := strings.TrimPrefix(subject, checkpointPrefix)
		if seen[key] {
			continue
		}
		e, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound): // deleted or expired meanwhile
		case err != nil:
			return fmt.Errorf("natsfeed: checkpoints: %w", err)
		default:
			f(key, e.Value())
		}
	}
	return nil
}

// checkpointPrefix is the subject prefix of the bucket's keys.
const checkpointPrefix = "$KV." + CheckpointBucket + "."

// watch calls f with every key's last entry (deletes included) until the
// watch says it has sent them all, or ctx ends.
func (c *Checkpoints) watch(ctx context.Context, kv jetstream.KeyValue, f func(jetstream.KeyValueEntry)) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil
		}
		return fmt.Errorf("natsfeed: checkpoints: %w", err)
	}
	defer func() { _ = w.Stop() }()
	sent := 0
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return nil
			}
			if e == nil { // every key's current value has been sent, says the library
				return nil
			}
			if sent++; testWatchCut > 0 && sent >= testWatchCut {
				return nil
			}
			f(e)
		}
	}
}

// testWatchCut, when > 0, ends a watch before its testWatchCut-th entry,
// as the early end marker did (see Load); tests set it.
var testWatchCut int
