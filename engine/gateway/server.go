// Package gateway is the network face of the engine: the HTTP mux, the
// WebSocket upgrade (gws), sessions with their auth handshake, request
// handling and limits, the publish API, health, stats and metrics.
package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marketcast/marketcast/engine/throttle"

	"github.com/VictoriaMetrics/metrics"
	"github.com/lxzan/gws"

	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/engine/auth"
	"github.com/marketcast/marketcast/engine/frame"
	"github.com/marketcast/marketcast/engine/metric"
	"github.com/marketcast/marketcast/protocol"
)

// Config tunes a Server. configs/marketcast.yaml holds every default
// (configs.Default().Gateway() builds this from it); New panics on a zero
// limit, naming it.
type Config struct {
	// MaxSubscriptions is the topic limit per connection.
	MaxSubscriptions int
	// MaxFrameBytes is the largest client frame; larger closes with 1009.
	MaxFrameBytes int
	// RatePerMinute is the sustained client request budget, in request
	// units: a request costs one, a subscribe one per topic it adds.
	RatePerMinute int
	// RateBurst is how many request units may be spent at once.
	RateBurst int
	// RateStrikes is how many rate-limited messages in a row close the
	// connection with 4029.
	RateStrikes int
	// FramesPerSecond and FrameBurst are the frame budget: every frame a
	// client sends (data, continuation, ping, pong, close) costs one; a
	// client past it is closed with 4029. Before it authenticates a
	// connection has preAuthFrames.
	FramesPerSecond, FrameBurst int
	// MaxFragments bounds the frames of one fragmented message, and
	// FragmentTimeout the time from its first frame to its last; past
	// either the connection is closed with 1008.
	MaxFragments    int
	FragmentTimeout time.Duration
	// Now is the clock of the rate and frame budgets (nil: time.Now);
	// tests inject one to observe time.
	Now func() time.Time
	// AuthTimeout is how long a connection may stay unauthenticated.
	AuthTimeout time.Duration
	// PingInterval is the WebSocket ping period; a connection silent for
	// two periods is closed.
	PingInterval time.Duration
	// DisableDeflate turns permessage-deflate negotiation off.
	DisableDeflate bool
	// MaxPublishBody bounds one publish API request body.
	MaxPublishBody int
	// MaxMessageBytes bounds one published message's data.
	MaxMessageBytes int
	// MarketRules check published market data's exchange times (the zone
	// of a time written without one, how far ahead it may be); nil: UTC
	// and the protocol's default.
	MarketRules *protocol.Rules
	// SubscribeTimeout bounds the broker reads of one subscribe.
	SubscribeTimeout time.Duration
	// MaxConnections bounds the TCP connections the listener holds (a small
	// reserve beyond it serves health checks only).
	MaxConnections int
	// MaxConnectionsPerIP bounds those from one address; 0 turns it off
	// (behind a proxy every client shares its address).
	MaxConnectionsPerIP int
	// ReadHeaderTimeout, ReadTimeout and IdleTimeout bound reading a
	// request's headers, a whole request, and an idle keep-alive.
	ReadHeaderTimeout, ReadTimeout, IdleTimeout time.Duration
	// AllowedOrigins lists the browser Origins that may open /ws
	// ("https://*.example.com" matches subdomains); empty allows any.
	AllowedOrigins []string
	// OpsToken, when set, is required as a bearer token by the operations
	// endpoints (/metrics, /ws/stats).
	OpsToken string
	// OpsSeparate leaves the operations endpoints out of Handler: the
	// server serves OpsHandler on a listener of its own.
	OpsSeparate bool
	// MaxBarHistory bounds a kline subscription's "history".
	MaxBarHistory int
	// DrainDrop makes Shutdown end connections without a close frame, for
	// clients that reconnect only after an unclean close.
	DrainDrop bool
	// DevTokenTTL, when set, enables GET /dev/token, which signs a token for
	// anyone who asks: development configurations only.
	DevTokenTTL time.Duration
	// DevSecret signs development tokens.
	DevSecret []byte
	// Index is served at "/" when set (the demo terminal).
	Index http.Handler
}

