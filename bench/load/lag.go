package load

import (
	"bufio"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// LagBuckets is marketcast's publish→flush histogram as scraped from
// /metrics: VictoriaMetrics vmrange buckets, upper bound (seconds) → count.
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
	out := LagBuckets{}
	sc := bufio.NewScanner(resp.Body)
	const prefix = `marketcast_publish_to_flush_seconds_bucket{vmrange="`
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		rng, count, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		_, hi, _ := strings.Cut(rng, "...")
		upper, err1 := strconv.ParseFloat(hi, 64)
		n, err2 := strconv.ParseFloat(count, 64)
		if err1 == nil && err2 == nil {
			out[upper] = n
		}
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
