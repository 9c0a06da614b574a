package gateway

import (
	"encoding/json"
	"time"

	"github.com/bytedance/sonic"

	"github.com/marketcast/marketcast/engine/frame"
	"github.com/marketcast/marketcast/protocol"
)

// answer is the envelope of every direct reply to a request.
type answer struct {
	Type      string          `json:"type"`
	ID        json.RawMessage `json:"id,omitempty"`
	Channel   string          `json:"channel,omitempty"`
	Data      any             `json:"data"`
	Timestamp string          `json:"timestamp"`
}

type errorData struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type authData struct {
	Status      string   `json:"status"`
	UserID      string   `json:"user_id,omitempty"`
	Permissions []string `json:"permissions,omitempty"`
	ExpiresAt   string   `json:"expires_at,omitempty"`
	Code        string   `json:"code,omitempty"`
	Message     string   `json:"message,omitempty"`
}

type subscribeData struct {
	Status     string   `json:"status"`
	Channel    string   `json:"channel"`
	Symbols    []string `json:"symbols,omitempty"`
	Fields     []string `json:"fields,omitempty"`
	UserID     string   `json:"user_id,omitempty"`
	StrategyID string   `json:"strategy_id,omitempty"`
	// Reliable topics: where the stream stood (epoch, last sequence) and,
	// with since, whether the resume is complete.
	Epoch     string  `json:"epoch,omitempty"`
	Sequence  *uint64 `json:"sequence,omitempty"`
	Recovered *bool   `json:"recovered,omitempty"`
	// notifications: the same for the broadcast stream, which every user
	// shares.
	Broadcast *streamData `json:"broadcast,omitempty"`
	// Market channels: the maximum frequency, and lossless ticks, asked for.
	IntervalMS int   `json:"interval_ms,omitempty"`
	Conflate   *bool `json:"conflate,omitempty"`
}

// streamData is where one reliable stream stood when a subscription began.
type streamData struct {
	Epoch     string `json:"epoch,omitempty"` // none while the stream has no run
	Sequence  uint64 `json:"sequence"`
	Recovered *bool  `json:"recovered,omitempty"`
}

type pongData struct {
	ClientTimestamp json.RawMessage `json:"client_timestamp,omitempty"`
}

func wireTime(t time.Time) string { return string(frame.AppendTime(nil, t)) }

// encodeAnswer builds the text frame of an answer.
func encodeAnswer(a *answer) []byte {
	if a.Timestamp == "" {
		a.Timestamp = wireTime(time.Now())
	}
	b, err := sonic.Marshal(a)
	if err != nil {
		// Answers are plain structs; failure is a programming error.
		b = []byte(`{"type":"error","data":{"code":"` + protocol.CodeInternal + `","message":"answer encoding failed"}}`)
	}
	return frame.Text(b)
}

func errorFrame(id json.RawMessage, code, message string) []byte {
	return encodeAnswer(&answer{Type: protocol.AnswerError, ID: id, Data: errorData{Code: code, Message: message}})
}
