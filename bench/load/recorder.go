// Package load is the load generator's machinery: targets (marketcast and
// Centrifugo, started as real processes), latency recording in HDR
// histograms, and process CPU and memory readings from /proc.
package load

import (
	"bytes"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Recorder collects delivery latencies from many connections. Histograms
// are sharded so connections rarely share a lock.
type Recorder struct {
	shards    [64]recShard
	delivered atomic.Int64
}

type recShard struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

// NewRecorder returns an empty recorder for latencies from 1 µs to 60 s.
func NewRecorder() *Recorder {
	r := &Recorder{}
	for i := range r.shards {
		r.shards[i].h = hdrhistogram.New(1, 60_000_000, 3) // microseconds
	}
	return r
}

// Record adds one delivery's latency, from connection conn.
func (r *Recorder) Record(conn int, d time.Duration) {
	s := &r.shards[conn%len(r.shards)]
	us := max(d.Microseconds(), 1)
	s.mu.Lock()
	_ = s.h.RecordValue(us)
	s.mu.Unlock()
	r.delivered.Add(1)
}

// Count adds a delivery whose latency was not sampled.
func (r *Recorder) Count() { r.delivered.Add(1) }

// Delivered is the number of deliveries, sampled or not.
func (r *Recorder) Delivered() int64 { return r.delivered.Load() }

// Snapshot merges the shards and resets them.
func (r *Recorder) Snapshot(reset bool) *hdrhistogram.Histogram {
	out := hdrhistogram.New(1, 60_000_000, 3)
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		out.Merge(s.h)
		if reset {
			s.h.Reset()
		}
		s.mu.Unlock()
	}
	return out
}

// Quantiles summarises a histogram in milliseconds.
type Quantiles struct {
	Count                    int64
	P50, P99, P999, Max, Avg float64
}

// Summarise reads the usual quantiles.
func Summarise(h *hdrhistogram.Histogram) Quantiles {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Quantiles{
		Count: h.TotalCount(),
		P50:   ms(h.ValueAtQuantile(50)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()), Avg: h.Mean() / 1000,
	}
}

func (q Quantiles) String() string {
	return fmt.Sprintf("n=%d p50=%.2fms p99=%.2fms p99.9=%.2fms max=%.2fms", q.Count, q.P50, q.P99, q.P999, q.Max)
}

var sentKey = []byte(`"sent":"`)
var tsKey = []byte(`"timestamp":"`)

// SentAt finds when a message was meant to be sent: the "sent" key the load
// generator puts in what it publishes (unix nanoseconds of the scheduled
// time), or else the envelope's timestamp (milliseconds: the simulator's
// messages carry no send time of their own).
func SentAt(msg []byte) (time.Time, bool) {
	if i := bytes.Index(msg, sentKey); i >= 0 {
		rest := msg[i+len(sentKey):]
		if j := bytes.IndexByte(rest, '"'); j > 0 {
			if ns, err := strconv.ParseInt(string(rest[:j]), 10, 64); err == nil {
				return time.Unix(0, ns), true
			}
		}
	}
	if i := bytes.LastIndex(msg, tsKey); i >= 0 {
		rest := msg[i+len(tsKey):]
		if j := bytes.IndexByte(rest, '"'); j > 0 {
			if t, err := time.Parse(time.RFC3339Nano, string(rest[:j])); err == nil {
				return t, true
			}
		}
	}
	return time.Time{}, false
}
