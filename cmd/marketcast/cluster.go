package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/feed/natsfeed"
	"github.com/marketcast/marketcast/feed/replay"
	"github.com/marketcast/marketcast/protocol"
)

// natsCmd runs a NATS server with JetStream, the same one the binary
// embeds: a cluster's broker for a try-out or a test, with nothing else to
// install (Debian's nats-server is too old for what marketcast uses).
//
//	marketcast nats [-listen 127.0.0.1:4222] [-store DIR] [-sync-always]
func natsCmd(args []string, stderr io.Writer) error {
	fs := newFlags("nats", stderr)
	listen := fs.String("listen", "127.0.0.1:4222", "client address")
	store := fs.String("store", "", "JetStream store directory (default: a temporary one, removed at exit)")
	sync := fs.Bool("sync-always", false, "fsync every write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *store == "" {
		// A store nobody named is nobody's to keep: it goes when the server
		// stops.
		dir, err := os.MkdirTemp("", "marketcast-nats-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		*store = dir
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	ns, err := startEmbeddedNATS(*store, *listen, *sync)
	if err != nil {
		return err
	}
	log.Info("nats server with jetstream ready", "listen", *listen, "store", *store)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	<-ctx.Done()
	ns.Shutdown()
	ns.WaitForShutdown()
	log.Info("nats server stopped")
	return nil
}

// feedCmd runs the market source once for a whole cluster, publishing to
// NATS (md.<channel>.<symbol>), which every node ingests: the simulator,
// or the replay of a recording.
//
//	marketcast feed [-config FILE] [-replay FILE [-speed N]]   (cluster.nats_url or MARKETCAST_NATS_URL)
func feedCmd(args []string, stderr io.Writer) error {
	fs := newFlags("feed", stderr)
	file := fs.String("config", "", "config file (default: embedded)")
	recording := fs.String("replay", "", "play this recording (one made by marketcast record) instead of running the simulator")
	speed := fs.Float64("speed", 1, "replay pace: 1 as recorded, 10 ten times faster, 0 as fast as possible")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *speed < 0 {
		return fmt.Errorf("feed: -speed must be >= 0, got %v", *speed)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg, log, link, err := busClient("feed", *file, "the feed publishes to NATS for the cluster's nodes", stderr)
	if err != nil {
		return err
	}
	defer link.close()
	js, err := jetstream.New(link.nc)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = natsfeed.EnsureLastStream(sctx, js)
	cancel()
	if err != nil {
		return fmt.Errorf("feed: last-value stream: %w", err)
	}
	if *recording != "" {
		// The recording's bytes go out as they were published, bad input
		// included: the nodes validate them as they did then.
		log.Info("feed replaying to nats", "file", *recording, "speed", *speed, "nats", link.nc.ConnectedUrlRedacted())
		n, err := replay.Play(ctx, *recording, *speed, func(e *replay.Entry) error {
			return link.nc.Publish(e.Subject, e.Payload())
		})
		if err == nil {
			err = link.nc.FlushTimeout(10 * time.Second)
		}
		switch {
		case errors.Is(err, context.Canceled):
			log.Info("replay stopped", "messages", n)
			return nil
		case err != nil:
			return fmt.Errorf("feed: replay: %w", err)
		}
		log.Info("replay finished", "messages", n)
		return nil
	}
	src, err := newSim(cfg, log)
	if err != nil {
		return err
	}
	log.Info("feed publishing to nats", "source", "sim", "symbols", len(src.Symbols()), "nats", link.nc.ConnectedUrlRedacted())
	err = src.Run(ctx, natsfeed.NewBus(link.nc))
	if errors.Is(err, context.Canceled) {
		log.Info("feed stopped")
		return nil
	}
	return err
}

// recordCmd writes what crosses NATS on the market subjects to a recording
// that `marketcast feed -replay` (or feed.replay.file) plays back.
//
//	marketcast record -out FILE [-for DURATION] [-subjects md.>] [-config FILE]
func recordCmd(args []string, stderr io.Writer) error {
	fs := newFlags("record", stderr)
	file := fs.String("config", "", "config file (default: embedded)")
	out := fs.String("out", "", "recording to write (gzip JSON lines; replaced if it exists)")
	dur := fs.Duration("for", 0, "stop after this long (default: at SIGINT or SIGTERM)")
	subjects := fs.String("subjects", protocol.MarketSubjectPrefix+".>", "NATS subjects to record")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("record: -out FILE is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if *dur > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *dur)
		defer cancel()
	}
	_, log, link, err := busClient("record", *file, "it records what is published to NATS", stderr)
	if err != nil {
		return err
	}
	defer link.close()
	w, err := replay.Create(*out)
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	log.Info("recording", "subjects", *subjects, "out", *out, "nats", link.nc.ConnectedUrlRedacted())
	err = replay.Record(ctx, link.nc, *subjects, w)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	log.Info("recording written", "out", *out, "messages", w.Count(), "skipped_too_large", w.Skipped())
	return nil
}

// busClient loads the config of a subcommand that works on the cluster's
// NATS (feed, record), and connects as name; why says what it needs NATS
// for, in the error when no NATS URL is configured.
func busClient(name, file, why string, stderr io.Writer) (*configs.Config, *slog.Logger, *natsLink, error) {
	cfg, err := configs.Load(file, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	if cfg.Cluster.NATSURL == "" {
		return nil, nil, nil, fmt.Errorf("%s: set cluster.nats_url (MARKETCAST_NATS_URL): %s", name, why)
	}
	log := newLogger(cfg, stderr)
	link, err := connectNATS(cfg, name, log)
	if err != nil {
		return nil, nil, nil, err
	}
	return cfg, log, link, nil
}
