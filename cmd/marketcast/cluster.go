package main

import (
	"context"
	"errors"
	"flag"
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
)

// natsCmd runs a NATS server with JetStream, the same one the binary
// embeds: a cluster's broker for a try-out or a test, with nothing else to
// install (Debian's nats-server is too old for what marketcast uses).
//
//	marketcast nats [-listen 127.0.0.1:4222] [-store DIR] [-sync-always]
func natsCmd(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("nats", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:4222", "client address")
	store := fs.String("store", "", "JetStream store directory (default: a new temporary one)")
	sync := fs.Bool("sync-always", false, "fsync every write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *store == "" {
		dir, err := os.MkdirTemp("", "marketcast-nats-")
		if err != nil {
			return err
		}
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
// NATS (md.<channel>.<symbol>), which every node ingests.
//
//	marketcast feed [-config FILE]   (cluster.nats_url or MARKETCAST_NATS_URL)
func feedCmd(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("feed", flag.ContinueOnError)
	file := fs.String("config", "", "config file (default: embedded)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := configs.Load(*file, nil)
	if err != nil {
		return err
	}
	if cfg.Cluster.NATSURL == "" {
		return errors.New("feed: set cluster.nats_url (MARKETCAST_NATS_URL): the feed publishes to NATS for the cluster's nodes")
	}
	log := newLogger(cfg, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	link, err := connectNATS(cfg, "feed", log)
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
	src, err := newSim(cfg)
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
