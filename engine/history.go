package engine

import "time"

// history keeps the most recent events of a reliable topic, bounded by count
// and by age, for resume. It is guarded by its topic's mutex.
type history struct {
	buf    []*Event // ring
	head   int      // index of the oldest event
	n      int
	maxAge time.Duration
}

func newHistory(maxAge time.Duration) *history {
	return &history{maxAge: maxAge}
}

// add appends e, evicting the oldest event once size events are held. The
// ring grows by doubling so that a quiet topic holds little memory.
func (h *history) add(e *Event, size int) {
	if h.n == len(h.buf) && len(h.buf) < size {
		grown := make([]*Event, h.n, min(max(2*h.n, 8), size))
		for i := 0; i < h.n; i++ {
			grown[i] = h.buf[(h.head+i)%len(h.buf)]
		}
		h.buf, h.head = grown[:cap(grown)], 0
	}
	if h.n < len(h.buf) {
		h.buf[(h.head+h.n)%len(h.buf)] = e
		h.n++
		return
	}
	h.buf[h.head] = e // full: overwrite the oldest
	h.head = (h.head + 1) % len(h.buf)
}

// expire forgets events older than maxAge.
func (h *history) expire(now time.Time) {
	if h.maxAge <= 0 {
		return
	}
	cutoff := now.Add(-h.maxAge)
	for h.n > 0 && h.buf[h.head].env.Timestamp.Before(cutoff) {
		h.buf[h.head] = nil
		h.head = (h.head + 1) % len(h.buf)
		h.n--
	}
}

// after returns the events with a sequence greater than since, oldest first,
// and whether history reaches back far enough to make that complete. seq is
// the topic's latest sequence.
func (h *history) after(since, seq uint64, now time.Time) ([]*Event, bool) {
	if since > seq {
		return nil, false // the client saw a sequence this topic never had: a reset
	}
	if since == seq {
		return nil, true
	}
	h.expire(now)
	if h.n == 0 || h.buf[h.head].env.Sequence > since+1 {
		return nil, false
	}
	out := make([]*Event, 0, seq-since)
	for i := 0; i < h.n; i++ {
		e := h.buf[(h.head+i)%len(h.buf)]
		if e.env.Sequence > since {
			out = append(out, e)
		}
	}
	return out, true
}
