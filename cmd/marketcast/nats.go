package main

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/marketcast/marketcast/configs"
)

// natsLink is this node's connection to NATS, and the embedded NATS server
// when the node runs one itself.
type natsLink struct {
	nc       *nats.Conn
	embedded *server.Server

	// Run on NATS's callback goroutine: the broker's resynchronization, and
	// the feed's readiness when market data comes over NATS.
	onReconnect func()
	onFeed      func(ready bool)
}

// connectNATS connects to cluster.nats_url, or starts an embedded NATS
// server with JetStream in cluster.embedded.data_dir and connects to it.
// The connection reconnects forever and fails a publish at once while
// disconnected, so the publish API answers 503 instead of hanging.
func connectNATS(cfg *configs.Config, name string, log *slog.Logger) (*natsLink, error) {
	l := &natsLink{onReconnect: func() {}, onFeed: func(bool) {}}
	opts := []nats.Option{
		nats.Name("marketcast " + name),
		nats.MaxReconnects(-1),
		nats.ReconnectBufSize(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(true),
		nats.Timeout(5 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats disconnected; publishes answer 503 until it is back", "err", err)
			l.onFeed(false)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "server", nc.ConnectedUrlRedacted())
			l.onReconnect()
			l.onFeed(true)
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("nats error", "subject", subj, "err", err)
		}),
	}
	c := &cfg.Cluster
	switch {
	case c.NATSCreds != "":
		opts = append(opts, nats.UserCredentials(c.NATSCreds))
	case c.NATSUser != "":
		opts = append(opts, nats.UserInfo(c.NATSUser, c.NATSPassword))
	case c.NATSToken != "":
		opts = append(opts, nats.Token(c.NATSToken))
	}
	url := c.NATSURL
	if url == "" {
		ns, err := startEmbeddedNATS(c.Embedded.DataDir, c.Embedded.Listen, c.Embedded.SyncAlways)
		if err != nil {
			return nil, err
		}
		l.embedded = ns
		opts = append(opts, nats.InProcessServer(ns))
		log.Info("embedded nats server with jetstream", "data_dir", c.Embedded.DataDir, "listen", c.Embedded.Listen)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		l.close()
		return nil, fmt.Errorf("nats %s: %w", url, err)
	}
	l.nc = nc
	return l, nil
}

// startEmbeddedNATS runs a NATS server with JetStream storing in dir. With
// listen empty it accepts in-process connections only.
func startEmbeddedNATS(dir, listen string, syncAlways bool) (*server.Server, error) {
	opts := &server.Options{JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true, SyncAlways: syncAlways,
		ServerName: "marketcast-embedded"}
	if listen == "" {
		opts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(listen)
		if err != nil {
			return nil, fmt.Errorf("cluster.embedded.listen %q: %w", listen, err)
		}
		opts.Host = host
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("cluster.embedded.listen %q: %w", listen, err)
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready in 10s (data dir %s)", dir)
	}
	return ns, nil
}

func (l *natsLink) close() {
	if l.nc != nil {
		l.nc.Close()
	}
	if l.embedded != nil {
		l.embedded.Shutdown()
		l.embedded.WaitForShutdown()
	}
}
