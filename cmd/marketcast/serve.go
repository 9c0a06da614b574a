package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/engine/auth"
	"github.com/marketcast/marketcast/engine/gateway"
	"github.com/marketcast/marketcast/engine/metric"
	"github.com/marketcast/marketcast/engine/natsbroker"
	"github.com/marketcast/marketcast/feed/market"
	"github.com/marketcast/marketcast/feed/natsfeed"
	"github.com/marketcast/marketcast/internal/buildinfo"
	"github.com/marketcast/marketcast/protocol"
	"github.com/marketcast/marketcast/web"
)

// node is what one server process runs: the hub and its broker, the market
// (catalogue and market publishing) and the gateway in front of them, and
// in cluster mode the NATS link they share.
type node struct {
	name     string
	hub      *engine.Hub
	memory   *engine.MemoryBroker // the broker of a node on its own
	cluster  *natsbroker.Broker   // the broker of a node on NATS
	nats     *natsLink
	market   *market.Market // where sources publish: this node's hub
	bars     *natsfeed.BarStore
	streams  *streamKeeper  // the market-data streams on NATS
	api      gateway.Market // where the publish API sends market data
	verifier *auth.Verifier
	srv      *gateway.Server
}

// newNode builds the hub with its broker (in memory, or JetStream when the
// node runs on NATS) and the market.
func newNode(ctx context.Context, cfg *configs.Config, log *slog.Logger) (*node, error) {
	n := &node{name: cfg.NodeName()}
	var broker engine.Broker
	if cfg.UsesNATS() {
		link, err := connectNATS(cfg, n.name, log)
		if err != nil {
			return nil, err
		}
		n.nats = link
		if n.cluster, err = natsbroker.New(ctx, link.nc, cfg.NATSBroker(), log); err != nil {
			link.close()
			return nil, err
		}
		broker = n.cluster
	} else {
		n.memory = engine.NewMemoryBroker(cfg.HistoryLimits())
		broker = n.memory
	}
	n.hub = engine.NewHub(cfg.Engine(), broker)
	mcfg, err := cfg.Market()
	if err != nil {
		n.close()
		return nil, err
	}
	mcfg.Log = log
	if n.nats != nil {
		// A node that starts late serves bar history all the same; every
		// node's history shows the bar stored first.
		n.bars = natsfeed.NewBarStore(n.nats.nc, cfg.Feed.BarHistory, cfg.Cluster.Stream.Replicas)
		n.bars.OnReplaced(func(p *protocol.Publication) {
			msg := engine.FromPublication(p)
			_ = n.hub.MergeFinals(p.Topic(), []*engine.Event{engine.NewEvent(&msg, 0, "", time.Now())})
		})
		mcfg.Store = n.bars
		ensure := []func(context.Context) error{n.bars.Ensure}
		if cp := newCheckpoints(cfg, n.nats); cp != nil {
			mcfg.Checkpoints = cp
			ensure = append(ensure, cp.Ensure)
		}
		js, _ := jetstream.New(n.nats.nc)
		n.streams = newStreamKeeper(log, n.nats.nc, append(ensure, func(ctx context.Context) error {
			return natsfeed.EnsureLastStream(ctx, js, cfg.Cluster.Stream.Replicas, cfg.Limits.MaxSymbols, cfg.Limits.MaxMessageBytes)
		})...)
		link := n.nats
		link.onReconnect = func() { n.cluster.Reconnected(); n.streams.check() }
		link.onDisconnect = n.cluster.Disconnected
	}
	n.market = market.New(n.hub, mcfg)
	if n.nats == nil || n.nats.nc.IsConnected() {
		restoreMarket(ctx, n.market, log)
	} else {
		log.Warn("forming bars not restored: NATS is away; they start again with the next ticks")
	}
	n.api = n.market
	if cfg.FeedKind() == "nats" {
		// Every node ingests md.>: market data published here goes there
		// too, so all nodes serve it, numbered alike.
		n.api = &busMarket{Market: n.market, bus: natsfeed.NewBus(n.nats.nc)}
	}
	return n, nil
}

// close releases the broker and the NATS link.
func (n *node) close() {
	if n.bars != nil {
		n.bars.Close()
	}
	if n.cluster != nil {
		n.cluster.Close()
	}
	if n.nats != nil {
		n.nats.close()
	}
	if n.verifier != nil {
		n.verifier.Close()
	}
}

// run starts what the node runs in the background until ctx ends: sweeps,
// and in cluster mode the resynchronization after NATS comes back.
func (n *node) run(ctx context.Context) {
	go n.hub.RunSweeper(ctx, 10*time.Second)
	go n.market.Run(ctx)
	if n.memory != nil {
		go n.memory.RunSweeper(ctx, time.Minute)
	}
	if n.streams != nil {
		go n.streams.run(ctx)
	}
}

// busMarket sends the publish API's market data to the cluster bus, which
// every node (this one included) ingests.
type busMarket struct {
	*market.Market
	bus *natsfeed.Bus
}

