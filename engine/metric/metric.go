// Package metric is how marketcast declares a metric: one call with its
// name, kind and help text, so that /metrics is Prometheus-native — HELP
// and TYPE lines, histograms with `le` buckets that histogram_quantile
// reads, and labelled families present (at zero) from the start.
//
// A new metric is one line where its component keeps its others:
//
//	m.drops = metric.Counter(set, "marketcast_feed_dropped_total", "Market messages dropped, ...")
//
// Names follow Prometheus conventions: marketcast_ first, the base unit
// last (_seconds, _bytes), counters ending in _total. The exposition test
// in engine/gateway scrapes a real server and fails on a family without
// help text, so a metric made with the library's own constructors shows.
package metric

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
)

func init() {
	// HELP and TYPE lines; WritePrometheus fills in the help texts.
	metrics.ExposeMetadata(true)
}

// help maps a metric family to its help text: one text per name, wherever
// the metric is declared (several hubs in one test process share them).
var help sync.Map

func describe(name, text string) {
	family, _, _ := strings.Cut(name, "{")
	if text == "" || strings.ContainsAny(text, "\n\\") {
		panic("metric: " + family + ": help text must be one line without backslashes")
	}
	help.LoadOrStore(family, text)
}

// Counter declares a counter. Its name ends in _total.
func Counter(s *metrics.Set, name, help string) *metrics.Counter {
	describe(name, help)
	return s.NewCounter(name)
}

// Gauge declares a gauge: a value that goes up and down. With f, the value
// is read from f at each scrape.
func Gauge(s *metrics.Set, name, help string, f func() float64) *metrics.Gauge {
	describe(name, help)
	return s.NewGauge(name, f)
}

// CounterFunc declares a counter whose value is kept elsewhere (a
// library's statistics) and read from f at each scrape. Its name ends in
// _total, and f never decreases.
func CounterFunc(s *metrics.Set, name, help string, f func() uint64) {
	describe(name, help)
	s.RegisterMetricsWriter(func(w io.Writer) { metrics.WriteCounterUint64(w, name, f()) })
}

// Histogram declares a Prometheus histogram with these bucket upper
// bounds (in the unit the name ends with).
func Histogram(s *metrics.Set, name, help string, buckets []float64) *metrics.PrometheusHistogram {
	describe(name, help)
	return s.NewPrometheusHistogramExt(name, buckets)
}

// Buckets for the common kinds of histogram.
var (
	// LatencyBuckets, in seconds, from 100 µs to 10 s: finest below the
	// 10 ms target, where p50 and p99 of a healthy server fall.
	LatencyBuckets = []float64{.0001, .0002, .0003, .0005, .00075, .001, .0015, .002, .003, .005, .0075, .01,
		.015, .02, .03, .05, .1, .25, .5, 1, 2.5, 5, 10}
	// CountBuckets: powers of two from 1 to 1024.
	CountBuckets = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}
)

// CounterVec is a family of counters told apart by one label.
type CounterVec struct {
	set          *metrics.Set
	family, name string
}

// NewCounterVec declares a counter family with one label. The label values
// known in advance are exposed at zero from the start, so a rate() or an
// alert on them needs no first event; others are added when they occur.
func NewCounterVec(s *metrics.Set, family, label, help string, known ...string) *CounterVec {
	describe(family, help)
	v := &CounterVec{set: s, family: family, name: label}
	for _, value := range known {
		s.GetOrCreateCounter(v.series(value))
	}
	return v
}

// Inc counts one event with the label's value.
func (v *CounterVec) Inc(value string) { v.set.GetOrCreateCounter(v.series(value)).Inc() }

// Add counts n events with the label's value.
func (v *CounterVec) Add(value string, n int) { v.set.GetOrCreateCounter(v.series(value)).Add(n) }

// Get is the count with the label's value.
func (v *CounterVec) Get(value string) uint64 { return v.set.GetOrCreateCounter(v.series(value)).Get() }

func (v *CounterVec) series(value string) string {
	return fmt.Sprintf(`%s{%s=%q}`, v.family, v.name, value)
}

// BuildInfo declares the constant marketcast_build_info gauge: 1, with the
// build's description in its labels (the Prometheus convention for
// versions; join on it to see which nodes run what).
func BuildInfo(s *metrics.Set, labels map[string]string) {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", k, labels[k])
	}
	name := "marketcast_build_info{" + b.String() + "}"
	Gauge(s, name, "Always 1; the labels describe the running binary's build", func() float64 { return 1 })
}

