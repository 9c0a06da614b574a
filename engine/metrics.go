package engine

import "github.com/VictoriaMetrics/metrics"

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
	batchSize     *metrics.Histogram
	lag           *metrics.Histogram
}

func newHubMetrics() *hubMetrics {
	s := metrics.NewSet()
	return &hubMetrics{
		set:           s,
		published:     s.NewCounter("marketcast_published_total"),
		encoded:       s.NewCounter("marketcast_frames_encoded_total"),
		delivered:     s.NewCounter("marketcast_messages_sent_total"),
		framesOut:     s.NewCounter("marketcast_frames_written_total"),
		bytesOut:      s.NewCounter("marketcast_bytes_sent_total"),
		conflated:     s.NewCounter("marketcast_conflated_total"),
		deflateIn:     s.NewCounter("marketcast_deflate_bytes_in_total"),
		deflateOut:    s.NewCounter("marketcast_deflate_bytes_out_total"),
		writeErrors:   s.NewCounter("marketcast_write_errors_total"),
		slowConsumers: s.NewCounter("marketcast_slow_consumer_closes_total"),
		resumes:       s.NewCounter("marketcast_resumes_total"),
		resumeMisses:  s.NewCounter("marketcast_resumes_unrecovered_total"),
		resumeLost:    s.NewCounter("marketcast_resumes_lost_total"),
		swept:         s.NewCounter("marketcast_topics_swept_total"),
		publishErrors: s.NewCounter("marketcast_publish_errors_total"),
		duplicates:    s.NewCounter("marketcast_stream_duplicates_total"),
		gaps:          s.NewCounter("marketcast_stream_gaps_total"),
		backfills:     s.NewCounter("marketcast_stream_backfills_total"),
		resets:        s.NewCounter("marketcast_stream_resets_total"),
		topics:        s.NewGauge("marketcast_topics", nil),
		subscriptions: s.NewGauge("marketcast_subscriptions", nil),
		batchSize:     s.NewHistogram("marketcast_flush_batch_frames"),
		lag:           s.NewHistogram("marketcast_publish_to_flush_seconds"),
	}
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
