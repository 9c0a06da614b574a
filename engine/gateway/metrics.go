package gateway

import (
	"net/http"
	"strconv"

	"github.com/VictoriaMetrics/metrics"

	"github.com/marketcast/marketcast/engine/metric"
	"github.com/marketcast/marketcast/protocol"
)

// initMetrics declares the gateway's metrics (engine/metric says how a new
// one is added). Labelled families list their known values, so they are
// scraped at zero before the first event.
func (s *Server) initMetrics() {
	set := s.set
	s.connsTotal = metric.Counter(set, "marketcast_connections_total", "WebSocket connections accepted")
	s.connsOpen = metric.Gauge(set, "marketcast_connections", "Open WebSocket connections", nil)
	s.received = metric.Counter(set, "marketcast_messages_received_total", "Messages received from clients")
	s.answers = metric.Counter(set, "marketcast_answers_sent_total", "Direct answers sent to clients (responses and errors)")
	s.errorsAll = metric.Counter(set, "marketcast_errors_total", "Error answers sent to clients, all codes")
	s.published = metric.Counter(set, "marketcast_api_published_total", "Messages accepted by the publish API")
	s.readPanics = metric.Counter(set, "marketcast_connection_panics_total",
		"Connections closed because their read loop panicked (a bug: the process carries on); should stay 0")
	s.tcpOpen = metric.Gauge(set, "marketcast_tcp_connections", "TCP connections the listener holds (HTTP and WebSocket)", nil)
	s.opsOpen = metric.Gauge(set, "marketcast_ops_tcp_connections", "TCP connections the ops listener holds", nil)
	s.framesReceived = metric.Counter(set, "marketcast_frames_received_total", "WebSocket frames read from clients (data, continuation, control)")
	s.framesRefused = metric.Counter(set, "marketcast_frame_budget_closes_total", "Connections closed for exceeding their frame budget (limits.frames_per_second, limits.frame_burst)")
	metric.Gauge(set, "marketcast_max_connections", "limits.max_connections in effect: TCP connections the listener accepts",
		func() float64 { return float64(s.cfg.MaxConnections) })
	s.byCode = metric.NewCounterVec(set, "marketcast_errors_by_code_total", "code", "Error answers sent to clients, by protocol code",
		protocol.CodeInvalidJSON, protocol.CodeInvalidMessage, protocol.CodeUnknownType, protocol.CodeUnknownChannel,
		protocol.CodeUnknownSymbol, protocol.CodeUnknownField, protocol.CodeNotAuthenticated, protocol.CodeForbidden,
		protocol.CodeRateLimited, protocol.CodeTooManySubscriptions, protocol.CodeAuthFailed, protocol.CodeTokenExpired,
		protocol.CodeUnavailable, protocol.CodeInternal)
	var closeCodes []string
	for _, c := range []uint16{protocol.CloseGoingAway, protocol.ClosePolicy, protocol.CloseTooLarge, protocol.CloseAuthFailed, protocol.CloseTokenExpired,
		protocol.CloseSlowConsumer, protocol.CloseResumeRequired, protocol.CloseRateLimited} {
		closeCodes = append(closeCodes, strconv.Itoa(int(c)))
	}
	s.closes = metric.NewCounterVec(set, "marketcast_closes_total", "code", "Connections the server closed, by close code", closeCodes...)
	reasons := []string{"max_connections", "max_connections_per_ip", "origin", "health_reserve_evicted"}
	s.rejected = metric.NewCounterVec(set, "marketcast_connections_rejected_total", "reason",
		"Connections refused: max_connections, max_connections_per_ip, origin, health_reserve_evicted", reasons...)
	s.opsRefused = metric.NewCounterVec(set, "marketcast_ops_connections_rejected_total", "reason",
		"Connections the ops listener refused, by reason", "max_connections", "max_connections_per_ip", "health_reserve_evicted")
}

// countError records an error answer by code.
func (s *Server) countError(code string) {
	s.errorsAll.Inc()
	s.byCode.Inc(code)
}

func (s *Server) countRejected(reason string) { s.rejected.Inc(reason) }

func (s *Server) countOpsRejected(reason string) { s.opsRefused.Inc(reason) }

func (s *Server) countClose(code uint16) { s.closes.Inc(strconv.Itoa(int(code))) }

// AddMetrics adds a metric set (a broker's, a feed's, the build's) to
// /metrics.
func (s *Server) AddMetrics(set *metrics.Set) {
	s.extraMu.Lock()
	s.extra = append(s.extra, set)
	s.extraMu.Unlock()
}

// serveMetrics is GET /metrics: the Prometheus text format, with HELP and
// TYPE for every family.
func (s *Server) serveMetrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	s.extraMu.Lock()
	sets := append([]*metrics.Set{s.set, s.hub.Metrics()}, s.extra...)
	s.extraMu.Unlock()
	metric.WritePrometheus(w, sets...)
}
