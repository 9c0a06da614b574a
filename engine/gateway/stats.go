package gateway

import (
	"net/http"
	"time"

	"github.com/bytedance/sonic"
)

// Stats is the body of GET /ws/stats: the seed's five fields first, then
// what an operator needs beside them.
type Stats struct {
	TotalConnections   uint64  `json:"total_connections"`
	ActiveConnections  int     `json:"active_connections"`
	MessagesSent       uint64  `json:"messages_sent"`
	MessagesReceived   uint64  `json:"messages_received"`
	Errors             uint64  `json:"errors"`
	Published          uint64  `json:"published"`
	BytesSent          uint64  `json:"bytes_sent"`
	Conflated          uint64  `json:"conflated"`
	SlowConsumerCloses uint64  `json:"slow_consumer_closes"`
	WriteErrors        uint64  `json:"write_errors"`
	Topics             uint64  `json:"topics"`
	Subscriptions      uint64  `json:"subscriptions"`
	Symbols            int     `json:"symbols"`
	DeflateRatio       float64 `json:"deflate_ratio"`
	UptimeSeconds      float64 `json:"uptime_seconds"`
	Draining           bool    `json:"draining"`
	FeedReady          bool    `json:"feed_ready"`
}

// Stats returns the current counters.
func (s *Server) Stats() Stats {
	h := s.hub.Stats()
	st := Stats{
		TotalConnections:   s.connsTotal.Get(),
		ActiveConnections:  s.ActiveConnections(),
		MessagesSent:       h.Delivered + s.answers.Get(),
		MessagesReceived:   s.received.Get(),
		Errors:             s.errorsAll.Get() + h.WriteErrors,
		Published:          h.Published,
		BytesSent:          h.BytesOut,
		Conflated:          h.Conflated,
		SlowConsumerCloses: h.SlowConsumers,
		WriteErrors:        h.WriteErrors,
		Topics:             h.Topics,
		Subscriptions:      h.Subscriptions,
		Symbols:            s.market.SymbolCount(),
		UptimeSeconds:      time.Since(s.started).Seconds(),
		Draining:           s.draining.Load(),
		FeedReady:          s.feedReady.Load(),
	}
	if h.DeflateIn > 0 {
		st.DeflateRatio = float64(h.DeflateOut) / float64(h.DeflateIn)
	}
	return st
}

func (s *Server) serveStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := sonic.Marshal(v)
	if err != nil {
		http.Error(w, "encoding failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