func (c *Config) check() {
	for name, v := range map[string]int64{
		"MaxSubscriptions": int64(c.MaxSubscriptions), "MaxFrameBytes": int64(c.MaxFrameBytes),
		"RatePerMinute": int64(c.RatePerMinute), "RateBurst": int64(c.RateBurst), "RateStrikes": int64(c.RateStrikes),
		"FramesPerSecond": int64(c.FramesPerSecond), "FrameBurst": int64(c.FrameBurst), "MaxFragments": int64(c.MaxFragments),
		"FragmentTimeout": int64(c.FragmentTimeout),
		"AuthTimeout":     int64(c.AuthTimeout), "PingInterval": int64(c.PingInterval), "MaxPublishBody": int64(c.MaxPublishBody),
		"MaxMessageBytes": int64(c.MaxMessageBytes), "SubscribeTimeout": int64(c.SubscribeTimeout),
		"MaxConnections": int64(c.MaxConnections), "ReadHeaderTimeout": int64(c.ReadHeaderTimeout),
		"ReadTimeout": int64(c.ReadTimeout), "IdleTimeout": int64(c.IdleTimeout),
	} {
		if v <= 0 {
			panic("gateway: Config." + name + " must be > 0")
		}
	}
}

// Market is where market data published through the API goes, and what
// knows the symbol universe (feed.Market in the server; the gateway only
// needs this much of it).
type Market interface {
	// Publish accepts a validated market publication; the sequence is 0
	// when the data travels through a cluster bus first.
	Publish(ctx context.Context, p *protocol.Publication) (seq uint64, err error)
	// HasSymbol reports whether the universe knows symbol.
	HasSymbol(symbol string) bool
	// Symbols lists the universe, sorted. The slice is shared: do not modify it.
	Symbols() []string
	// SymbolCount is the size of the universe.
	SymbolCount() int
	// WarmBars makes a kline topic's closed bars available before a
	// subscription asks for its history (a late node loads them).
	WarmBars(ctx context.Context, ch *protocol.Channel, symbol string) error
}

// Server serves WebSocket clients and the HTTP API.
type Server struct {
	cfg      Config
	hub      *engine.Hub
	market   Market
	verifier *auth.Verifier
	log      *slog.Logger
	upgrader *gws.Upgrader
	started  time.Time

	sessions  sync.Map // *session → struct{}
	draining  atomic.Bool
	unready   atomic.Bool // shutting down: /readyz fails, all else still served
	feedReady atomic.Bool
	readyMu   sync.Mutex
	ready     []func() error // more that /readyz requires (the cluster broker's)
	stop      chan struct{}
	stopOnce  sync.Once
	wg        sync.WaitGroup

	set        *metrics.Set
	extraMu    sync.Mutex
	extra      []*metrics.Set
	connsTotal *metrics.Counter
	connsOpen  *metrics.Gauge
	received   *metrics.Counter
	answers    *metrics.Counter
	errorsAll  *metrics.Counter
	published  *metrics.Counter
	readPanics *metrics.Counter
	tcpOpen    *metrics.Gauge
	opsOpen    *metrics.Gauge
	byCode     *metric.CounterVec // error answers
	closes     *metric.CounterVec // closes the server initiated
	rejected   *metric.CounterVec // connections refused
	opsRefused *metric.CounterVec // ops listener connections refused

	framesReceived *metrics.Counter
	framesRefused  *metrics.Counter

	panicLog *throttle.Log
	authLog  *throttle.Log // failed logins: a stranger can cause them at will
	storeLog *throttle.Log // broker or bar store failing a client's request: clients ask at will
}

