package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/engine/auth"
)

// maxPublishBody bounds one publish request.
const maxPublishBody = 4 << 20

// PublishItem is one message of POST /api/v1/publish.
type PublishItem struct {
	Channel    string          `json:"channel"`
	Type       string          `json:"type,omitempty"`
	UserID     json.RawMessage `json:"user_id,omitempty"`
	StrategyID string          `json:"strategy_id,omitempty"`
	Symbol     string          `json:"symbol,omitempty"`
	Data       json.RawMessage `json:"data"`
}

// PublishResult says where one message landed. A broadcast notice names
// how many user topics received it instead of one sequence.
type PublishResult struct {
	Topic      string `json:"topic"`
	Sequence   uint64 `json:"sequence,omitempty"`
	Recipients *int   `json:"recipients,omitempty"`
}

type apiError struct {
	Error errorData `json:"error"`
}

func (s *Server) apiFail(w http.ResponseWriter, status int, code, msg string) {
	s.countError(code)
	writeJSON(w, status, apiError{Error: errorData{Code: code, Message: msg}})
}

// pubPlan is a validated publish: the messages, and for a broadcast the
// marker that expands it to every user's notifications topic.
type pubPlan struct {
	msg       engine.Message
	broadcast bool
	symbol    string // market data: added to the universe
}

