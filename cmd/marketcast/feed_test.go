package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/feed"
	"github.com/marketcast/marketcast/internal/testwait"
	"github.com/marketcast/marketcast/protocol"
)

// flakySource fails its first runs at once, then produces ticks.
type flakySource struct {
	fails atomic.Int32
	runs  atomic.Int32
}

func (s *flakySource) Symbols() []string { return []string{"T.x1"} }

func (s *flakySource) Run(ctx context.Context, sink feed.Sink) error {
	if s.runs.Add(1) <= s.fails.Load() {
		return errors.New("collector unreachable")
	}
	for {
		if _, err := sink.Publish(ctx, feed.TickPublication(&feed.Tick{Symbol: "T.x1", LastPrice: "1.0"})); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestFeedIsRestartedAndReadinessFollowsIt: /readyz says not ready until
// the source has produced; a failing source is restarted with backoff.
func TestFeedIsRestartedAndReadinessFollowsIt(t *testing.T) {
	cfg := configs.Default()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := newNode(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer n.close()
	n.srv, _ = newGateway(cfg, n, log)
	hs := httptest.NewServer(n.srv.Handler())
	defer hs.Close()
	ready := func() int {
		resp, err := hs.Client().Get(hs.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := ready(); code != 503 {
		t.Fatalf("readyz %d before the feed ran; want 503", code)
	}
	src := &flakySource{}
	src.fails.Store(1)
	ctx, cancel := context.WithCancel(context.Background())
	done := startFeed(ctx, src, n, slog.New(slog.NewTextHandler(io.Discard, nil)))
	testwait.For(t, "readyz 200 once the restarted source produced", func() bool { return ready() == 200 })
	if src.runs.Load() < 2 {
		t.Fatalf("ready after %d runs; want 200 only once the restarted source produced", src.runs.Load())
	}
	if !n.market.HasSymbol("T.x1") || n.hub.Last(protocol.TopicKey(protocol.Tick, "T.x1")) == nil {
		t.Fatal("the feed's ticks did not reach the hub")
	}
	cancel()
	<-done
}