// New returns a server for hub and market. It starts the keepalive loop;
// Shutdown stops it.
func New(cfg Config, hub *engine.Hub, market Market, verifier *auth.Verifier, log *slog.Logger) *Server {
	cfg.check()
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{
		cfg:      cfg,
		hub:      hub,
		market:   market,
		verifier: verifier,
		log:      log,
		started:  time.Now(),
		stop:     make(chan struct{}),
		set:      metrics.NewSet(),
	}
	s.initMetrics() // metrics.go
	s.panicLog = throttle.New(log, time.Minute, 5)
	s.authLog = throttle.New(log, time.Minute, 20)
	s.storeLog = throttle.New(log, time.Minute, 20)

	s.upgrader = gws.NewUpgrader(&wsHandler{s}, &gws.ServerOption{
		ReadMaxPayloadSize: cfg.MaxFrameBytes,
		ReadBufferSize:     readBufferSize,
		HandshakeTimeout:   5 * time.Second,
		CheckUtf8Enabled:   true,
		PermessageDeflate: gws.PermessageDeflate{
			Enabled: !cfg.DisableDeflate,
			// Frames are compressed once and shared, which only works
			// when no message depends on the ones before it.
			ServerContextTakeover: false,
			ClientContextTakeover: false,
			PoolSize:              4,
		},
		NewSession: func() gws.SessionStorage { return new(sessionSlot) },
		// No gws Recovery: a panic anywhere in a connection's read loop,
		// OnMessage included, reaches readLoop, which closes that one
		// connection and counts it.
		Logger: slogAdapter{log},
	})
	s.wg.Add(1)
	go s.keepalive()
	return s
}

func (s *Server) now() time.Time { return s.cfg.Now() }

// SetUnready makes /readyz fail while everything else is still served:
// the first step of a shutdown, so that load balancers stop sending new
// clients before the drain closes the connected ones.
func (s *Server) SetUnready() { s.unready.Store(true) }

// SetFeedReady marks whether the market feed runs; /readyz reports it.
func (s *Server) SetFeedReady(ok bool) { s.feedReady.Store(ok) }

// AddReadyCheck adds a condition of /readyz: while check returns an
// error, the node is not ready, and /readyz says why.
func (s *Server) AddReadyCheck(check func() error) {
	s.readyMu.Lock()
	s.ready = append(s.ready, check)
	s.readyMu.Unlock()
}

// failedCheck is the error of the first ready check that fails, or nil.
func (s *Server) failedCheck() error {
	s.readyMu.Lock()
	checks := s.ready
	s.readyMu.Unlock()
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// Handler returns the HTTP routes of PROTOCOL.md (the operations
// endpoints too, unless they have a listener of their own).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", s.serveWS)
	if !s.cfg.OpsSeparate {
		s.opsRoutes(mux)
	}
	s.healthRoutes(mux)
	mux.HandleFunc("POST /api/v1/publish", s.servePublish)
	for _, m := range []string{"GET", "PUT", "PATCH", "DELETE"} {
		// Without these, GET would fall through to the demo page's 404.
		mux.HandleFunc(m+" /api/v1/publish", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Allow", "POST")
			s.apiFail(w, http.StatusMethodNotAllowed, protocol.CodeInvalidMessage, "use POST to publish")
		})
	}
	mux.HandleFunc("GET /api/v1/symbols", s.serveSymbols)
	if s.cfg.DevTokenTTL > 0 {
		mux.HandleFunc("GET /dev/token", s.serveDevToken)
	}
	if s.cfg.Index != nil {
		mux.Handle("GET /", s.cfg.Index)
	}
	return mux
}

// OpsHandler serves the operations endpoints and health checks, for a
// listener of their own.
func (s *Server) OpsHandler(extra func(*http.ServeMux)) http.Handler {
	mux := http.NewServeMux()
	s.opsRoutes(mux)
	s.healthRoutes(mux)
	if extra != nil {
		extra(mux)
	}
	return mux
}

func (s *Server) opsRoutes(mux *http.ServeMux) {
	mux.Handle("GET /metrics", s.opsAuth(http.HandlerFunc(s.serveMetrics)))
	mux.Handle("GET /ws/stats", s.opsAuth(http.HandlerFunc(s.serveStats)))
}

func (s *Server) healthRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", s.serveReady)
}