func (m *busMarket) Publish(ctx context.Context, p *protocol.Publication) (uint64, error) {
	if err := m.AddSymbols([]string{p.ID}); err != nil { // the catalogue's limit holds here too
		return 0, err
	}
	return m.bus.Publish(ctx, p)
}

// newGateway builds the network face: limits, auth, development tokens and
// the demo page as configured.
func newGateway(cfg *configs.Config, n *node, log *slog.Logger) (*gateway.Server, error) {
	verifier, err := cfg.Verifier()
	if err != nil {
		return nil, err
	}
	n.verifier = verifier
	gcfg := cfg.Gateway()
	if cfg.DevMode {
		gcfg.DevTokenTTL, gcfg.DevSecret = cfg.Auth.DevTokenTTL.Duration, []byte(cfg.Auth.JWTSecret)
	}
	if cfg.Web {
		gcfg.Index = web.Handler()
	}
	srv := gateway.New(gcfg, n.hub, n.api, verifier, log)
	build, bi := metrics.NewSet(), buildinfo.Get()
	metric.BuildInfo(build, map[string]string{"version": bi.Version, "commit": bi.Commit, "date": bi.Date, "goversion": bi.GoVersion})
	srv.AddMetrics(build)
	srv.AddMetrics(n.market.Metrics())
	if n.cluster != nil {
		srv.AddMetrics(n.cluster.Metrics())
		srv.AddReadyCheck(n.cluster.Ready) // not ready while this node cannot publish
	}
	return srv, nil
}

// Serve runs the server until ctx ends, then drains. ready, when not nil,
// receives the bound address once the listener is up (tests use it).
func Serve(ctx context.Context, cfg *configs.Config, log *slog.Logger, ready chan<- string) error {
	if err := cfg.CheckServe(); err != nil {
		return err
	}
	if cfg.DevMode {
		log.Warn("DEVELOPMENT MODE: GET /dev/token signs a token for anyone who asks, and the JWT secret is the public " +
			"development one; never let others reach this server. Production: MARKETCAST_DEV_MODE=false MARKETCAST_JWT_SECRET=...")
	}
	for _, w := range cfg.SecurityWarnings() {
		log.Warn(w)
	}
	n, err := newNode(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer n.close()
	if n.srv, err = newGateway(cfg, n, log); err != nil {
		return err
	}
	bg, stopBackground := context.WithCancel(context.Background())
	defer stopBackground()
	n.run(bg)
	go followStorms(bg, n.srv.ActiveConnections, log)

	src, err := newSource(cfg, n, log)
	if err != nil {
		return err
	}
	ln, certs, err := listen(cfg, log)
	if err != nil {
		return err
	}
	go reloadOnHangup(bg, certs, log)
	httpSrv, serveErr := serveHTTP(n.srv.Listener(ln), n.srv.HTTPServer(httpHandler(cfg, n.srv, log)))
	metricsURL := "" // where /metrics is served, for the announcement
	if cfg.Ops.Listen != "" {
		opsLn, err := net.Listen("tcp", cfg.Ops.Listen)
		if err != nil {
			_ = httpSrv.Close()
			return fmt.Errorf("ops.listen %s: %w", cfg.Ops.Listen, err)
		}
		// The main listener's timeouts, and a cap of its own: exhausting
		// the ops port must not take the descriptors /ws and /healthz need.
		opsSrv, opsErr := serveHTTP(n.srv.OpsListener(opsLn, cfg.Ops.MaxConnections),
			n.srv.HTTPServer(n.srv.OpsHandler(pprofRoutes(cfg, n.srv))))
		defer opsSrv.Close()
		go func() {
			if err := <-opsErr; err != nil {
				log.Error("ops listener failed", "err", err)
			}
		}()
		log.Info("operations endpoints", "addr", opsLn.Addr().String())
		metricsURL = "http://" + hostPort(opsLn.Addr().String()) + "/metrics"
	}

	// The feed outlives ctx: it runs on through the drain for load
	// balancers (clients keep receiving) and stops with stopFeed below.
	feedCtx, stopFeed := context.WithCancel(context.WithoutCancel(ctx))
	defer stopFeed()
	feedDone := startFeed(feedCtx, src, n, log)

	announce(cfg, ln.Addr().String(), metricsURL, log)
	if n.nats != nil {
		if n.nats.nc.IsConnected() {
			log.Info("node joined the cluster", "node", n.name, "nats", n.nats.nc.ConnectedUrlRedacted(),
				"stream", cfg.Cluster.Stream.Name, "feed", cfg.FeedKind())
		} else {
			log.Warn("node started; it joins the cluster once NATS is reachable (not ready until then)", "node", n.name,
				"nats", cfg.NATSServer())
		}
	}
	if ready != nil {
		ready <- ln.Addr().String()
	}

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("http server: %w", err)
	}

	// The drain for load balancers (docs/OPERATIONS.md#shutdown): not ready
	// first, still serving; then close every client; then exit.
	n.srv.SetUnready()
	if d := cfg.Shutdown.UnreadyDelay.Duration; d > 0 {
		log.Info("shutting down: /readyz fails, still serving while load balancers notice", "unready_delay", d)
		waitOrSignal(d, log)
	}
	log.Info("shutting down: draining clients", "grace", cfg.Shutdown.Grace.Duration)
	stopFeed()
	<-feedDone
	n.checkpoint(log)
	shutCtx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown.Grace.Duration)
	defer cancel()
	_ = httpSrv.Shutdown(shutCtx) // stops accepting; upgraded connections are the gateway's
	if err := n.srv.Shutdown(shutCtx); err != nil {
		log.Warn("drain incomplete", "err", err)
	}
	log.Info("stopped")
	return nil
}

