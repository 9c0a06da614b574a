package gateway

import (
	"encoding/json"
	"time"

	"github.com/bytedance/sonic"

	"github.com/marketcast/marketcast/engine/frame"
)

// Error codes of PROTOCOL.md.
const (
	CodeInvalidJSON          = "INVALID_JSON"
	CodeInvalidMessage       = "INVALID_MESSAGE"
	CodeUnknownType          = "UNKNOWN_TYPE"
	CodeUnknownChannel       = "UNKNOWN_CHANNEL"
	CodeUnknownSymbol        = "UNKNOWN_SYMBOL"
	CodeUnknownField         = "UNKNOWN_FIELD"
	CodeNotAuthenticated     = "NOT_AUTHENTICATED"
	CodeForbidden            = "FORBIDDEN"
	CodeRateLimited          = "RATE_LIMITED"
	CodeTooManySubscriptions = "TOO_MANY_SUBSCRIPTIONS"
	CodeAuthFailed           = "AUTH_FAILED"
	CodeTokenExpired         = "TOKEN_EXPIRED"
)

// Close codes of PROTOCOL.md.
const (
	CloseNormal       uint16 = 1000
	CloseGoingAway    uint16 = 1001
	CloseTooLarge     uint16 = 1009
	CloseAuthFailed   uint16 = 4001
	CloseTokenExpired uint16 = 4002
	CloseSlowConsumer uint16 = 4008
	CloseRateLimited  uint16 = 4029
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
	Recovered  *bool    `json:"recovered,omitempty"`
	Sequence   *uint64  `json:"sequence,omitempty"`
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
		b = []byte(`{"type":"error","data":{"code":"INTERNAL","message":"answer encoding failed"}}`)
	}
	return frame.Text(b)
}

func errorFrame(id json.RawMessage, code, message string) []byte {
	return encodeAnswer(&answer{Type: "error", ID: id, Data: errorData{Code: code, Message: message}})
}
