package main

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/internal/testwait"
	"github.com/marketcast/marketcast/protocol"
)

// scrape reads a server's /metrics and parses it with Prometheus's own
// text parser: what a Prometheus server would make of it.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s\n%s", res.Status, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("/metrics is not the Prometheus text format: %v\n%s", err, body)
	}
	return families
}

// metricsNode starts the real binary as a node on its embedded NATS
// (broker and NATS feed included, so every family of the server shows),
// in development mode.
func metricsNode(t *testing.T) *binaryProc {
	t.Helper()
	return startBinary(t, freePort(t), "MARKETCAST_DATA_DIR="+t.TempDir(), "MARKETCAST_FEED=nats")
}

// TestMetricsArePrometheusNative scrapes a real server before and after
// traffic: every family of ours has HELP text and a TYPE, latency is a
// histogram with `le` buckets (histogram_quantile works), names follow the
// conventions, labelled families exist at zero before their first event,
// and docs/OPERATIONS.md lists exactly the families served.
func TestMetricsArePrometheusNative(t *testing.T) {
	p := metricsNode(t)
	before := scrape(t, p.addr)
	for family, label := range map[string]string{
		"marketcast_errors_by_code_total": protocol.CodeAuthFailed, "marketcast_closes_total": "4008",
		"marketcast_connections_rejected_total": "max_connections", "marketcast_feed_dropped_total": "json",
	} {
		f := before[family]
		if f == nil || !slices.ContainsFunc(f.Metric, func(m *dto.Metric) bool {
			return len(m.Label) == 1 && m.Label[0].GetValue() == label && m.Counter.GetValue() == 0
		}) {
			t.Errorf("%s{%s} is not served at 0 before its first event", family, label)
		}
	}
	if f := before["marketcast_build_info"]; f == nil || f.GetType() != dto.MetricType_GAUGE || len(f.Metric) != 1 || f.Metric[0].Gauge.GetValue() != 1 {
		t.Errorf("marketcast_build_info: %v", f)
	}

	// Traffic: a subscriber gets published private messages, so the
	// delivery histograms have samples.
	cfg := configs.Default()
	c := login(t, p.addr, cfg, false)
	if err := c.Send(map[string]any{"type": "subscribe", "channel": "orders", "id": "s"}); err != nil {
		t.Fatal(err)
	}
	if m, err := c.Next(wait); err != nil || m.Type != "subscribe_response" {
		t.Fatalf("subscribe: %v %v", err, m)
	}
	publishOrders(t, p.addr, cfg.Auth.JWTSecret, "1", "o1", "o2", "o3")
	for range 3 {
		if _, err := c.Next(wait); err != nil {
			t.Fatal(err)
		}
	}
	var families map[string]*dto.MetricFamily
	testwait.For(t, "three deliveries in marketcast_publish_to_flush_seconds", func() bool {
		families = scrape(t, p.addr)
		f := families["marketcast_publish_to_flush_seconds"]
		return f != nil && len(f.Metric) == 1 && f.Metric[0].Histogram.GetSampleCount() >= 3
	})
	for _, name := range []string{"marketcast_publish_to_flush_seconds", "marketcast_flush_batch_frames"} {
		f := families[name]
		if f.GetType() != dto.MetricType_HISTOGRAM {
			t.Fatalf("%s: type %v; want histogram", name, f.GetType())
		}
		h := f.Metric[0].Histogram
		if len(h.Bucket) < 8 || h.Bucket[len(h.Bucket)-1].GetCumulativeCount() > h.GetSampleCount() {
			t.Fatalf("%s: %d buckets, %v", name, len(h.Bucket), h)
		}
	}

	name := regexp.MustCompile(`^marketcast_[a-z0-9_]+$`)
	var served []string
	for family, f := range families {
		if !strings.HasPrefix(family, "marketcast_") {
			continue
		}
		served = append(served, family)
		switch {
		case !name.MatchString(family):
			t.Errorf("%s: not a conventional name", family)
		case f.GetHelp() == "":
			t.Errorf("%s: no HELP text (declare it with engine/metric)", family)
		case f.GetType() == dto.MetricType_UNTYPED:
			t.Errorf("%s: no TYPE", family)
		case f.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(family, "_total"):
			t.Errorf("%s: a counter's name ends in _total", family)
		case f.GetType() != dto.MetricType_COUNTER && strings.HasSuffix(family, "_total"):
			t.Errorf("%s: a %v named like a counter", family, f.GetType())
		}
	}

	// OPERATIONS.md's metric table lists what is served, no more, no less.
	doc, err := os.ReadFile("../../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, _ := strings.Cut(string(doc), "## Metrics")
	table, _, _ = strings.Cut(table, "\n## ")
	var docNames []string
	for line := range strings.Lines(table) {
		if row, ok := strings.CutPrefix(line, "| `marketcast_"); ok { // the table's first column
			first, _, _ := strings.Cut("`marketcast_"+row, " |")
			for _, m := range regexp.MustCompile("`(marketcast_[a-z0-9_]+)").FindAllStringSubmatch(first, -1) {
				docNames = append(docNames, m[1])
			}
		}
	}
	for _, f := range served {
		if !slices.Contains(docNames, f) {
			t.Errorf("%s is served but not in docs/OPERATIONS.md's metric list", f)
		}
	}
	for _, d := range docNames {
		if !slices.Contains(served, d) {
			t.Errorf("docs/OPERATIONS.md lists %s, which the server does not serve", d)
		}
	}
	if t.Failed() {
		t.Logf("served: %v", served)
	}
}

// promtool, when installed (Debian's prometheus package), lints the
// exposition the way Prometheus's own tooling does.
func TestMetricsPassPromtool(t *testing.T) {
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Skip("promtool is not installed (apt-get install prometheus); TestMetricsArePrometheusNative parses the same text")
	}
	p := metricsNode(t)
	res, err := http.Get("http://" + p.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	// Only our families: the library's process and Go metrics carry no
	// help text, which promtool reports.
	var ours strings.Builder
	for line := range strings.Lines(string(body)) {
		if strings.Contains(line, "marketcast_") {
			ours.WriteString(line)
		}
	}
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(ours.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
