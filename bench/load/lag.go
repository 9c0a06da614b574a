package load

import (
	"bufio"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// LagBuckets is marketcast's publish→flush histogram as scraped from
// /metrics: bucket upper bound (seconds) → the count in that bucket alone
// (the exposition's `le` buckets are cumulative; these are not).
type LagBuckets map[float64]float64

// ScrapeLag reads marketcast_publish_to_flush_seconds from a /metrics URL.
// The server's own view of its latency (event accepted → frame written)
// separates it from the load generator's share of what mcbench measures.
func ScrapeLag(url string) (LagBuckets, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	cumulative := map[float64]float64{}
	sc := bufio.NewScanner(resp.Body)
	const prefix = `marketcast_publish_to_flush_seconds_bucket{le="`
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), prefix)
		if !ok {
			continue
		}
		le, count, ok := strings.Cut(rest, `"} `)
		if !ok || le == "+Inf" {
			continue // beyond the last bound: counted in no bucket of ours
		}
		upper, err1 := strconv.ParseFloat(le, 64)
		n, err2 := strconv.ParseFloat(count, 64)
		if err1 == nil && err2 == nil {
			cumulative[upper] = n
		}
	}
	uppers := make([]float64, 0, len(cumulative))
	for u := range cumulative {
		uppers = append(uppers, u)
	}
	sort.Float64s(uppers)
	out, below := LagBuckets{}, 0.0
	for _, u := range uppers {
		out[u] = cumulative[u] - below
		below = cumulative[u]
	}
	return out, sc.Err()
}

// Quantile returns the q-quantile (0..1) in milliseconds of the counts in
// b minus those in before (a delta between two scrapes).
func (b LagBuckets) Quantile(before LagBuckets, q float64) float64 {
	uppers := make([]float64, 0, len(b))
	total := 0.0
	for u, n := range b {
		if d := n - before[u]; d > 0 {
			uppers = append(uppers, u)
			total += d
		}
	}
	if total == 0 {
		return 0
	}
	sort.Float64s(uppers)
	seen := 0.0
	for _, u := range uppers {
		seen += b[u] - before[u]
		if seen >= q*total {
			return u * 1000
		}
	}
	return uppers[len(uppers)-1] * 1000
}

// ScrapeCounter reads one counter (or gauge) without labels from a
// /metrics URL; 0 when absent or unreachable.
func ScrapeCounter(url, name string) float64 {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}
