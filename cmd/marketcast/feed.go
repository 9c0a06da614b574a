package main

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/feed"
	"github.com/marketcast/marketcast/feed/kline"
	"github.com/marketcast/marketcast/feed/market"
	"github.com/marketcast/marketcast/feed/natsfeed"
	"github.com/marketcast/marketcast/feed/replay"
	"github.com/marketcast/marketcast/feed/sim"
	"github.com/marketcast/marketcast/protocol"
)

// newSource builds the configured market source; nil means none (market
// data then comes only from the publish API).
func newSource(cfg *configs.Config, n *node, log *slog.Logger) (feed.Source, error) {
	switch cfg.FeedKind() {
	case "sim":
		return newSim(cfg, log)
	case "nats":
		ncfg := cfg.NATSIngest()
		ncfg.Log = log
		src := natsfeed.NewSource(n.nats.nc, ncfg)
		n.srv.AddMetrics(src.Metrics())
		return src, nil
	case "replay":
		return &replay.Source{Path: cfg.Feed.Replay.File, Speed: cfg.Feed.Replay.Speed,
			MaxBytes: cfg.Limits.MaxMessageBytes, Rules: cfg.IngestRules(), Log: log}, nil
	}
	return nil, nil
}

// newCheckpoints keeps each symbol's forming bars in the node's NATS store,
// unless feed.checkpoint_interval is 0 (nil).
func newCheckpoints(cfg *configs.Config, link *natsLink) *natsfeed.Checkpoints {
	if cfg.Feed.CheckpointInterval.Duration == 0 {
		return nil
	}
	return natsfeed.NewCheckpoints(link.nc, cfg.Cluster.Stream.Replicas)
}

// restoreTimeout bounds reading the checkpoints at start.
const restoreTimeout = 10 * time.Second

// restoreMarket takes the symbols and forming bars of before a restart
// back from the checkpoints, before anything is served.
func restoreMarket(ctx context.Context, m *market.Market, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, restoreTimeout)
	defer cancel()
	n, err := m.Restore(ctx)
	switch {
	case err != nil:
		log.Warn("forming bars not restored: they start again with the next ticks", "err", err)
	case n > 0:
		log.Info("restored symbols and their forming bars", "symbols", n)
	}
}

// checkpoint saves every symbol's forming bars as the node stops, and
// waits for NATS to keep them.
func (n *node) checkpoint(log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.market.Stop(ctx); err != nil {
		log.Warn("forming bars not all saved: a restart goes on from the last checkpoint", "err", err)
	}
}

// newSim builds the simulator as configured.
func newSim(cfg *configs.Config, log *slog.Logger) (*sim.Sim, error) {
	symbols := cfg.Feed.Sim.Symbols
	if cfg.Feed.Sim.SymbolCount > 0 {
		symbols = sim.Universe(cfg.Feed.Sim.SymbolCount)
	}
	var sessions kline.Sessions = kline.AlwaysOpen
	if cfg.Feed.Sim.Hours == "exchange" {
		t, err := cfg.Calendar()
		if err != nil {
			return nil, err
		}
		sessions = t.Lookup
	}
	return sim.New(sim.Config{Symbols: symbols, Rate: cfg.Feed.Sim.Rate, Levels: cfg.Feed.Sim.Levels,
		Sessions: sessions, Backfill: cfg.Feed.Sim.Backfill.Duration, Seed: uint64(cfg.Feed.Sim.Seed), Log: log})
}

// Restart delays of a failed source.
const (
	feedRetryMin = time.Second
	feedRetryMax = 30 * time.Second
)

// startFeed runs src into the node's market until ctx ends, restarting it
// with backoff when it fails, and keeps /readyz honest: ready once the
// source has produced, not ready while it is down. The channel closes when
// the feed has stopped.
func startFeed(ctx context.Context, src feed.Source, n *node, log *slog.Logger) <-chan struct{} {
	done := make(chan struct{})
	if src == nil {
		// Said before /readyz passes: whoever sees the node ready can read
		// what it runs.
		log.Info("no built-in feed: market data comes from the publish API")
		n.srv.SetFeedReady(true) // nothing to wait for
		close(done)
		return done
	}
	if err := n.market.AddSymbols(src.Symbols()); err != nil {
		log.Error("feed symbols do not fit the catalogue", "err", err)
	}
	if _, ok := src.(*natsfeed.Source); ok {
		// A bus feed is ready while NATS is there, produce or not.
		n.srv.SetFeedReady(n.nats.nc.IsConnected())
		n.nats.onFeed = n.srv.SetFeedReady
	}
	go func() {
		defer close(done)
		r := &feedRunner{sink: n.market, setReady: n.srv.SetFeedReady}
		retry := feedRetryMin
		for {
			log.Info("feed started", "source", describe(src), "symbols", len(src.Symbols()))
			err := src.Run(ctx, r)
			if ctx.Err() != nil {
				return
			}
			if err == nil { // a replay played to its end: what it sent stays served
				log.Info("feed finished", "source", describe(src))
				<-ctx.Done()
				return
			}
			r.down()
			log.Error("feed stopped; restarting", "err", err, "in", retry)
			select {
			case <-ctx.Done():
				return
			case <-time.After(retry):
			}
			retry = min(2*retry, feedRetryMax)
		}
	}()
	if ns, ok := src.(*natsfeed.Source); ok && n.nats.nc.IsConnected() {
		// Say nothing of being up before the subscription is in place:
		// what a collector publishes after that is never missed. (With
		// NATS away, there is nothing to wait for: the node is not ready.)
		select {
		case <-ns.Listening():
		case <-time.After(5 * time.Second):
			log.Warn("not yet subscribed to market data on NATS; going on", "subject", "md.>")
		case <-ctx.Done():
		}
	}
	return done
}

func describe(src feed.Source) string {
	switch src.(type) {
	case *sim.Sim:
		return "sim"
	case *natsfeed.Source:
		return "nats"
	case *replay.Source:
		return "replay"
	}
	return "custom"
}

// feedRunner passes a source's publications to the market and reports the
// feed ready once it produces.
type feedRunner struct {
	sink     feed.Sink
	setReady func(bool)
	up       atomic.Bool
}

func (r *feedRunner) Publish(ctx context.Context, p *protocol.Publication) (uint64, error) {
	if !r.up.Load() && r.up.CompareAndSwap(false, true) {
		r.setReady(true)
	}
	return r.sink.Publish(ctx, p)
}

func (r *feedRunner) PublishBatch(ctx context.Context, ps []*protocol.Publication) (int, error) {
	if !r.up.Load() && r.up.CompareAndSwap(false, true) {
		r.setReady(true)
	}
	return feed.PublishAll(ctx, r.sink, ps)
}

func (r *feedRunner) down() {
	r.up.Store(false)
	r.setReady(false)
}

var _ feed.BatchSink = (*feedRunner)(nil)
