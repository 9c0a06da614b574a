package gateway

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/engine/frame"
	"github.com/marketcast/marketcast/protocol"
)

func (ss *session) subscribe(req *Request) {
	ch, ok := protocol.Lookup(req.Channel)
	if !ok {
		ss.sendError(req.ID, protocol.CodeUnknownChannel, unknownChannelMessage(req.Channel))
		return
	}
	if p := ch.Permission; p != "" && !ss.identity().Has(p) {
		ss.sendError(req.ID, protocol.CodeForbidden, fmt.Sprintf("channel %s needs permission %s", req.Channel, p))
		return
	}
	if ch.Kind == protocol.KindMarket {
		ss.subscribeMarket(req, ch)
	} else {
		ss.subscribeStream(req, ch)
	}
}

func unknownChannelMessage(ch string) string {
	if ch == "" {
		return "missing channel"
	}
	return fmt.Sprintf("unknown channel %q; channels: %s", ch, strings.Join(protocol.ChannelNames(), ", "))
}

// marketSymbols validates a market request's symbols: present, known, and
// de-duplicated in request order.
func (ss *session) marketSymbols(req *Request) ([]string, bool) {
	if len(req.Symbols) == 0 {
		ss.sendError(req.ID, protocol.CodeInvalidMessage, fmt.Sprintf("channel %s needs a non-empty symbols array", req.Channel))
		return nil, false
	}
	var unknown []string
	symbols := make([]string, 0, len(req.Symbols))
	for _, sym := range req.Symbols {
		switch {
		case !ss.srv.market.HasSymbol(sym):
			unknown = append(unknown, sym)
		case !slices.Contains(symbols, sym):
			symbols = append(symbols, sym)
		}
	}
	if len(unknown) > 0 {
		ss.sendError(req.ID, protocol.CodeUnknownSymbol, "unknown symbol: "+strings.Join(unknown, ", "))
		return nil, false
	}
	return symbols, true
}

// projection validates a tick subscription's fields.
func (ss *session) projection(req *Request, ch *protocol.Channel) (*frame.Projection, []string, bool) {
	if len(req.Fields) == 0 {
		return nil, nil, true
	}
	if ch != protocol.Tick {
		ss.sendError(req.ID, protocol.CodeInvalidMessage, "fields applies to channel market_data only")
		return nil, nil, false
	}
	keys := make([]string, 0, len(req.Fields))
	var unknown []string
	for _, f := range req.Fields {
		if a, ok := protocol.FieldAliases[f]; ok {
			f = a
		}
		if !slices.Contains(protocol.TickFields, f) {
			unknown = append(unknown, f)
			continue
		}
		keys = append(keys, f)
	}
	if len(unknown) > 0 {
		ss.sendError(req.ID, protocol.CodeUnknownField, fmt.Sprintf("unknown field: %s; fields: %s",
			strings.Join(unknown, ", "), strings.Join(protocol.TickFields, ", ")))
		return nil, nil, false
	}
	// Intern's table stays bounded because only TickFields get here.
	p := frame.Intern(keys)
	return p, p.Keys, true
}

// warmBarsTimeout bounds loading a kline topic's history from the
// cluster's store during a subscribe.
const warmBarsTimeout = 3 * time.Second

func (ss *session) subscribeMarket(req *Request, ch *protocol.Channel) {
	symbols, ok := ss.marketSymbols(req)
	if !ok {
		return
	}
	proj, fields, ok := ss.projection(req, ch)
	if !ok {
		return
	}
	interval, lossless, ok := ss.delivery(req, ch)
	if !ok {
		return
	}
	if req.History != 0 {
		if !ch.Kline() || req.History < 0 || req.History > ss.srv.cfg.MaxBarHistory {
			ss.sendError(req.ID, protocol.CodeInvalidMessage, fmt.Sprintf(
				"history applies to kline channels: 1 to %d closed bars", ss.srv.cfg.MaxBarHistory))
			return
		}
	}
	keys := make([]string, len(symbols))
	for i, sym := range symbols {
		keys[i] = protocol.TopicKey(ch, sym)
	}
	if !ss.roomFor(req, keys) {
		return
	}
	if req.History > 0 {
		// A history the store cannot give soon is served from what this node
		// has; the answer does not wait longer, however many symbols.
		ctx, cancel := context.WithTimeout(context.Background(), min(ss.srv.cfg.SubscribeTimeout, warmBarsTimeout))
		for _, sym := range symbols {
			if err := ss.srv.market.WarmBars(ctx, ch, sym); err != nil { // serve what this node has; say why it may be short
				ss.srv.storeLog.Warn("bar history not loaded", "symbol", sym, "channel", ch.Push, "err", err)
			}
		}
		cancel()
	}
	started := make([]*engine.Subscription, 0, len(keys))
	for _, key := range keys {
		// A repeated subscribe replaces the projection and sends a fresh
		// snapshot.
		ss.drop(key)
		sub, _, err := ss.srv.hub.Subscribe(context.Background(), ss.out, key, engine.Conflated,
			engine.SubscribeOptions{Projection: proj, Snapshot: true, History: req.History, Interval: interval, Lossless: lossless})
		if err != nil {
			ss.srv.storeLog.Error("subscribe failed", "topic", key, "err", err)
			continue
		}
		ss.subs.put(sub)
		started = append(started, sub)
	}
	data := subscribeData{Status: "success", Channel: req.Channel, Symbols: symbols, Fields: fields,
		IntervalMS: int(interval / time.Millisecond)}
	if lossless {
		data.Conflate = &conflateOff
	}
	ss.send(encodeAnswer(&answer{Type: protocol.AnswerSubscribe, ID: req.ID, Channel: req.Channel, Data: data}))
	for _, sub := range started {
		ss.srv.hub.Start(sub)
	}
}

