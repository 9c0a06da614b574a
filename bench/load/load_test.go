package load

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestSentAt(t *testing.T) {
	f := func(msg string, want time.Time, ok bool) {
		t.Helper()
		got, gotOK := SentAt([]byte(msg))
		if gotOK != ok || !got.Equal(want) {
			t.Fatalf("%s: got %v %v; want %v %v", msg, got, gotOK, want, ok)
		}
	}
	f(`{"data":{"sent":"1700000000123456789"},"timestamp":"2023-12-01T10:30:00.123Z"}`, time.Unix(0, 1700000000123456789), true)
	f(`{"type":"market_data","timestamp":"2023-12-01T10:30:00.123Z","sequence":1}`, time.Date(2023, 12, 1, 10, 30, 0, 123e6, time.UTC), true)
	f(`{"type":"x"}`, time.Time{}, false)
	f(`{"sent":"nope"}`, time.Time{}, false)
}

func TestRecorderQuantiles(t *testing.T) {
	r := NewRecorder()
	for i := 1; i <= 1000; i++ {
		r.Record(i, time.Duration(i)*time.Millisecond)
	}
	r.Count()
	q := Summarise(r.Snapshot(true))
	if r.Delivered() != 1001 || q.Count != 1000 || math.Abs(q.P50-500) > 2 || math.Abs(q.P99-990) > 5 || math.Abs(q.Max-1000) > 2 {
		t.Fatalf("delivered %d, %v", r.Delivered(), q)
	}
	if Summarise(r.Snapshot(false)).Count != 0 {
		t.Fatal("snapshot did not reset")
	}
}

func TestLagQuantile(t *testing.T) {
	before := LagBuckets{0.001: 10, 0.002: 0}
	after := LagBuckets{0.001: 60, 0.002: 40, 0.005: 10}
	// Delta: 50 at ≤1 ms, 40 at ≤2 ms, 10 at ≤5 ms.
	if p50, p99 := after.Quantile(before, 0.5), after.Quantile(before, 0.99); p50 != 1 || p99 != 5 {
		t.Fatalf("p50 %v p99 %v; want 1 and 5 ms", p50, p99)
	}
	if (LagBuckets{}).Quantile(nil, 0.5) != 0 {
		t.Fatal("empty histogram")
	}
}

// TestScrapeLagReadsLeBuckets: the exposition's cumulative `le` buckets
// become per-bucket counts.
func TestScrapeLagReadsLeBuckets(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "# TYPE marketcast_publish_to_flush_seconds histogram\n"+
			`marketcast_publish_to_flush_seconds_bucket{le="0.001"} 50`+"\n"+
			`marketcast_publish_to_flush_seconds_bucket{le="0.002"} 90`+"\n"+
			`marketcast_publish_to_flush_seconds_bucket{le="0.005"} 100`+"\n"+
			`marketcast_publish_to_flush_seconds_bucket{le="+Inf"} 100`+"\n")
	}))
	defer srv.Close()
	b, err := ScrapeLag(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if b[0.001] != 50 || b[0.002] != 40 || b[0.005] != 10 || len(b) != 3 {
		t.Fatalf("buckets %v", b)
	}
	if p99 := b.Quantile(nil, 0.99); p99 != 5 {
		t.Fatalf("p99 %v ms; want 5", p99)
	}
}
