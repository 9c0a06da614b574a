package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Item is one message as a publisher sends it: an element of a publish API
// body, or a market message from a collector (channel and symbol then come
// from its NATS subject).
type Item struct {
	Channel    string          `json:"channel"`
	Type       string          `json:"type,omitempty"`
	UserID     json.RawMessage `json:"user_id,omitempty"` // a string or an integer
	StrategyID string          `json:"strategy_id,omitempty"`
	Symbol     string          `json:"symbol,omitempty"`
	Data       json.RawMessage `json:"data"`
	// IdempotencyKey makes a retried publish of a reliable message stored
	// once: a second publish with the same key to the same topic, while the
	// first is still in history, is answered with the first's position.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

// Publication is a validated item, ready to publish.
type Publication struct {
	Channel *Channel
	// ID is the topic's identity: a symbol, a user id, a strategy id, or
	// BroadcastID for a system notice to every user.
	ID string
	// Type is the pushed envelope type.
	Type string
	// Data is the message's data: a compact JSON object.
	Data []byte
	// Final marks a bar's closing message, which conflation never replaces.
	Final bool
	// IdempotencyKey, on reliable channels, stores a retried publish once.
	IdempotencyKey string
	// Time is the exchange time market data carries: a tick's or a book's
	// update_time, a bar's start_time; zero when it carries none.
	Time time.Time
	// Quote is a tick's values as the server reads them (validation fills
	// it; QuoteOf reads it from a tick built in process); of a book, only
	// its time flags (HasTime, TimeCorrected, Zoneless).
	Quote Quote
}

// Topic is the publication's topic key.
func (p *Publication) Topic() string { return TopicKey(p.Channel, p.ID) }

// Broadcast reports whether p is a system notice to every user.
func (p *Publication) Broadcast() bool { return p.ID == BroadcastID }

// Validate checks an item against the publish contract and builds its
// publication. maxData bounds the data object's size in bytes. The error
// says what is wrong in words a publisher can act on. Market data is
// checked by the zero Rules (a time without a zone is UTC); ValidateWith
// takes others.
func Validate(it *Item, maxData int) (*Publication, error) { return ValidateWith(it, maxData, nil) }

// ValidateWith is Validate with market data checked by r.
func ValidateWith(it *Item, maxData int, r *Rules) (*Publication, error) {
	p := new(Publication)
	if err := ValidateInto(p, it, maxData, r); err != nil {
		return nil, err
	}
	return p, nil
}

// ValidateInto is ValidateWith into a publication the caller provides (a
// batch's, reused): on every tick's path, one allocation fewer.
func ValidateInto(p *Publication, it *Item, maxData int, r *Rules) error {
	*p = Publication{}
	if it.Channel == "" {
		return errors.New("missing channel")
	}
	c, ok := Lookup(it.Channel)
	if !ok {
		return fmt.Errorf("unknown channel %q", it.Channel)
	}
	data := bytes.TrimSpace(it.Data)
	if len(data) == 0 || data[0] != '{' {
		return fmt.Errorf("channel %s: %w", it.Channel, invalid("json", "data must be a JSON object"))
	}
	if len(data) > maxData {
		return fmt.Errorf("channel %s: %w", it.Channel, invalid("too_large", "data is %d bytes; at most %d", len(data), maxData))
	}
	p.Channel, p.Type = c, c.Type
	if k := it.IdempotencyKey; k != "" {
		if !c.Reliable() {
			return fmt.Errorf("channel %s: idempotency_key applies to private channels and signals only", it.Channel)
		}
		if !ValidID(k) {
			return fmt.Errorf("invalid idempotency_key (1-%d bytes of printable UTF-8)", MaxIDBytes)
		}
		p.IdempotencyKey = k
	}
	if it.Type != "" {
		if c != Notifications {
			return fmt.Errorf("channel %s: type cannot be overridden (only notifications take a type)", it.Channel)
		}
		if !ValidSymbol(it.Type) || len(it.Type) > 64 {
			return fmt.Errorf("invalid type %q: want letters, digits, _ and -", it.Type)
		}
		if reservedType(it.Type) {
			return fmt.Errorf("channel %s: type %q is a protocol message type; a notification may not take it "+
				"(risk_alert and system_notice, or a name of your own such as margin_call)", it.Channel, it.Type)
		}
	}
	if c.Kind == KindMarket {
		// Market data is read and written again by its channel's shape
		// (market.go): every tick passes here, so without a generic pass.
		if !ValidSymbol(it.Symbol) {
			return fmt.Errorf("channel %s: missing or invalid symbol %q (want tokens of A-Z a-z 0-9 _ - joined by dots)", it.Channel, it.Symbol)
		}
		p.ID = it.Symbol
		if err := marketData(c, data, r, p); err != nil {
			return fmt.Errorf("channel %s %s: %w", it.Channel, it.Symbol, err)
		}
		return nil
	}
	var compact bytes.Buffer
	compact.Grow(len(data))
	if err := json.Compact(&compact, data); err != nil {
		return fmt.Errorf("channel %s: %w", it.Channel, invalid("json", "data is not valid JSON: %v", err))
	}
	p.Data = compact.Bytes()
	switch c.Kind {
	case KindSignals:
		if !ValidID(it.StrategyID) {
			return fmt.Errorf("channel %s: missing or invalid strategy_id", it.Channel)
		}
		p.ID = it.StrategyID
		return nil
	}
	uid, ok := ParseUserID(it.UserID)
	if !ok || uid != "" && !ValidID(uid) {
		return fmt.Errorf("channel %s: user_id must be a string or an integer id (1-%d bytes of printable UTF-8)", it.Channel, MaxIDBytes)
	}
	if uid == "" {
		if c != Notifications {
			return fmt.Errorf("channel %s: missing user_id", it.Channel)
		}
		p.ID, p.Type = BroadcastID, TypeSystemNotice
	} else {
		p.ID = uid
	}
	if it.Type != "" {
		p.Type = it.Type
	}
	return nil
}

// ParseUserID reads a user_id given as a JSON string or integer ("" when
// absent or null); ok is false for any other JSON.
func ParseUserID(raw json.RawMessage) (id string, ok bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", true
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		if _, err := strconv.ParseInt(string(n), 10, 64); err == nil {
			return string(n), true
		}
	}
	return "", false
}

// ErrRejected marks a valid publication that a limit refused (a full symbol
// catalogue, say); the error's text names the limit.
var ErrRejected = errors.New("rejected")

// reservedType reports whether t names a protocol message type (case
// folded: clients are not consistent about case).
func reservedType(t string) bool {
	for _, r := range MessageTypes {
		if strings.EqualFold(t, r) {
			return true
		}
	}
	return false
}