var conflateOff = false

// delivery reads how a subscribe wants its messages delivered: interval_ms
// (market channels: at most one update per interval per topic) and conflate
// (false on market_data: every tick, in order). Reliable channels take
// neither: their messages are never skipped nor conflated. A request that
// asks for what does not apply is refused with INVALID_REQUEST.
func (ss *session) delivery(req *Request, ch *protocol.Channel) (interval time.Duration, lossless, ok bool) {
	fail := func(format string, args ...any) (time.Duration, bool, bool) {
		ss.sendError(req.ID, protocol.CodeInvalidRequest, fmt.Sprintf(format, args...))
		return 0, false, false
	}
	if req.IntervalMS != nil && *req.IntervalMS != 0 {
		ms := *req.IntervalMS
		switch {
		case ch.Reliable():
			return fail("interval_ms applies to market channels (ticks, books, klines); %s messages are never skipped", req.Channel)
		case ms < protocol.FlowMinIntervalMillis || ms > protocol.FlowMaxIntervalMillis:
			return fail("interval_ms must be 0 (every update) or from %d to %d", protocol.FlowMinIntervalMillis, protocol.FlowMaxIntervalMillis)
		}
		interval = time.Duration(ms) * time.Millisecond
	}
	if req.Conflate != nil {
		switch {
		case ch.Reliable():
			return fail("conflate applies to market channels; %s messages are never conflated", req.Channel)
		case *req.Conflate:
		case ch != protocol.Tick:
			return fail("conflate: false applies to market_data only")
		case interval > 0:
			return fail("conflate: false (every tick) and interval_ms (at most one tick per interval) exclude each other")
		default:
			lossless = true
		}
	}
	return interval, lossless, true
}

// drop ends the connection's subscription to key, if it has one.
func (ss *session) drop(key string) {
	if old := ss.subs.remove(key); old != nil {
		ss.srv.hub.Unsubscribe(old)
	}
}

// roomFor checks the per-connection topic limit for the topics a request
// would add.
func (ss *session) roomFor(req *Request, keys []string) bool {
	added := 0
	for _, key := range keys {
		if ss.subs.get(key) == nil {
			added++
		}
	}
	if limit := ss.srv.cfg.MaxSubscriptions; ss.subs.len()+added > limit {
		ss.sendError(req.ID, protocol.CodeTooManySubscriptions,
			fmt.Sprintf("at most %d topics per connection; this request would make %d", limit, ss.subs.len()+added))
		return false
	}
	// The request's first unit was charged when it arrived; each further
	// topic it adds costs one more, so fourteen one-symbol subscribes and
	// one fourteen-symbol subscribe cost the same.
	return ss.chargeWork(req.ID, added-1)
}

// streamID finds the topic identity of a private or signal subscription:
// the user's own id, or the strategy id.
func (ss *session) streamID(req *Request, ch *protocol.Channel) (string, bool) {
	if ch.Kind == protocol.KindSignals {
		if !protocol.ValidID(req.StrategyID) {
			ss.sendError(req.ID, protocol.CodeInvalidMessage, fmt.Sprintf(
				"channel %s needs strategy_id (1-%d bytes of printable UTF-8, no * or >)", req.Channel, protocol.MaxIDBytes))
			return "", false
		}
		return req.StrategyID, true
	}
	own := ss.identity().UserID
	uid, ok := req.userID()
	if !ok {
		ss.sendError(req.ID, protocol.CodeInvalidMessage, "user_id must be a string or an integer")
		return "", false
	}
	if uid != "" && uid != own {
		ss.sendError(req.ID, protocol.CodeForbidden, fmt.Sprintf("channel %s: user_id %s is not yours", req.Channel, uid))
		return "", false
	}
	return own, true
}

