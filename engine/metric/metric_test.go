package metric_test

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/marketcast/marketcast/engine/metric"
)

// TestFastHistogramCountsEveryObservation: observations from many
// goroutines at once are all counted, in the right buckets, and the
// exposition is a Prometheus histogram (cumulative buckets, +Inf = count).
func TestFastHistogramCountsEveryObservation(t *testing.T) {
	s := metrics.NewSet()
	h := metric.NewFastHistogram(s, "test_fast_seconds", "A test histogram", []float64{.001, .01, .1})
	const per = 10000
	values := []float64{.0005, .001, .005, .05, 1}
	var wg sync.WaitGroup
	for _, v := range values {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per {
				h.Update(v)
			}
		}()
	}
	wg.Wait()
	if got := h.Count(); got != per*uint64(len(values)) {
		t.Fatalf("count %d, want %d", got, per*len(values))
	}
	var b bytes.Buffer
	metric.WritePrometheus(&b, s)
	var lines []string // this histogram's, not the runtime's
	for l := range strings.Lines(b.String()) {
		if strings.Contains(l, "test_fast_seconds") {
			lines = append(lines, l)
		}
	}
	out := strings.Join(lines, "")
	for _, want := range []string{
		"# HELP test_fast_seconds A test histogram\n",
		"# TYPE test_fast_seconds histogram\n",
		`test_fast_seconds_bucket{le="0.001"} 20000` + "\n", // .0005 and .001 (le is inclusive)
		`test_fast_seconds_bucket{le="0.01"} 30000` + "\n",
		`test_fast_seconds_bucket{le="0.1"} 40000` + "\n",
		`test_fast_seconds_bucket{le="+Inf"} 50000` + "\n",
		"test_fast_seconds_count 50000\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %q:\n%s", want, out)
		}
	}
	// .0005+.001+.005+.05+1 = 1.0565, times 10,000 (float sums round).
	_, after, _ := strings.Cut(out, "test_fast_seconds_sum ")
	sum, err := strconv.ParseFloat(strings.Fields(after)[0], 64)
	if err != nil || math.Abs(sum-10565) > 1e-6 {
		t.Errorf("sum %v (%v), want 10565", sum, err)
	}
}

// TestTallyAddsWhatItGathered: observations gathered in Tallies by several
// goroutines and added in pieces end up in the histogram exactly as if each
// had been an Update, and an added Tally starts empty again.
func TestTallyAddsWhatItGathered(t *testing.T) {
	s := metrics.NewSet()
	direct := metric.NewFastHistogram(s, "test_direct_frames", "Updated one by one", metric.CountBuckets)
	tallied := metric.NewFastHistogram(s, "test_tallied_frames", "Gathered in Tallies", metric.CountBuckets)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var tally metric.Tally
			for i := range 5000 {
				v := float64((i*7 + g) % 3000)
				direct.Update(v)
				tallied.Observe(&tally, v)
				if i%64 == 63 {
					tallied.Add(&tally)
				}
			}
			tallied.Add(&tally)
			tallied.Add(&tally) // empty now: adds nothing
		}()
	}
	wg.Wait()
	var b bytes.Buffer
	metric.WritePrometheus(&b, s)
	series := func(name string) string {
		var lines []string
		for l := range strings.Lines(b.String()) {
			if strings.HasPrefix(l, name) {
				lines = append(lines, strings.TrimPrefix(l, name))
			}
		}
		return strings.Join(lines, "")
	}
	d, tl := series("test_direct_frames"), series("test_tallied_frames")
	if d != tl || !strings.Contains(d, "_count 20000\n") {
		t.Fatalf("tallied series differ from direct ones or miss observations:\n%s\nagainst\n%s", tl, d)
	}
}
