package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// healthReserve is how many connections beyond the cap are still accepted,
// to answer health checks only, so an orchestrator can tell a full server
// from a dead one.
const healthReserve = 64

// reserveTimeout bounds a reserve connection: its request must arrive
// within it, and it is closed after one answer.
const reserveTimeout = 2 * time.Second

// connLimiter wraps a listener so the process never holds more TCP
// connections than its file descriptors allow: at most max in all and at
// most perIP from one address; beyond either, a new connection is closed
// at once. It counts every TCP connection, idle keep-alives and WebSockets
// alike: they all hold a descriptor.
//
// Past max, up to healthReserve more connections are answered here, not by
// the HTTP server: /healthz and /readyz get their answer and anything else
// 503, one request each, then the connection is closed. When the reserve is
// full its oldest connection is closed to make room, so a flood of
// connections that send nothing (or keep a health check alive) cannot hold
// the reserve against the orchestrator's probe.
type connLimiter struct {
	net.Listener
	max, perIP int
	health     func(path string) (status int, body string)

	mu      sync.Mutex
	total   int
	byIP    map[string]int
	reserve []*limitedConn // oldest first

	open     *metrics.Gauge
	rejected func(reason string)
}

// limitedConn is an accepted connection.
type limitedConn struct {
	net.Conn
	l    *connLimiter
	ip   string
	once sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(c.l.release(c))
	return c.Conn.Close()
}

func (l *connLimiter) release(c *limitedConn) func() {
	return func() {
		l.mu.Lock()
		l.total--
		if l.byIP[c.ip]--; l.byIP[c.ip] <= 0 {
			delete(l.byIP, c.ip)
		}
		if i := slices.Index(l.reserve, c); i >= 0 {
			l.reserve = slices.Delete(l.reserve, i, i+1)
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
		var evict *limitedConn
		reason := ""
		switch {
		case l.perIP > 0 && l.byIP[ip] >= l.perIP:
			reason = "max_connections_per_ip"
		case l.total >= l.max && l.health == nil:
			reason = "max_connections"
		case l.total >= l.max && len(l.reserve) >= healthReserve:
			evict = l.reserve[0] // its slot is this one's once closed
			l.reserve = l.reserve[1:]
		}
		if reason != "" {
			l.mu.Unlock()
			_ = c.Close()
			l.rejected(reason)
			continue
		}
		lc := &limitedConn{Conn: c, l: l, ip: ip}
		overflow := l.total >= l.max
		l.total++
		l.byIP[ip]++
		if overflow {
			l.reserve = append(l.reserve, lc)
		}
		l.mu.Unlock()
		l.open.Inc()
		if evict != nil {
			l.rejected("health_reserve_evicted")
			_ = evict.Close()
		}
		if overflow {
			go l.serveReserve(lc)
			continue
		}
		return lc, nil
	}
}

// serveReserve answers one request of a connection past the cap.
func (l *connLimiter) serveReserve(c *limitedConn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(reserveTimeout))
	req, err := http.ReadRequest(bufio.NewReader(io.LimitReader(c, 8<<10)))
	if err != nil {
		return
	}
	status, body := l.health(req.URL.Path)
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		status, body = http.StatusServiceUnavailable, reserveRefusal
	}
	if status == http.StatusServiceUnavailable && body == reserveRefusal {
		l.rejected("max_connections")
	}
	_, _ = fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"+
		"Connection: close\r\nRetry-After: 5\r\n\r\n%s", status, http.StatusText(status), len(body), body)
}

const reserveRefusal = "server at its connection limit; retry later or elsewhere\n"

// healthAnswer is what the reserve answers for path.
func (s *Server) healthAnswer(path string) (int, string) {
	switch path {
	case "/healthz":
		return http.StatusOK, "ok\n"
	case "/readyz":
		if msg := s.notReady(); msg != "" {
			return http.StatusServiceUnavailable, msg + "\n"
		}
		return http.StatusOK, "ready\n"
	}
	return http.StatusServiceUnavailable, reserveRefusal
}

func remoteIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, _ := net.SplitHostPort(a.String())
	return host
}

// Listener wraps ln with the connection limits. Serve it with HTTPServer.
func (s *Server) Listener(ln net.Listener) net.Listener {
	return &connLimiter{Listener: ln, max: s.cfg.MaxConnections, perIP: s.cfg.MaxConnectionsPerIP, health: s.healthAnswer,
		byIP: make(map[string]int), open: s.tcpOpen, rejected: s.countRejected}
}

// OpsListener wraps the operations listener ln with limits of its own: at
// most max connections (and its own health reserve), so exhausting it
// cannot take the descriptors the main listener needs. Serve it with
// HTTPServer too, for the same timeouts.
func (s *Server) OpsListener(ln net.Listener, max int) net.Listener {
	return &connLimiter{Listener: ln, max: max, perIP: s.cfg.MaxConnectionsPerIP, health: s.healthAnswer,
		byIP: make(map[string]int), open: s.opsOpen, rejected: s.countOpsRejected}
}

// HTTPServer is the http.Server for the gateway's routes: header, request
// and idle keep-alive timeouts.
func (s *Server) HTTPServer(handler http.Handler) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		// Bounds reading a request (a publish body); an upgraded WebSocket
		// sets its own read deadline as soon as it opens.
		ReadTimeout: s.cfg.ReadTimeout,
		// An idle keep-alive connection holds a descriptor for nothing.
		IdleTimeout: s.cfg.IdleTimeout,
	}
}

// NetConn is the TCP connection beneath, as tls.Conn names its own: the
// engine sets socket options on it.
func (c *limitedConn) NetConn() net.Conn { return c.Conn }
