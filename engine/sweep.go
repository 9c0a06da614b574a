package engine

import (
	"context"
	"time"
)

// Sweep forgets what no one can still need: it expires reliable topics'
// history by age and removes reliable topics that have no subscriber, no
// history left and no event newer than the history TTL. Without it every
// user ever published to would keep a topic forever. A removed topic starts
// again at sequence 1; a client resuming from an older sequence is told
// recovered:false, which is the truth. It returns how many topics it removed.
func (h *Hub) Sweep(now time.Time) int {
	removed := 0
	cutoff := now.Add(-h.cfg.HistoryTTL)
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for key, t := range sh.topics {
			if t.mode != Reliable {
				continue // market topics are few and their latest state is the point
			}
			t.mu.Lock()
			t.history.expire(now)
			idle := len(t.subs) == 0 && t.history.n == 0 && (t.last == nil || t.last.env.Timestamp.Before(cutoff))
			if idle {
				// A publish or subscribe that found the topic before we took
				// the shard lock sees this and looks it up again.
				t.dead = true
			}
			t.mu.Unlock()
			if idle {
				delete(sh.topics, key)
				removed++
			}
		}
		sh.mu.Unlock()
	}
	if removed > 0 {
		h.metrics.topics.Add(float64(-removed))
		h.metrics.swept.Add(removed)
	}
	return removed
}

// RunSweeper calls Sweep every interval until ctx ends.
func (h *Hub) RunSweeper(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			h.Sweep(now)
		}
	}
}
