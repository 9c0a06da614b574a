package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/feed/natsfeed"
	"github.com/marketcast/marketcast/feed/replay"
	"github.com/marketcast/marketcast/protocol"
)

// natsCmd runs a NATS server with JetStream, the same one the binary
// embeds: a cluster's broker for a try-out or a small deployment, with
// nothing else to install (Debian's nats-server is too old for what
// marketcast uses). Users (node, collector, recorder) authenticate with
// the passwords given; a listen address that is not loopback needs them.
//
//	marketcast nats [-listen 127.0.0.1:4222] [-store DIR] [-sync-always]
//	                [-node-password P] [-collector-password P] [-recorder-password P] [-stream MC_PRIV]
func natsCmd(args []string, stderr io.Writer) error {
	fs := newFlags("nats", stderr)
	listen := fs.String("listen", "127.0.0.1:4222", "client address")
	store := fs.String("store", "", "JetStream store directory (default: a temporary one, removed at exit)")
	sync := fs.Bool("sync-always", false, "fsync every write")
	e := configs.EmbeddedNATS{}
	fs.StringVar(&e.NodePassword, "node-password", os.Getenv("MARKETCAST_CLUSTER_EMBEDDED_NODE_PASSWORD"),
		"password of user node: what a marketcast node needs (MARKETCAST_CLUSTER_EMBEDDED_NODE_PASSWORD)")
	fs.StringVar(&e.CollectorPassword, "collector-password", os.Getenv("MARKETCAST_CLUSTER_EMBEDDED_COLLECTOR_PASSWORD"),
		"password of user collector: publish md.> only (MARKETCAST_CLUSTER_EMBEDDED_COLLECTOR_PASSWORD)")
	fs.StringVar(&e.RecorderPassword, "recorder-password", os.Getenv("MARKETCAST_CLUSTER_EMBEDDED_RECORDER_PASSWORD"),
		"password of user recorder: subscribe md.> only (MARKETCAST_CLUSTER_EMBEDDED_RECORDER_PASSWORD)")
	stream := fs.String("stream", "MC_PRIV", "the nodes' private stream (cluster.stream.name), for the node user's permissions")
	if err := fs.Parse(args); err != nil {
		return err
	}
	e.Listen, e.SyncAlways = *listen, *sync
	cfg := configs.Default()
	cfg.Cluster.Embedded, cfg.Cluster.Stream.Name = e, *stream
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("nats: %w", err)
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
	cfg.Cluster.Embedded.DataDir = *store
	log := slog.New(slog.NewTextHandler(stderr, nil))
	ns, err := startEmbeddedNATS(&cfg.Cluster.Embedded, cfg, "")
	if err != nil {
		return err
	}
	if !e.HasUsers() {
		log.Warn("no users: anyone who reaches " + *listen + " may read and write everything (loopback only)")
	}
	log.Info("nats server with jetstream ready", "listen", *listen, "store", *store, "authenticated", e.HasUsers())
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
	anySubject := fs.Bool("all-subjects", false, "replay every subject of the recording, not only market data (md.<channel>.<symbol>); "+
		"JetStream and system subjects ($…, _INBOX.…) are never replayed")
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
	// The nodes keep the last-value stream (at start and after every
	// reconnect): the feed needs no more than a collector's permissions,
	// publish md.>.
	if *recording != "" {
		// A market subject's bytes go out as they were published, bad input
		// included: the nodes validate them as they did then. Anything else
		// in the file (private subjects, JetStream requests) is skipped
		// unless -all-subjects says otherwise.
		log.Info("feed replaying to nats", "file", *recording, "speed", *speed, "nats", link.nc.ConnectedUrlRedacted(),
			"all_subjects", *anySubject)
		skipped := 0
		n, err := replay.Play(ctx, *recording, *speed, func(e *replay.Entry) error {
			if !replayable(e.Subject, *anySubject) {
				if skipped++; skipped <= 10 {
					log.Warn("recorded message not replayed: not market data (replay it with -all-subjects)", "subject", e.Subject)
				}
				return nil
			}
			return link.nc.Publish(e.Subject, e.Payload())
		})
		if skipped > 0 {
			log.Warn("recorded messages not replayed: not market data", "count", skipped)
		}
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
	private := fs.Bool("allow-private", false, "record subjects beyond market data (md.>): private messages, "+
		"JetStream traffic; the file then holds users' data")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("record: -out FILE is required")
	}
	if !marketPattern(*subjects) && !*private {
		return fmt.Errorf("record: -subjects %q reaches beyond market data (md.>): the recording would hold private "+
			"messages and JetStream traffic; say -allow-private if that is what you want", *subjects)
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

// replayable reports whether feed -replay publishes a recorded subject:
// market data, or with all anything but NATS's own subjects (JetStream
// API, system, inboxes), which a recording must never drive.
func replayable(subject string, all bool) bool {
	if _, _, ok := protocol.ParseMarketSubject(subject); ok {
		return true
	}
	return all && !strings.HasPrefix(subject, "$") && !strings.HasPrefix(subject, "_INBOX.")
}

// marketPattern reports whether a subject pattern matches market data
// only: md.> or within it.
func marketPattern(pattern string) bool {
	tokens := strings.Split(pattern, ".")
	return len(tokens) >= 2 && tokens[0] == protocol.MarketSubjectPrefix
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
