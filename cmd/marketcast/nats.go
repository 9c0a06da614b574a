package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/engine/throttle"
	"github.com/marketcast/marketcast/internal/natsperm"
)

// natsLink is this node's connection to NATS, and the embedded NATS server
// when the node runs one itself.
type natsLink struct {
	nc       *nats.Conn
	embedded *server.Server

	// Run on NATS's callback goroutine: the broker's resynchronization, and
	// the feed's readiness when market data comes over NATS.
	onReconnect  func()
	onDisconnect func()
	onFeed       func(ready bool)
}

// connectNATS connects to cluster.nats_url, or starts an embedded NATS
// server with JetStream in cluster.embedded.data_dir and connects to it.
// NATS being down does not stop it: the connection is retried forever,
// with back-off, and the node reports not ready meanwhile. While
// disconnected a publish fails at once instead of waiting in a buffer.
func connectNATS(cfg *configs.Config, name string, log *slog.Logger) (*natsLink, error) {
	l := &natsLink{onReconnect: func() {}, onDisconnect: func() {}, onFeed: func(bool) {}}
	where := cfg.NATSServer()
	unreachable := throttle.New(log, time.Minute, 3)
	opts := []nats.Option{
		nats.Name("marketcast " + name),
		nats.MaxReconnects(-1),
		nats.ReconnectBufSize(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(true),
		nats.Timeout(5 * time.Second),
		// A server that stops answering (frozen, or gone without a reset)
		// is taken for gone after two missed pings, not two minutes.
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("NATS unreachable at "+where+"; publishes answer 503 until it is back", "err", err)
			l.onDisconnect()
			l.onFeed(false)
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			unreachable.Warn("NATS unreachable at "+where+"; retrying", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "server", nc.ConnectedUrlRedacted())
			l.onReconnect()
			l.onFeed(true)
		}),
		nats.ConnectHandler(func(nc *nats.Conn) { // the first connection, made late
			log.Info("nats connected", "server", nc.ConnectedUrlRedacted())
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
		self := randomSecret()
		ns, err := startEmbeddedNATS(&c.Embedded, cfg, self)
		if err != nil {
			return nil, err
		}
		l.embedded = ns
		opts = append(opts, nats.InProcessServer(ns), nats.UserInfo(selfUser, self))
		log.Info("embedded nats server with jetstream", "data_dir", c.Embedded.DataDir, "listen", c.Embedded.Listen,
			"authenticated", c.Embedded.HasUsers())
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		l.close()
		return nil, fmt.Errorf("nats %s: %w", where, err)
	}
	if !nc.IsConnected() {
		log.Warn("NATS unreachable at " + where + "; retrying in the background (the node is not ready until it connects)")
	}
	l.nc = nc
	return l, nil
}

// selfUser is the user a node's in-process connection to its own embedded
// server authenticates as, with a password made at start.
const selfUser = "marketcast-self"

func randomSecret() string {
	var b [24]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on Linux
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// rolePermissions is what a role (natsperm.Node, Collector, Recorder)
// may publish and subscribe to on the embedded server, given the private
// stream's name: natsperm's lists, as the server takes them.
func rolePermissions(role, privStream string) *server.Permissions {
	p := natsperm.For(role, privStream)
	perm := func(subjects []string) *server.SubjectPermission {
		if len(subjects) == 0 { // an empty allow list would allow everything
			return &server.SubjectPermission{Deny: []string{">"}}
		}
		return &server.SubjectPermission{Allow: subjects}
	}
	return &server.Permissions{Publish: perm(p.Publish), Subscribe: perm(p.Subscribe)}
}

// startEmbeddedNATS runs a NATS server with JetStream as e says. With no
// listen address it accepts in-process connections only; the node itself
// connects as selfUser with password self. Once any user is configured,
// every connection must authenticate, and each user has its role's
// permissions.
func startEmbeddedNATS(e *configs.EmbeddedNATS, cfg *configs.Config, self string) (*server.Server, error) {
	opts := &server.Options{JetStream: true, StoreDir: e.DataDir, NoSigs: true, NoLog: true, SyncAlways: e.SyncAlways,
		ServerName: "marketcast-embedded"}
	if e.Listen == "" {
		opts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(e.Listen)
		if err != nil {
			return nil, fmt.Errorf("cluster.embedded.listen %q: %w", e.Listen, err)
		}
		opts.Host = host
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("cluster.embedded.listen %q: %w", e.Listen, err)
		}
	}
	priv := cfg.Cluster.Stream.Name
	if self != "" || e.HasUsers() {
		opts.Users = append(opts.Users, &server.User{Username: selfUser, Password: self, Permissions: rolePermissions(natsperm.Node, priv)})
	}
	for _, u := range []struct{ role, password, nkey string }{
		{natsperm.Node, e.NodePassword, e.NodeNKey},
		{natsperm.Collector, e.CollectorPassword, e.CollectorNKey},
		{natsperm.Recorder, e.RecorderPassword, e.RecorderNKey},
	} {
		if u.password != "" {
			opts.Users = append(opts.Users, &server.User{Username: u.role, Password: u.password, Permissions: rolePermissions(u.role, priv)})
		}
		if u.nkey != "" {
			opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: u.nkey, Permissions: rolePermissions(u.role, priv)})
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready in 10s (data dir %s)", e.DataDir)
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

// streamKeeper keeps the market-data streams (the last values, the bars)
// in place: it makes them at start, again after every reconnect (a NATS
// server back without its store has none), and retries with back-off while
// NATS is away or refuses.
type streamKeeper struct {
	log     *slog.Logger
	nc      *nats.Conn
	ensure  []func(context.Context) error
	kick    chan struct{}
	warnLog *throttle.Log
}

func newStreamKeeper(log *slog.Logger, nc *nats.Conn, ensure ...func(context.Context) error) *streamKeeper {
	return &streamKeeper{log: log, nc: nc, ensure: ensure, kick: make(chan struct{}, 1), warnLog: throttle.New(log, time.Minute, 3)}
}

// check makes the keeper check the streams now.
func (k *streamKeeper) check() {
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

// run keeps the streams until ctx ends.
func (k *streamKeeper) run(ctx context.Context) {
	retry := time.Duration(0)
	for {
		if k.ensureAll(ctx) {
			retry = 0
			select { // until the next reconnect
			case <-ctx.Done():
				return
			case <-k.kick:
			}
			continue
		}
		retry = min(max(2*retry, 250*time.Millisecond), 10*time.Second)
		select {
		case <-ctx.Done():
			return
		case <-k.kick:
		case <-time.After(retry):
		}
	}
}

func (k *streamKeeper) ensureAll(ctx context.Context) bool {
	if !k.nc.IsConnected() {
		return false // said once by the connection; the reconnect kicks
	}
	for _, ensure := range k.ensure {
		ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := ensure(ectx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				k.warnLog.Warn("market-data stream not in place yet; retrying", "err", err)
			}
			return false
		}
	}
	return true
}
