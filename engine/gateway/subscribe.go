package gateway

import (
	"fmt"
	"slices"
	"strings"

	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/engine/frame"
)

// fieldAliases are the seed's short names for tick keys.
var fieldAliases = map[string]string{"bid": "bid_price", "ask": "ask_price"}

func (ss *session) subscribe(req *Request) {
	spec := channels[req.Channel]
	if spec == nil {
		ss.sendError(req.ID, CodeUnknownChannel, unknownChannelMessage(req.Channel))
		return
	}
	ident := ss.identity()
	if p := spec.permission(); p != "" && !ident.Has(p) {
		ss.sendError(req.ID, CodeForbidden, fmt.Sprintf("channel %s needs permission %s", req.Channel, p))
		return
	}
	switch spec.kind {
	case kindMarket:
		ss.subscribeMarket(req, spec)
	default:
		ss.subscribeStream(req, spec)
	}
}

func unknownChannelMessage(ch string) string {
	if ch == "" {
		return "missing channel"
	}
	names := make([]string, 0, len(channels))
	for k := range channels {
		names = append(names, k)
	}
	slices.Sort(names)
	return fmt.Sprintf("unknown channel %q; channels: %s", ch, strings.Join(names, ", "))
}

// marketSymbols validates a market request's symbols: present, known, and
// de-duplicated in request order.
func (ss *session) marketSymbols(req *Request) ([]string, bool) {
	if len(req.Symbols) == 0 {
		ss.sendError(req.ID, CodeInvalidMessage, fmt.Sprintf("channel %s needs a non-empty symbols array", req.Channel))
		return nil, false
	}
	var unknown []string
	symbols := make([]string, 0, len(req.Symbols))
	for _, sym := range req.Symbols {
		switch {
		case !ss.srv.hub.HasSymbol(sym):
			unknown = append(unknown, sym)
		case !slices.Contains(symbols, sym):
			symbols = append(symbols, sym)
		}
	}
	if len(unknown) > 0 {
		ss.sendError(req.ID, CodeUnknownSymbol, "unknown symbol: "+strings.Join(unknown, ", "))
		return nil, false
	}
	return symbols, true
}

// projection validates a tick subscription's fields.
func (ss *session) projection(req *Request, spec *channelSpec) (*frame.Projection, []string, bool) {
	if len(req.Fields) == 0 {
		return nil, nil, true
	}
	if spec != chTick {
		ss.sendError(req.ID, CodeInvalidMessage, "fields applies to channel market_data only")
		return nil, nil, false
	}
	keys := make([]string, 0, len(req.Fields))
	var unknown []string
	for _, f := range req.Fields {
		if a, ok := fieldAliases[f]; ok {
			f = a
		}
		if !slices.Contains(ss.srv.cfg.TickFields, f) {
			unknown = append(unknown, f)
			continue
		}
		keys = append(keys, f)
	}
	if len(unknown) > 0 {
		ss.sendError(req.ID, CodeUnknownField, fmt.Sprintf("unknown field: %s; fields: %s",
			strings.Join(unknown, ", "), strings.Join(ss.srv.cfg.TickFields, ", ")))
		return nil, nil, false
	}
	p := frame.Intern(keys)
	return p, p.Keys, true
}

func (ss *session) subscribeMarket(req *Request, spec *channelSpec) {
	symbols, ok := ss.marketSymbols(req)
	if !ok {
		return
	}
	proj, fields, ok := ss.projection(req, spec)
	if !ok {
		return
	}
	if !ss.roomFor(req, spec, symbols) {
		return
	}
	ss.send(encodeAnswer(&answer{Type: "subscribe_response", ID: req.ID, Channel: req.Channel, Data: subscribeData{
		Status: "success", Channel: req.Channel, Symbols: symbols, Fields: fields,
	}}))
	for _, sym := range symbols {
		key := engine.TopicKey(spec.name, sym)
		if old := ss.subs[key]; old != nil {
			// A repeated subscribe replaces the projection and sends a
			// fresh snapshot.
			ss.srv.hub.Unsubscribe(old)
		}
		sub, err := ss.srv.hub.Subscribe(ss.out, key, spec.mode(), proj, engine.SubscribeOptions{Snapshot: true})
		if err != nil {
			ss.srv.log.Error("subscribe failed", "topic", key, "err", err)
			delete(ss.subs, key)
			continue
		}
		ss.subs[key] = sub
	}
}