func (s *Server) servePublish(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		s.apiFail(w, http.StatusServiceUnavailable, "DRAINING", "server is shutting down")
		return
	}
	ident, err := s.verifier.Verify(bearerToken(r))
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="marketcast"`)
		msg := "a bearer token with permission publish is required"
		if !errors.Is(err, auth.ErrMissing) {
			msg = "invalid token: " + err.Error()
		}
		s.apiFail(w, http.StatusUnauthorized, CodeNotAuthenticated, msg)
		return
	}
	if !ident.Has(auth.PermPublish) {
		s.apiFail(w, http.StatusForbidden, CodeForbidden, "token lacks permission publish")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPublishBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			s.apiFail(w, http.StatusRequestEntityTooLarge, CodeInvalidMessage, fmt.Sprintf("body larger than %d bytes", maxPublishBody))
		} else {
			s.apiFail(w, http.StatusBadRequest, CodeInvalidMessage, "cannot read body: "+err.Error())
		}
		return
	}
	items, err := decodePublishBody(body)
	if err != nil {
		s.apiFail(w, http.StatusBadRequest, CodeInvalidMessage, err.Error())
		return
	}
	plans := make([]pubPlan, len(items))
	for i := range items {
		p, err := planPublish(&items[i])
		if err != nil {
			prefix := ""
			if len(items) > 1 {
				prefix = fmt.Sprintf("message %d: ", i)
			}
			s.apiFail(w, http.StatusBadRequest, CodeInvalidMessage, prefix+err.Error())
			return
		}
		plans[i] = p
	}
	// Everything is valid: publish it all.
	results := make([]PublishResult, 0, len(plans))
	for _, p := range plans {
		res, err := s.publishPlan(p)
		if err != nil {
			s.log.Error("publish failed after validation", "topic", p.msg.Topic, "err", err)
			s.apiFail(w, http.StatusInternalServerError, "INTERNAL", err.Error())
			return
		}
		results = append(results, res)
	}
	s.published.Add(len(plans))
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "results": results})
}

func (s *Server) publishPlan(p pubPlan) (PublishResult, error) {
	if p.symbol != "" {
		s.hub.AddSymbol(p.symbol)
	}
	if !p.broadcast {
		pub, err := s.hub.Publish(p.msg)
		return PublishResult{Topic: pub.Topic, Sequence: pub.Sequence}, err
	}
	// A system notice goes into every user's notifications topic, each with
	// its own sequence, so per-user resume covers broadcasts too.
	n := 0
	for _, key := range s.hub.TopicKeys(chNotifications.name + ":") {
		m := p.msg
		m.Topic = key
		if _, err := s.hub.Publish(m); err != nil {
			return PublishResult{}, err
		}
		n++
	}
	return PublishResult{Topic: engine.TopicKey(chNotifications.name, "*"), Recipients: &n}, nil
}

// decodePublishBody accepts one message object or an array of them.
func decodePublishBody(body []byte) ([]PublishItem, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, errors.New("empty body: send a message object or an array of them")
	}
	if !json.Valid(body) {
		return nil, errors.New("body is not valid JSON")
	}
	dec := func(b []byte, v any) error {
		d := json.NewDecoder(bytes.NewReader(b))
		if err := d.Decode(v); err != nil {
			return errors.New(describeDecodeError(err))
		}
		return nil
	}
	switch body[0] {
	case '{':
		var it PublishItem
		if err := dec(body, &it); err != nil {
			return nil, err
		}
		return []PublishItem{it}, nil
	case '[':
		var items []PublishItem
		if err := dec(body, &items); err != nil {
			return nil, err
		}
		if len(items) == 0 {
			return nil, errors.New("empty array: nothing to publish")
		}
		return items, nil
	}
	return nil, errors.New("body must be a message object or an array of them")
}

// planPublish validates one item and builds its engine message.
func planPublish(it *PublishItem) (pubPlan, error) {
	if it.Channel == "" {
		return pubPlan{}, errors.New("missing channel")
	}
	data := bytes.TrimSpace(it.Data)
	if len(data) == 0 || data[0] != '{' {
		return pubPlan{}, fmt.Errorf("channel %s: data must be a JSON object", it.Channel)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, data); err != nil {
		return pubPlan{}, fmt.Errorf("channel %s: data: %v", it.Channel, err)
	}
	m := engine.Message{Data: compact.Bytes()}

	spec := channels[it.Channel]
	if it.Channel == "signals" {
		spec = chSignals
	}
	if spec == nil {
		return pubPlan{}, fmt.Errorf("unknown channel %q", it.Channel)
	}
	m.Mode, m.Channel, m.Type = spec.mode(), spec.name, spec.pushType
	if it.Type != "" {
		if spec != chNotifications {
			return pubPlan{}, fmt.Errorf("channel %s: type cannot be overridden", it.Channel)
		}
		if !validIdent(it.Type) {
			return pubPlan{}, fmt.Errorf("invalid type %q", it.Type)
		}
	}
	switch spec.kind {
	case kindMarket:
		if !validIdent(it.Symbol) {
			return pubPlan{}, fmt.Errorf("channel %s: missing or invalid symbol", it.Channel)
		}
		m.Topic, m.Symbol = engine.TopicKey(spec.name, it.Symbol), it.Symbol
		if strings.HasPrefix(spec.name, "kline_") {
			var closed struct {
				Closed bool `json:"closed"`
			}
			_ = json.Unmarshal(m.Data, &closed)
			m.Final = closed.Closed
		}
		return pubPlan{msg: m, symbol: it.Symbol}, nil
	case kindSignals:
		if !validIdent(it.StrategyID) {
			return pubPlan{}, fmt.Errorf("channel %s: missing or invalid strategy_id", it.Channel)
		}
		m.Topic, m.StrategyID = engine.TopicKey(spec.name, it.StrategyID), it.StrategyID
		return pubPlan{msg: m}, nil
	}
	uid, ok := parseUserID(it.UserID)
	if !ok || uid != "" && !validIdent(uid) {
		return pubPlan{}, fmt.Errorf("channel %s: user_id must be a string or an integer id", it.Channel)
	}
	if uid == "" {
		if spec != chNotifications {
			return pubPlan{}, fmt.Errorf("channel %s: missing user_id", it.Channel)
		}
		m.Type = "system_notice"
		if it.Type != "" {
			m.Type = it.Type
		}
		return pubPlan{msg: m, broadcast: true}, nil
	}
	if it.Type != "" {
		m.Type = it.Type
	}
	m.Topic = engine.TopicKey(spec.name, uid)
	return pubPlan{msg: m}, nil
}

// serveDevToken signs a token for whoever asks. It exists only when the
// configuration enables development tokens.
func (s *Server) serveDevToken(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("user")
	if user == "" {
		user = "demo"
	}
	if !validIdent(user) {
		s.apiFail(w, http.StatusBadRequest, CodeInvalidMessage, "invalid user")
		return
	}
	perms := []string{auth.PermReadMarketData, auth.PermReadSignals}
	if p := r.URL.Query().Get("permissions"); p != "" {
		perms = strings.Split(p, ",")
	}
	tok, err := auth.Issue(s.cfg.DevSecret, user, perms, s.cfg.DevTokenTTL)
	if err != nil {
		s.apiFail(w, http.StatusInternalServerError, "INTERNAL", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"token": tok, "user_id": user, "permissions": perms,
		"expires_at": wireTime(time.Now().Add(s.cfg.DevTokenTTL)),
	})
}
