package gateway

import (
	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/engine/auth"
)

type channelKind uint8

const (
	kindMarket channelKind = iota
	kindPrivate
	kindSignals
)

// channelSpec describes a subscribable channel of PROTOCOL.md.
type channelSpec struct {
	name     string // channel of pushed messages and topic key prefix
	kind     channelKind
	pushType string // default envelope type of pushed messages
	snapshot bool   // send the latest message on subscribe
}

func (c *channelSpec) mode() engine.Mode {
	if c.kind == kindMarket {
		return engine.Conflated
	}
	return engine.Reliable
}

var (
	chTick          = &channelSpec{name: "tick", kind: kindMarket, pushType: "market_data", snapshot: true}
	chDepth         = &channelSpec{name: "depth", kind: kindMarket, pushType: "depth", snapshot: true}
	chOrders        = &channelSpec{name: "orders", kind: kindPrivate, pushType: "order_update"}
	chPositions     = &channelSpec{name: "positions", kind: kindPrivate, pushType: "position_update", snapshot: true}
	chAccount       = &channelSpec{name: "account", kind: kindPrivate, pushType: "account_update", snapshot: true}
	chNotifications = &channelSpec{name: "notifications", kind: kindPrivate, pushType: "risk_alert"}
	chSignals       = &channelSpec{name: "signals", kind: kindSignals, pushType: "strategy_signal"}
)

// KlineChannels are the kline channels of PROTOCOL.md.
var KlineChannels = []string{"kline_1m", "kline_5m", "kline_15m", "kline_30m", "kline_1h", "kline_1d"}

// channels maps a subscribe request's channel to its spec. market_data is
// the seed's name for ticks; strategy_signals pushes on channel "signals".
var channels = func() map[string]*channelSpec {
	m := map[string]*channelSpec{
		"market_data":      chTick,
		"tick":             chTick,
		"depth":            chDepth,
		"orders":           chOrders,
		"positions":        chPositions,
		"account":          chAccount,
		"notifications":    chNotifications,
		"strategy_signals": chSignals,
	}
	for _, k := range KlineChannels {
		m[k] = &channelSpec{name: k, kind: kindMarket, pushType: "kline", snapshot: true}
	}
	return m
}()

// permission a channel needs beyond being authenticated ("" means the user's
// own topics, checked by user id).
func (c *channelSpec) permission() string {
	switch c.kind {
	case kindMarket:
		return auth.PermReadMarketData
	case kindSignals:
		return auth.PermReadSignals
	}
	return ""
}