// opsAuth requires the operations token, when one is configured.
func (s *Server) opsAuth(next http.Handler) http.Handler {
	if s.cfg.OpsToken == "" {
		return next
	}
	want := []byte(s.cfg.OpsToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(bearerToken(r)), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="marketcast-ops"`)
			s.apiFail(w, http.StatusUnauthorized, protocol.CodeNotAuthenticated, "the operations endpoints need Authorization: Bearer <ops.token>")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// OpsAuth wraps another operations handler (the profiler) in the same
// token check.
func (s *Server) OpsAuth(h http.Handler) http.Handler { return s.opsAuth(h) }

// originAllowed reports whether a browser from origin may open /ws.
func (s *Server) originAllowed(origin string) bool {
	if origin == "" || len(s.cfg.AllowedOrigins) == 0 {
		return true // not a browser, or no list: tokens are explicit, never cookies
	}
	for _, allowed := range s.cfg.AllowedOrigins {
		if strings.EqualFold(origin, allowed) {
			return true
		}
		if scheme, domain, ok := strings.Cut(allowed, "://*."); ok {
			rest, ok := strings.CutPrefix(strings.ToLower(origin), strings.ToLower(scheme)+"://")
			if ok && strings.HasSuffix(rest, "."+strings.ToLower(domain)) && !strings.ContainsAny(rest, "/@") {
				return true
			}
		}
	}
	return false
}

func (s *Server) serveReady(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if msg := s.notReady(); msg != "" {
		http.Error(w, msg, http.StatusServiceUnavailable)
		return
	}
	_, _ = io.WriteString(w, "ready\n")
}

// notReady says why the server is not ready, or "".
func (s *Server) notReady() string {
	if s.draining.Load() {
		return "draining"
	}
	if s.unready.Load() {
		return "shutting down"
	}
	// The node's own ability to publish first: when NATS is away the feed
	// is too, and this says why.
	if err := s.failedCheck(); err != nil {
		return "cannot publish: " + err.Error()
	}
	if !s.feedReady.Load() {
		return "feed not connected"
	}
	return ""
}

// serveSymbols lists the market universe, sorted, so a terminal can build
// its watch list without hard-coding symbols.
func (s *Server) serveSymbols(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"symbols": s.market.Symbols()})
}

// tokenFromRequest returns a token offered in the handshake: ?token= or an
// Authorization: Bearer header.
func tokenFromRequest(r *http.Request) string {
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	return bearerToken(r)
}

// bearerToken returns the token of an Authorization: Bearer header, or "".
func bearerToken(r *http.Request) string {
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return h[7:]
	}
	return ""
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		http.Error(w, "server is shutting down", http.StatusServiceUnavailable)
		return
	}
	if origin := r.Header.Get("Origin"); !s.originAllowed(origin) {
		s.countRejected("origin")
		http.Error(w, "origin "+origin+" may not open this WebSocket (http.allowed_origins)", http.StatusForbidden)
		return
	}
	socket, wrapped, err := s.upgrade(w, r)
	if err != nil {
		s.log.Debug("upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	sess := &session{
		srv:  s,
		conn: socket,
		// Frames are written straight to the socket, compressed or not as
		// gws negotiated; nothing else may write data frames through gws.
		out:    s.hub.NewOutbox(socket.NetConn(), socket.CompressionEnabled()),
		slot:   wrapped,
		remote: r.RemoteAddr,
		token:  tokenFromRequest(r),
		bucket: newBucket(float64(s.cfg.RatePerMinute)/60, s.cfg.RateBurst),
		frames: newBucket(0, min(preAuthFrames, s.cfg.FrameBurst)),
	}
	sess.out.OnCloseSent(func() {
		socket.CloseSent()
		sess.closeWritten()
	})
	socket.Session().Store("", sess)
	// The handler returns so net/http can free the request; the read loop
	// is the connection's only goroutine.
	go s.readLoop(socket, sess)
}

// readBufferSize is a connection's read buffer: client requests are small,
// and this buffer lives as long as the connection.
const readBufferSize = 512

// upgrade hijacks the request's connection and makes it a WebSocket on
// the TCP connection itself: the connection limiter's wrapper stays out of
// the data path (through it the read loop's goroutine needed an 8 KiB
// stack instead of 4, and frames lost writev). The wrapper is returned to
// be closed when the session ends, which frees its slot. Bytes the client
// sent after its request (a pipelined first frame) are read first.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request) (*gws.Conn, net.Conn, error) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("gateway: the connection cannot be taken over")
	}
	wrapped, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	raw := wrapped
	if l, ok := wrapped.(*limitedConn); ok {
		raw = l.Conn
	}
	var rd io.Reader = raw
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ := brw.Reader.Peek(n)
		rd = io.MultiReader(bytes.NewReader(bytes.Clone(early)), raw)
	}
	socket, err := s.upgrader.UpgradeFromConn(raw, bufio.NewReaderSize(rd, readBufferSize), r)
	if err != nil {
		_ = wrapped.Close()
		return nil, nil, err
	}
	return socket, wrapped, nil
}

// readLoop runs gws's read loop for one connection. A panic in it (gws, or
// our handlers) must cost that connection only: gws recovers nothing around
// its frame parser, and an unrecovered panic in any goroutine ends the
// process, dropping every client and all in-memory history.
func (s *Server) readLoop(socket *gws.Conn, ss *session) {
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		s.readPanics.Inc()
		s.panicLog.Error("connection read loop panicked; closing that connection",
			"remote", ss.remote, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		_ = socket.NetConn().Close()
		ss.finish(fmt.Errorf("gateway: read loop panic: %v", p))
	}()
	socket.ReadLoop()
}

// keepalive pings every connection each interval, and samples every
// connection's lag once a second (the marketcast_connection_lag_seconds
// histogram). One goroutine serves all connections, so an idle connection
// costs no goroutine of its own.
func (s *Server) keepalive() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.PingInterval)
	defer t.Stop()
	lag := time.NewTicker(lagSampleInterval)
	defer lag.Stop()
	var lags []time.Duration
	for {
		select {
		case <-s.stop:
			return
		case now := <-lag.C:
			lags = lags[:0]
			s.sessions.Range(func(k, _ any) bool {
				out := k.(*session).out
				lags = append(lags, out.Lag(now))
				out.TrimIdle(now)
				return true
			})
			s.hub.ObserveLag(lags)
		case <-t.C:
			s.sessions.Range(func(k, _ any) bool {
				k.(*session).out.Ping(frame.Ping)
				return true
			})
		}
	}
}

// lagSampleInterval is how often every connection's lag is sampled.
const lagSampleInterval = time.Second

// ActiveConnections is the number of open WebSocket connections.
func (s *Server) ActiveConnections() int { return int(s.connsOpen.Get()) }

// Shutdown drains: new connections and publishes are refused, every client
// is closed with 1001, and Shutdown waits until they are gone or ctx ends,
// then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.stopOnce.Do(func() { close(s.stop) })
	closeAll := func() {
		s.sessions.Range(func(k, _ any) bool {
			ss := k.(*session)
			if s.cfg.DrainDrop {
				// No close frame: the client sees an unclean close (1006)
				// and a client that reconnects only then comes back.
				_ = ss.conn.NetConn().Close()
				return true
			}
			ss.out.Close(protocol.CloseGoingAway, "server shutting down")
			return true
		})
	}
	closeAll()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for s.ActiveConnections() > 0 {
		// A connection upgraded just before draining began may register
		// its session after the first pass: close it too (Close is
		// idempotent).
		closeAll()
		select {
		case <-ctx.Done():
			s.sessions.Range(func(k, _ any) bool {
				_ = k.(*session).conn.NetConn().Close()
				return true
			})
			s.wg.Wait()
			return fmt.Errorf("gateway: shutdown: %d connections left: %w", s.ActiveConnections(), ctx.Err())
		case <-t.C:
		}
	}
	s.wg.Wait()
	return nil
}

// sessionSlot is a one-value gws.SessionStorage: a connection needs only its
// session, and gws's default map costs far more per connection.
type sessionSlot struct{ v any }

func (s *sessionSlot) Len() int {
	if s.v == nil {
		return 0
	}
	return 1
}
func (s *sessionSlot) Load(string) (any, bool) { return s.v, s.v != nil }
func (s *sessionSlot) Delete(string)           { s.v = nil }
func (s *sessionSlot) Store(_ string, v any)   { s.v = v }
func (s *sessionSlot) Range(f func(string, any) bool) {
	if s.v != nil {
		f("", s.v)
	}
}

// slogAdapter routes gws's log lines into slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Error(v ...any) { a.l.Error(fmt.Sprint(v...), "component", "gws") }