// roomFor checks the per-connection topic limit for the topics a request
// would add.
func (ss *session) roomFor(req *Request, spec *channelSpec, ids []string) bool {
	added := 0
	for _, id := range ids {
		if ss.subs[engine.TopicKey(spec.name, id)] == nil {
			added++
		}
	}
	if max := ss.srv.cfg.MaxSubscriptions; len(ss.subs)+added > max {
		ss.sendError(req.ID, CodeTooManySubscriptions,
			fmt.Sprintf("at most %d topics per connection; this request would make %d", max, len(ss.subs)+added))
		return false
	}
	return true
}

// streamID finds the topic identity of a private or signal subscription:
// the user's own id, or the strategy id.
func (ss *session) streamID(req *Request, spec *channelSpec) (string, bool) {
	if spec.kind == kindSignals {
		if !validIdent(req.StrategyID) {
			ss.sendError(req.ID, CodeInvalidMessage, "channel strategy_signals needs strategy_id (1-128 characters of A-Z a-z 0-9 _ - . :)")
			return "", false
		}
		return req.StrategyID, true
	}
	own := ss.identity().UserID
	uid, ok := req.userID()
	if !ok {
		ss.sendError(req.ID, CodeInvalidMessage, "user_id must be a string or an integer")
		return "", false
	}
	if uid != "" && uid != own {
		ss.sendError(req.ID, CodeForbidden, fmt.Sprintf("channel %s: user_id %s is not yours", req.Channel, uid))
		return "", false
	}
	return own, true
}

func (ss *session) subscribeStream(req *Request, spec *channelSpec) {
	id, ok := ss.streamID(req, spec)
	if !ok {
		return
	}
	if !ss.roomFor(req, spec, []string{id}) {
		return
	}
	key := engine.TopicKey(spec.name, id)
	if old := ss.subs[key]; old != nil {
		ss.srv.hub.Unsubscribe(old)
		delete(ss.subs, key)
	}
	data := subscribeData{Status: "success", Channel: req.Channel}
	if spec.kind == kindSignals {
		data.StrategyID = id
	} else {
		data.UserID = id
	}
	opts := engine.SubscribeOptions{Snapshot: spec.snapshot, Since: req.Since}
	opts.Ready = func(recovered bool) {
		if req.Since != nil {
			data.Recovered = &recovered
		}
		ss.send(encodeAnswer(&answer{Type: "subscribe_response", ID: req.ID, Channel: req.Channel, Data: data}))
	}
	sub, err := ss.srv.hub.Subscribe(ss.out, key, spec.mode(), nil, opts)
	if err != nil {
		ss.srv.log.Error("subscribe failed", "topic", key, "err", err)
		ss.sendError(req.ID, CodeInvalidMessage, "cannot subscribe to "+key)
		return
	}
	ss.subs[key] = sub
}

func (ss *session) unsubscribe(req *Request) {
	spec := channels[req.Channel]
	if spec == nil {
		ss.sendError(req.ID, CodeUnknownChannel, unknownChannelMessage(req.Channel))
		return
	}
	prefix := spec.name + ":"
	var removed []string
	for key, sub := range ss.subs {
		id, ok := strings.CutPrefix(key, prefix)
		if !ok {
			continue
		}
		if spec.kind == kindMarket && len(req.Symbols) > 0 && !slices.Contains(req.Symbols, id) {
			continue
		}
		if spec.kind == kindSignals && req.StrategyID != "" && req.StrategyID != id {
			continue
		}
		ss.srv.hub.Unsubscribe(sub)
		delete(ss.subs, key)
		removed = append(removed, id)
	}
	slices.Sort(removed)
	data := subscribeData{Status: "success", Channel: req.Channel}
	switch spec.kind {
	case kindMarket:
		data.Symbols = removed
		if data.Symbols == nil {
			data.Symbols = []string{}
		}
	case kindSignals:
		data.StrategyID = req.StrategyID
	}
	ss.send(encodeAnswer(&answer{Type: "unsubscribe_response", ID: req.ID, Channel: req.Channel, Data: data}))
}

// validIdent accepts the user, strategy and symbol ids that may appear in
// topic keys and envelopes.
func validIdent(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}