// waitOrSignal waits d, or until a further SIGTERM or SIGINT: a person
// pressing Ctrl-C again, or an orchestrator out of patience.
func waitOrSignal(d time.Duration, log *slog.Logger) {
	again := make(chan os.Signal, 1)
	signal.Notify(again, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(again)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case sig := <-again:
		log.Info("shutting down: second signal, draining now", "signal", sig.String())
	}
}

// listen opens the main listener, with TLS (and its certificate reloader)
// when configured.
func listen(cfg *configs.Config, log *slog.Logger) (net.Listener, *certReloader, error) {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	if cfg.TLS.CertFile == "" {
		return ln, nil, nil
	}
	certs, err := newCertReloader(cfg.TLS.CertFile, cfg.TLS.KeyFile, log)
	if err != nil {
		_ = ln.Close()
		return nil, nil, err
	}
	return tls.NewListener(ln, tlsConfig(certs)), certs, nil
}

// reloadOnHangup reloads the TLS certificate on SIGHUP (systemctl reload)
// until ctx ends. SIGHUP is handled without TLS too: its default would end
// the process.
func reloadOnHangup(ctx context.Context, certs *certReloader, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		if certs == nil {
			log.Info("SIGHUP: no TLS certificate to reload")
		} else if err := certs.reload(); err != nil {
			log.Warn("SIGHUP: tls certificate reload failed; serving the previous one", "err", err)
		} else {
			log.Info("SIGHUP: tls certificate reloaded", "cert", certs.certFile)
		}
	}
}

// httpHandler is the gateway's routes, with the profiler when configured
// and the operations endpoints share the main listener.
func httpHandler(cfg *configs.Config, srv *gateway.Server, log *slog.Logger) http.Handler {
	handler := srv.Handler()
	if !cfg.Pprof {
		return handler
	}
	log.Warn("profiler enabled at /debug/pprof/")
	if cfg.Ops.Listen != "" {
		return handler // the profiler is on the ops listener
	}
	mux := http.NewServeMux()
	mux.Handle("/", handler)
	pprofRoutes(cfg, srv)(mux)
	return mux
}

// pprofRoutes adds Go's profiler behind the operations token, when enabled.
func pprofRoutes(cfg *configs.Config, srv *gateway.Server) func(*http.ServeMux) {
	return func(mux *http.ServeMux) {
		if !cfg.Pprof {
			return
		}
		mux.Handle("/debug/pprof/", srv.OpsAuth(http.HandlerFunc(pprof.Index)))
		mux.Handle("/debug/pprof/profile", srv.OpsAuth(http.HandlerFunc(pprof.Profile)))
		mux.Handle("/debug/pprof/symbol", srv.OpsAuth(http.HandlerFunc(pprof.Symbol)))
		mux.Handle("/debug/pprof/trace", srv.OpsAuth(http.HandlerFunc(pprof.Trace)))
	}
}

// serveHTTP serves srv on ln until Shutdown; the channel reports a failure
// of the server itself.
func serveHTTP(ln net.Listener, srv *http.Server) (*http.Server, <-chan error) {
	errc := make(chan error, 1)
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	return srv, errc
}

// announce logs where the server listens (the metrics where they are
// served: on the ops listener when there is one) and, in development mode,
// a ready token.
func announce(cfg *configs.Config, addr, metricsURL string, log *slog.Logger) {
	ws, web := "ws", "http"
	if cfg.TLS.CertFile != "" {
		ws, web = "wss", "https"
	}
	if metricsURL == "" {
		metricsURL = web + "://" + hostPort(addr) + "/metrics"
	}
	log.Info("marketcast listening", "addr", addr, "ws", ws+"://"+hostPort(addr)+"/ws", "metrics", metricsURL,
		"version", buildinfo.Get().Version)
	if cfg.Web {
		log.Info("demo terminal", "open", web+"://"+hostPort(addr)+"/")
	}
	if cfg.DevMode {
		tok, err := auth.Issue([]byte(cfg.Auth.JWTSecret), "1",
			[]string{protocol.PermReadMarketData, protocol.PermReadSignals, protocol.PermPublish}, cfg.Auth.DevTokenTTL.Duration)
		if err == nil {
			log.Info("development token (user 1, all permissions)", "token", tok,
				"try", fmt.Sprintf("%s://%s/ws?token=%s", ws, hostPort(addr), tok))
		}
	}
}
