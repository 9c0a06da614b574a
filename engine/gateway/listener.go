package gateway

import (
	"context"
	"net"
	"net/http"
	"sync"

	"github.com/VictoriaMetrics/metrics"
)

// healthReserve is how many connections beyond the cap are still accepted,
// for health and metrics requests only, so an orchestrator can tell a full
// server from a dead one.
const healthReserve = 64

// connLimiter wraps a listener so the process never holds more TCP
// connections than its file descriptors allow: at most max in all (plus a
// small reserve for health checks) and at most perIP from one address.
// Beyond either, a new connection is closed at once. It counts every TCP
// connection, idle keep-alives and WebSockets alike: they all hold a
// descriptor.
type connLimiter struct {
	net.Listener
	max, perIP int

	mu    sync.Mutex
	total int
	byIP  map[string]int

	open     *metrics.Gauge
	rejected func(reason string)
}

// limitedConn is an accepted connection; overflow marks one of the health
// reserve.
type limitedConn struct {
	net.Conn
	l        *connLimiter
	ip       string
	overflow bool
	once     sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(c.l.release(c.ip))
	return c.Conn.Close()
}

func (l *connLimiter) release(ip string) func() {
	return func() {
		l.mu.Lock()
		l.total--
		if l.byIP[ip]--; l.byIP[ip] <= 0 {
			delete(l.byIP, ip)
		}
		l.mu.Unlock()
		l.open.Dec()
	}
}

func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c.RemoteAddr())
		l.mu.Lock()
		reason := ""
		switch {
		case l.total >= l.max+healthReserve:
			reason = "max_connections"
		case l.perIP > 0 && l.byIP[ip] >= l.perIP:
			reason = "max_connections_per_ip"
		}
		if reason != "" {
			l.mu.Unlock()
			_ = c.Close()
			l.rejected(reason)
			continue
		}
		overflow := l.total >= l.max
		l.total++
		l.byIP[ip]++
		l.mu.Unlock()
		l.open.Inc()
		return &limitedConn{Conn: c, l: l, ip: ip, overflow: overflow}, nil
	}
}

func remoteIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, _ := net.SplitHostPort(a.String())
	return host
}

type connKey struct{}

// Listener wraps ln with the connection limits. Serve it with HTTPServer.
func (s *Server) Listener(ln net.Listener) net.Listener {
	return &connLimiter{Listener: ln, max: s.cfg.MaxConnections, perIP: s.cfg.MaxConnectionsPerIP,
		byIP: make(map[string]int), open: s.tcpOpen, rejected: s.countRejected}
}

// HTTPServer is the http.Server for the gateway's routes: header, request
// and idle keep-alive timeouts, and the connection limits' health reserve.
func (s *Server) HTTPServer(handler http.Handler) *http.Server {
	return &http.Server{
		Handler:           s.reserveOnly(handler),
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		// Bounds reading a request (a publish body); an upgraded WebSocket
		// sets its own read deadline as soon as it opens.
		ReadTimeout: s.cfg.ReadTimeout,
		// An idle keep-alive connection holds a descriptor for nothing.
		IdleTimeout: s.cfg.IdleTimeout,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
}

// reserveOnly serves a connection of the health reserve only health and
// metrics, and tells everything else the server is full.
func (s *Server) reserveOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := r.Context().Value(connKey{}).(*limitedConn); ok && c.overflow {
			switch r.URL.Path {
			case "/healthz", "/readyz", "/metrics":
			default:
				s.countRejected("max_connections")
				w.Header().Set("Connection", "close")
				w.Header().Set("Retry-After", "5")
				http.Error(w, "server at its connection limit; retry later or elsewhere", http.StatusServiceUnavailable)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
