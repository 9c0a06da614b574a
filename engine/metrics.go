package engine

import (
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/marketcast/marketcast/engine/metric"
)

// hubMetrics are updated per publish or per flush, never per subscriber per
// message, so they cost nothing measurable on the fan-out path.
type hubMetrics struct {
	set           *metrics.Set
	published     *metrics.Counter
	encoded       *metrics.Counter
	delivered     *metrics.Counter
	framesOut     *metrics.Counter
	bytesOut      *metrics.Counter
	conflated     *metrics.Counter
	deflateIn     *metrics.Counter
	deflateOut    *metrics.Counter
	writeErrors   *metrics.Counter
	slowConsumers *metrics.Counter
	resumes       *metrics.Counter
	resumeMisses  *metrics.Counter
	resumeLost    *metrics.Counter
	swept         *metrics.Counter
	publishErrors *metrics.Counter
	duplicates    *metrics.Counter
	gaps          *metrics.Counter
	backfills     *metrics.Counter
	resets        *metrics.Counter
	topics        *metrics.Gauge
	subscriptions *metrics.Gauge
	batchSize     *metric.FastHistogram
	lag           *metric.FastHistogram

	// Slow terminals (docs/OPERATIONS.md, "Slow terminals").
	writeTimeouts   *metrics.Counter
	droppedEnded    *metrics.Counter
	creditGranted   *metrics.Counter
	creditWaits     *metrics.Counter
	flowConnections *metrics.Gauge
	connLag         *metrics.PrometheusHistogram
	connLagMax      *metrics.Gauge
}

// lagBuckets, in seconds, for a connection's lag: a healthy one owes
// nothing older than a few milliseconds; a stopped one is given up on after
// delivery.write_timeout; a paused client with flow control may wait longer.
var lagBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

func newHubMetrics() *hubMetrics {
	s := metrics.NewSet()
	return &hubMetrics{
		set:           s,
		published:     metric.Counter(s, "marketcast_published_total", "Events the hub accepted for fan-out (market data and private messages)"),
		encoded:       metric.Counter(s, "marketcast_frames_encoded_total", "Frame encodings, once per event and variant (projection, deflate)"),
		delivered:     metric.Counter(s, "marketcast_messages_sent_total", "Data messages written to subscribers"),
		framesOut:     metric.Counter(s, "marketcast_frames_written_total", "WebSocket frames written, answers and pings included"),
		bytesOut:      metric.Counter(s, "marketcast_sent_bytes_total", "Bytes written to WebSocket connections"),
		conflated:     metric.Counter(s, "marketcast_conflated_total", "Frames replaced by a newer one before a subscriber got them (a slow socket, no credit, or interval_ms)"),
		deflateIn:     metric.Counter(s, "marketcast_deflate_in_bytes_total", "Payload bytes given to permessage-deflate"),
		deflateOut:    metric.Counter(s, "marketcast_deflate_out_bytes_total", "Bytes permessage-deflate produced (ratio: out / in)"),
		writeErrors:   metric.Counter(s, "marketcast_write_errors_total", "Connection writes that failed (a timeout is marketcast_write_timeouts_total)"),
		slowConsumers: metric.Counter(s, "marketcast_slow_consumer_closes_total", "Connections closed with 4008: their backlog passed delivery.max_pending_bytes, or their socket took nothing for delivery.write_timeout"),
		resumes:       metric.Counter(s, "marketcast_resumes_total", "Subscribes that resumed a private stream with since"),
		resumeMisses:  metric.Counter(s, "marketcast_resumes_unrecovered_total", "Resumes answered recovered: false (another epoch, or history no longer reaching back)"),
		resumeLost:    metric.Counter(s, "marketcast_resumes_lost_total", "Replays cut short with 4009 because history was evicted under them"),
		swept:         metric.Counter(s, "marketcast_topics_swept_total", "Private topics this node stopped following after their last subscriber left"),
		publishErrors: metric.Counter(s, "marketcast_publish_errors_total", "Reliable publishes the broker refused (the publish API answered 503)"),
		duplicates:    metric.Counter(s, "marketcast_stream_duplicates_total", "Reliable events the hub received twice and dropped"),
		gaps:          metric.Counter(s, "marketcast_stream_gaps_total", "Reliable events received past a gap in their stream"),
		backfills:     metric.Counter(s, "marketcast_stream_backfills_total", "Backfills from the broker that closed a gap"),
		resets:        metric.Counter(s, "marketcast_stream_resets_total", "Reliable streams that started a new run while subscribed (subscribers got 4009)"),
		topics:        metric.Gauge(s, "marketcast_topics", "Topics in the registry", nil),
		subscriptions: metric.Gauge(s, "marketcast_subscriptions", "Live subscriptions", nil),
		batchSize:     metric.NewFastHistogram(s, "marketcast_flush_batch_frames", "Frames per connection write (writev): batching at work", metric.CountBuckets),
		lag: metric.NewFastHistogram(s, "marketcast_publish_to_flush_seconds",
			"From the engine accepting an event to its write to a connection, one sample per delivery", metric.LatencyBuckets),

		writeTimeouts: metric.Counter(s, "marketcast_write_timeouts_total",
			"Connections given up on after delivery.write_timeout without a byte accepted (each also a 4008)"),
		droppedEnded: metric.Counter(s, "marketcast_unsubscribed_dropped_total",
			"Queued messages dropped because their subscription ended first"),
		creditGranted: metric.Counter(s, "marketcast_credit_granted_total", "Flow-control credit granted by clients"),
		creditWaits: metric.Counter(s, "marketcast_credit_waits_total",
			"Times a connection had pushed messages waiting for credit (once per wait)"),
		flowConnections: metric.Gauge(s, "marketcast_flow_controlled_connections", "Connections with flow control on", nil),
		connLag: metric.Histogram(s, "marketcast_connection_lag_seconds",
			"Every connection's lag sampled once a second: the age of the oldest live message it is owed", lagBuckets),
		connLagMax: metric.Gauge(s, "marketcast_connection_lag_max_seconds", "The worst connection's lag at the last sample", nil),
	}
}

// ObserveLag records one round of per-connection lag samples (each
// connection's Outbox.Lag, taken together): their distribution, and the
// worst of them. The gateway samples every connection once a second, so the
// histogram counts connection-seconds by lag.
func (h *Hub) ObserveLag(lags []time.Duration) {
	worst := time.Duration(0)
	for _, l := range lags {
		h.metrics.connLag.Update(l.Seconds())
		worst = max(worst, l)
	}
	h.metrics.connLagMax.Set(worst.Seconds())
}

// Stats is a point-in-time summary of the hub's counters.
type Stats struct {
	Published     uint64
	Delivered     uint64
	BytesOut      uint64
	Conflated     uint64
	SlowConsumers uint64
	WriteErrors   uint64
	Topics        uint64
	Subscriptions uint64
	DeflateIn     uint64
	DeflateOut    uint64
}

// Stats returns the hub's counters.
func (h *Hub) Stats() Stats {
	m := h.metrics
	return Stats{
		Published:     m.published.Get(),
		Delivered:     m.delivered.Get(),
		BytesOut:      m.bytesOut.Get(),
		Conflated:     m.conflated.Get(),
		SlowConsumers: m.slowConsumers.Get(),
		WriteErrors:   m.writeErrors.Get(),
		Topics:        uint64(m.topics.Get()),
		Subscriptions: uint64(m.subscriptions.Get()),
		DeflateIn:     m.deflateIn.Get(),
		DeflateOut:    m.deflateOut.Get(),
	}
}
