package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/engine/auth"
	"github.com/marketcast/marketcast/engine/gateway"
	"github.com/marketcast/marketcast/feed"
	"github.com/marketcast/marketcast/protocol"
	"github.com/marketcast/marketcast/web"
)

// node is what one server process runs: the hub and its broker, the market
// (catalogue and market publishing) and the gateway in front of them.
type node struct {
	hub    *engine.Hub
	broker *engine.MemoryBroker
	market *feed.Market
	srv    *gateway.Server
}

// newNode builds the hub with its broker and the market.
func newNode(cfg *configs.Config) *node {
	broker := engine.NewMemoryBroker(cfg.HistoryLimits())
	hub := engine.NewHub(cfg.Engine(), broker)
	return &node{hub: hub, broker: broker, market: feed.NewMarket(hub, cfg.Limits.MaxSymbols)}
}

// newGateway builds the network face: limits, auth, development tokens and
// the demo page as configured.
func newGateway(cfg *configs.Config, n *node, log *slog.Logger) *gateway.Server {
	secret := []byte(cfg.Auth.JWTSecret)
	gcfg := cfg.Gateway()
	if cfg.DevMode {
		gcfg.DevTokenTTL, gcfg.DevSecret = cfg.Auth.DevTokenTTL.Duration, secret
	}
	if cfg.Web {
		gcfg.Index = web.Handler()
	}
	return gateway.New(gcfg, n.hub, n.market, auth.NewVerifier(secret), log)
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
	n := newNode(cfg)
	n.srv = newGateway(cfg, n, log)

	bg, stopBackground := context.WithCancel(context.Background())
	defer stopBackground()
	go n.hub.RunSweeper(bg, 10*time.Second)
	go n.broker.RunSweeper(bg, time.Minute)

	src, err := newSource(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	httpSrv, serveErr := serveHTTP(n.srv.Listener(ln), n.srv.HTTPServer(httpHandler(cfg, n.srv, log)))

	feedCtx, stopFeed := context.WithCancel(ctx)
	defer stopFeed()
	feedDone := startFeed(feedCtx, src, n, log)

	announce(cfg, ln.Addr().String(), log)
	if ready != nil {
		ready <- ln.Addr().String()
	}

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("http server: %w", err)
	}

	log.Info("shutting down: draining clients", "grace", cfg.Shutdown.Grace.Duration)
	stopFeed()
	<-feedDone
	shutCtx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown.Grace.Duration)
	defer cancel()
	_ = httpSrv.Shutdown(shutCtx) // stops accepting; upgraded connections are the gateway's
	if err := n.srv.Shutdown(shutCtx); err != nil {
		log.Warn("drain incomplete", "err", err)
	}
	log.Info("stopped")
	return nil
}

// httpHandler is the gateway's routes, with the profiler when configured.
func httpHandler(cfg *configs.Config, srv *gateway.Server, log *slog.Logger) http.Handler {
	handler := srv.Handler()
	if !cfg.Pprof {
		return handler
	}
	mux := http.NewServeMux()
	mux.Handle("/", handler)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	log.Warn("profiler enabled at /debug/pprof/")
	return mux
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

// announce logs where the server listens and, in development mode, a ready
// token.
func announce(cfg *configs.Config, addr string, log *slog.Logger) {
	log.Info("marketcast listening", "addr", addr, "ws", "ws://"+hostPort(addr)+"/ws",
		"metrics", "http://"+hostPort(addr)+"/metrics")
	if cfg.Web {
		log.Info("demo terminal", "open", "http://"+hostPort(addr)+"/")
	}
	if cfg.DevMode {
		tok, err := auth.Issue([]byte(cfg.Auth.JWTSecret), "1",
			[]string{protocol.PermReadMarketData, protocol.PermReadSignals, protocol.PermPublish}, cfg.Auth.DevTokenTTL.Duration)
		if err == nil {
			log.Info("development token (user 1, all permissions)", "token", tok,
				"try", fmt.Sprintf("ws://%s/ws?token=%s", hostPort(addr), tok))
		}
	}
}
