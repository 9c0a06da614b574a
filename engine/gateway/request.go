package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/marketcast/marketcast/protocol"
)

// Request is a client→server message. Unknown keys are ignored so newer
// clients can talk to older servers.
type Request struct {
	ID         json.RawMessage `json:"id,omitempty"`
	Type       string          `json:"type"`
	Channel    string          `json:"channel,omitempty"`
	Symbols    []string        `json:"symbols,omitempty"`
	Fields     []string        `json:"fields,omitempty"`
	UserID     json.RawMessage `json:"user_id,omitempty"` // a string or a number (the seed sends 1)
	StrategyID string          `json:"strategy_id,omitempty"`
	Since      *uint64         `json:"since,omitempty"`
	Epoch      string          `json:"epoch,omitempty"`
	// notifications: where the client stands in the broadcast stream.
	BroadcastSince *uint64 `json:"broadcast_since,omitempty"`
	BroadcastEpoch string  `json:"broadcast_epoch,omitempty"`
	// kline channels: how many closed bars to send first.
	History   int             `json:"history,omitempty"`
	Token     string          `json:"token,omitempty"` // the seed client's auth shape
	Data      json.RawMessage `json:"data,omitempty"`  // {"token": ...} in the documented auth shape
	Timestamp json.RawMessage `json:"timestamp,omitempty"`
	// Market channels: at most one update per interval_ms per topic; and,
	// on market_data, conflate: false for every tick in order.
	IntervalMS *int  `json:"interval_ms,omitempty"`
	Conflate   *bool `json:"conflate,omitempty"`
	// credit: how many more pushed messages the client grants.
	N *int `json:"n,omitempty"`
}

// requestError is a decode failure with its protocol code. id is the
// request's id when it could be read, so even a bad request's answer echoes it.
type requestError struct {
	code    string
	message string
	id      json.RawMessage
}

func (e *requestError) Error() string { return e.code + ": " + e.message }

// DecodeRequest parses one client frame. Client requests are decoded with
// encoding/json rather than sonic: they are rare (rate limited to about a
// hundred a minute per connection) and its type errors name the offending
// field, which a terminal developer needs to see.
func DecodeRequest(b []byte) (*Request, error) {
	trimmed := bytes.TrimSpace(b)
	if !json.Valid(trimmed) {
		return nil, &requestError{code: protocol.CodeInvalidJSON, message: "request is not valid JSON"}
	}
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, &requestError{code: protocol.CodeInvalidMessage, message: "request must be a JSON object"}
	}
	var r Request
	if err := json.Unmarshal(trimmed, &r); err != nil {
		rerr := &requestError{code: protocol.CodeInvalidMessage, message: describeDecodeError(err)}
		rerr.id = peekID(trimmed)
		return nil, rerr
	}
	if len(r.ID) > 0 && !validID(r.ID) {
		r.ID = nil
		return nil, &requestError{code: protocol.CodeInvalidMessage, message: "id must be a string or a number"}
	}
	if r.Type == "" {
		return nil, &requestError{code: protocol.CodeInvalidMessage, message: "missing type", id: r.ID}
	}
	return &r, nil
}

func describeDecodeError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		want := te.Type.String()
		switch te.Type.Kind().String() {
		case "slice":
			want = "an array of strings"
		case "uint64", "ptr":
			want = "a non-negative integer"
		case "int":
			want = "an integer"
		}
		return fmt.Sprintf("%s must be %s, got %s", te.Field, want, te.Value)
	}
	return "malformed request: " + err.Error()
}

// peekID reads the id of a request that failed to decode as a whole.
func peekID(b []byte) json.RawMessage {
	var probe struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(b, &probe) == nil && validID(probe.ID) {
		return probe.ID
	}
	return nil
}

func validID(id json.RawMessage) bool {
	if len(id) == 0 {
		return false
	}
	switch id[0] {
	case '"':
		return true
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return true
	}
	return false
}

// authToken finds the token of an auth request in either seed shape.
func (r *Request) authToken() string {
	if r.Token != "" {
		return r.Token
	}
	if len(r.Data) > 0 && r.Data[0] == '{' {
		var d struct {
			Token string `json:"token"`
		}
		if json.Unmarshal(r.Data, &d) == nil {
			return d.Token
		}
	}
	return ""
}

// userID returns the request's user_id as a string, accepting numbers.
func (r *Request) userID() (string, bool) { return protocol.ParseUserID(r.UserID) }
