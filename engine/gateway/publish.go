package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/engine/auth"
	"github.com/marketcast/marketcast/protocol"
)

// PublishResult says where one message landed: its topic, its sequence and,
// for a reliable topic, the epoch that sequence belongs to.
type PublishResult struct {
	Topic    string `json:"topic"`
	Sequence uint64 `json:"sequence,omitempty"`
	Epoch    string `json:"epoch,omitempty"`
}

// publishAnswer is the body of a successful publish. A struct, so the keys
// come in one order every time.
type publishAnswer struct {
	Status  string          `json:"status"`
	Results []PublishResult `json:"results"`
}

type apiError struct {
	Error errorData `json:"error"`
}

func (s *Server) apiFail(w http.ResponseWriter, status int, code, msg string) {
	s.countError(code)
	writeJSON(w, status, apiError{Error: errorData{Code: code, Message: msg}})
}

func (s *Server) servePublish(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		s.apiFail(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "server is shutting down")
		return
	}
	ident, err := s.verifier.Verify(bearerToken(r))
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="marketcast"`)
		msg := "a bearer token with permission publish is required"
		if !errors.Is(err, auth.ErrMissing) {
			msg = "invalid token: " + err.Error()
		}
		s.apiFail(w, http.StatusUnauthorized, protocol.CodeNotAuthenticated, msg)
		return
	}
	if !ident.Has(protocol.PermPublish) {
		s.apiFail(w, http.StatusForbidden, protocol.CodeForbidden, "token lacks permission publish")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(s.cfg.MaxPublishBody)))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			s.apiFail(w, http.StatusRequestEntityTooLarge, protocol.CodeInvalidMessage, fmt.Sprintf("body larger than %d bytes", s.cfg.MaxPublishBody))
		} else {
			s.apiFail(w, http.StatusBadRequest, protocol.CodeInvalidMessage, "cannot read body: "+err.Error())
		}
		return
	}
	items, err := decodePublishBody(body)
	if err != nil {
		s.apiFail(w, http.StatusBadRequest, protocol.CodeInvalidMessage, err.Error())
		return
	}
	// One Idempotency-Key for the request: message i of a batch gets key/i.
	// It applies to the reliable messages only (market data is state, and
	// a repeated tick is simply the latest again), so a batch may mix both.
	headerKey := r.Header.Get("Idempotency-Key")
	keyOf := func(i int) string {
		if len(items) > 1 {
			return fmt.Sprintf("%s/%d", headerKey, i)
		}
		return headerKey
	}
	if headerKey != "" && !protocol.ValidID(keyOf(len(items)-1)) {
		s.apiFail(w, http.StatusBadRequest, protocol.CodeInvalidMessage,
			fmt.Sprintf("invalid Idempotency-Key header (1-%d bytes of printable UTF-8, with /<index> appended in a batch)", protocol.MaxIDBytes))
		return
	}
	// Everything is validated before anything is published.
	pubs := make([]*protocol.Publication, len(items))
	for i := range items {
		p, err := protocol.ValidateWith(&items[i], s.cfg.MaxMessageBytes, s.cfg.MarketRules)
		if err != nil {
			prefix := ""
			if len(items) > 1 {
				prefix = fmt.Sprintf("message %d: ", i)
			}
			s.apiFail(w, http.StatusBadRequest, protocol.CodeInvalidMessage, prefix+err.Error())
			return
		}
		if headerKey != "" && p.IdempotencyKey == "" && p.Channel.Reliable() {
			p.IdempotencyKey = keyOf(i)
		}
		pubs[i] = p
	}
	results := make([]PublishResult, 0, len(pubs))
	for i, p := range pubs {
		res, err := s.publish(r.Context(), p)
		if err != nil {
			// The messages before i were published; say so, so a retry can
			// resend only the rest.
			msg := fmt.Sprintf("message %d not published (%d before it were): %v", i, i, err)
			switch {
			case errors.Is(err, engine.ErrOutcomeUnknown):
				msg = fmt.Sprintf("message %d may or may not have been published (%d before it were): %v", i, i, err)
				s.apiFail(w, http.StatusGatewayTimeout, protocol.CodeOutcomeUnknown, msg)
			case errors.Is(err, engine.ErrUnavailable):
				s.apiFail(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, msg)
			case errors.Is(err, protocol.ErrRejected):
				s.apiFail(w, http.StatusBadRequest, protocol.CodeInvalidMessage, msg)
			default:
				s.log.Error("publish failed after validation", "topic", p.Topic(), "err", err)
				s.apiFail(w, http.StatusInternalServerError, protocol.CodeInternal, msg)
			}
			return
		}
		results = append(results, res)
	}
	s.published.Add(len(pubs))
	writeJSON(w, http.StatusOK, publishAnswer{Status: "ok", Results: results})
}

// publish sends one validated publication where it belongs: market data to
// the market (catalogue, bars, the cluster bus), reliable messages to the
// hub and its broker.
func (s *Server) publish(ctx context.Context, p *protocol.Publication) (PublishResult, error) {
	if p.Channel.Kind == protocol.KindMarket {
		seq, err := s.market.Publish(ctx, p)
		return PublishResult{Topic: p.Topic(), Sequence: seq}, err
	}
	ev, err := s.hub.Publish(ctx, engine.FromPublication(p))
	if err != nil {
		return PublishResult{}, err
	}
	return PublishResult{Topic: p.Topic(), Sequence: ev.Sequence(), Epoch: ev.Epoch()}, nil
}

// decodePublishBody accepts one message object or an array of them.
func decodePublishBody(body []byte) ([]protocol.Item, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, errors.New("empty body: send a message object or an array of them")
	}
	if !json.Valid(body) {
		return nil, errors.New("body is not valid JSON")
	}
	dec := func(b []byte, v any) error {
		if err := json.NewDecoder(bytes.NewReader(b)).Decode(v); err != nil {
			return errors.New(describeDecodeError(err))
		}
		return nil
	}
	switch body[0] {
	case '{':
		var it protocol.Item
		if err := dec(body, &it); err != nil {
			return nil, err
		}
		return []protocol.Item{it}, nil
	case '[':
		var items []protocol.Item
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