// WritePrometheus writes the sets, then the process and Go runtime
// metrics, in the Prometheus text format, with each family's help text.
func WritePrometheus(w io.Writer, sets ...*metrics.Set) {
	var b bytes.Buffer
	for _, s := range sets {
		s.WritePrometheus(&b)
	}
	metrics.WriteProcessMetrics(&b)
	out := bufio.NewWriter(w)
	for line := range bytes.Lines(b.Bytes()) {
		// The library writes "# HELP family" with no text.
		if rest, ok := bytes.CutPrefix(line, []byte("# HELP ")); ok {
			family := string(bytes.TrimSpace(rest))
			if text, ok := help.Load(family); ok && !strings.Contains(family, " ") {
				fmt.Fprintf(out, "# HELP %s %s\n", family, text)
				continue
			}
		}
		_, _ = out.Write(line)
	}
	_ = out.Flush()
}

// Help is the help text declared for family, or "".
func Help(family string) string {
	text, _ := help.Load(family)
	s, _ := text.(string)
	return s
}

// FastHistogram is a Prometheus histogram that records without a lock:
// one atomic add per bucket, count and sum. It is for what is observed on
// every delivery (the library's histogram takes a mutex per observation,
// which every writer goroutine would share).
type FastHistogram struct {
	name    string
	bounds  []float64
	buckets []atomic.Uint64 // per bound, then +Inf; not cumulative
	sum     atomic.Uint64   // float64 bits
}

// NewFastHistogram declares a FastHistogram with these bucket upper bounds
// (in the unit the name ends with).
func NewFastHistogram(s *metrics.Set, name, help string, bounds []float64) *FastHistogram {
	if len(bounds) > MaxTallyBounds {
		panic("metric: " + name + " has more buckets than a Tally holds")
	}
	describe(name, help)
	h := &FastHistogram{name: name, bounds: slices.Clone(bounds), buckets: make([]atomic.Uint64, len(bounds)+1)}
	s.RegisterMetricsWriter(h.write)
	return h
}

// Update records one observation. Where many are recorded in a row, a
// Tally (Observe, then Add) costs fewer atomic operations.
func (h *FastHistogram) Update(v float64) {
	var t Tally
	h.Observe(&t, v)
	h.Add(&t)
}

// MaxTallyBounds is how many bucket bounds a FastHistogram may have: a
// Tally holds a count for each and +Inf.
const MaxTallyBounds = 24

// Tally is observations of a FastHistogram gathered by one goroutine
// (FastHistogram.Observe) and added to it at once (FastHistogram.Add): one
// atomic add per bucket used, instead of an add and a compare-and-swap per
// observation, for a loop that records many (a writer's writes). The zero
// value is empty.
type Tally struct {
	counts [MaxTallyBounds + 1]uint64
	sum    float64
	n      int
}

// Observe records v in t, to be added to h.
func (h *FastHistogram) Observe(t *Tally, v float64) {
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	t.counts[i]++
	t.sum += v
	t.n++
}

// Add adds what t gathered for h, and empties t.
func (h *FastHistogram) Add(t *Tally) {
	if t.n == 0 {
		return
	}
	for i, c := range t.counts[:len(h.buckets)] {
		if c > 0 {
			h.buckets[i].Add(c)
		}
	}
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+t.sum)) {
			break
		}
	}
	*t = Tally{}
}

// Count is the number of observations.
func (h *FastHistogram) Count() uint64 {
	var n uint64
	for i := range h.buckets {
		n += h.buckets[i].Load()
	}
	return n
}

func (h *FastHistogram) write(w io.Writer) {
	fmt.Fprintf(w, "# HELP %s\n# TYPE %s histogram\n", h.name, h.name)
	var n uint64
	for i, b := range h.bounds {
		n += h.buckets[i].Load()
		fmt.Fprintf(w, "%s_bucket{le=\"%s\"} %d\n", h.name, strconv.FormatFloat(b, 'g', -1, 64), n)
	}
	n += h.buckets[len(h.bounds)].Load()
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n", h.name, n)
	fmt.Fprintf(w, "%s_sum %s\n", h.name, strconv.FormatFloat(math.Float64frombits(h.sum.Load()), 'g', -1, 64))
	fmt.Fprintf(w, "%s_count %d\n", h.name, n)
}