// subscribeStream subscribes a reliable channel: the user's own topic (or
// the strategy's), and for notifications also the broadcast stream every
// user shares. The answer says where each stream stands (epoch, last
// sequence) and, for a resume, whether it is complete; the snapshot or the
// replay follows it, then live events.
func (ss *session) subscribeStream(req *Request, ch *protocol.Channel) {
	id, ok := ss.streamID(req, ch)
	if !ok {
		return
	}
	if _, _, ok := ss.delivery(req, ch); !ok {
		return
	}
	key := protocol.TopicKey(ch, id)
	keys := []string{key}
	if ch == protocol.Notifications {
		keys = append(keys, protocol.BroadcastTopic)
	}
	if !ss.roomFor(req, keys) {
		return
	}
	for _, k := range keys {
		ss.drop(k)
	}
	data := subscribeData{Status: "success", Channel: req.Channel}
	if ch.Kind == protocol.KindSignals {
		data.StrategyID = id
	} else {
		data.UserID = id
	}
	ctx, cancel := context.WithTimeout(context.Background(), ss.srv.cfg.SubscribeTimeout)
	defer cancel()
	sub, r, err := ss.srv.hub.Subscribe(ctx, ss.out, key, engine.Reliable,
		engine.SubscribeOptions{Snapshot: ch.Snapshot, Since: req.Since, Epoch: req.Epoch})
	if err != nil {
		ss.streamUnavailable(req, key, err)
		return
	}
	data.Epoch, data.Sequence = r.Position.Epoch, &r.Position.Seq
	if req.Since != nil {
		data.Recovered = &r.Recovered
	}
	var bsub *engine.Subscription
	if ch == protocol.Notifications {
		var br engine.Resume
		bsub, br, err = ss.srv.hub.Subscribe(ctx, ss.out, protocol.BroadcastTopic, engine.Reliable,
			engine.SubscribeOptions{Since: req.BroadcastSince, Epoch: req.BroadcastEpoch})
		if err != nil {
			ss.srv.hub.Unsubscribe(sub)
			ss.streamUnavailable(req, protocol.BroadcastTopic, err)
			return
		}
		data.Broadcast = &streamData{Epoch: br.Position.Epoch, Sequence: br.Position.Seq}
		if req.BroadcastSince != nil {
			data.Broadcast.Recovered = &br.Recovered
		}
		ss.subs.put(bsub)
	}
	ss.subs.put(sub)
	ss.send(encodeAnswer(&answer{Type: protocol.AnswerSubscribe, ID: req.ID, Channel: req.Channel, Data: data}))
	ss.srv.hub.Start(sub)
	if bsub != nil {
		ss.srv.hub.Start(bsub)
	}
}

func (ss *session) streamUnavailable(req *Request, key string, err error) {
	ss.srv.storeLog.Warn("subscribe failed", "topic", key, "err", err)
	ss.sendError(req.ID, protocol.CodeUnavailable, "cannot subscribe to "+key+" right now; retry shortly")
}

func (ss *session) unsubscribe(req *Request) {
	ch, ok := protocol.Lookup(req.Channel)
	if !ok {
		ss.sendError(req.ID, protocol.CodeUnknownChannel, unknownChannelMessage(req.Channel))
		return
	}
	prefix := ch.Push + ":"
	var removed []string
	for _, key := range ss.subs.keys() {
		id, ok := strings.CutPrefix(key, prefix)
		if !ok {
			continue
		}
		if ch.Kind == protocol.KindMarket && len(req.Symbols) > 0 && !slices.Contains(req.Symbols, id) {
			continue
		}
		if ch.Kind == protocol.KindSignals && req.StrategyID != "" && req.StrategyID != id {
			continue
		}
		ss.drop(key)
		removed = append(removed, id)
	}
	slices.Sort(removed)
	data := subscribeData{Status: "success", Channel: req.Channel}
	switch ch.Kind {
	case protocol.KindMarket:
		data.Symbols = removed
		if data.Symbols == nil {
			data.Symbols = []string{}
		}
	case protocol.KindSignals:
		data.StrategyID = req.StrategyID
	}
	ss.send(encodeAnswer(&answer{Type: protocol.AnswerUnsubscribe, ID: req.ID, Channel: req.Channel, Data: data}))
}
