// Package protocol is marketcast's wire vocabulary, in one place: channel
// names and their aliases, push and answer types, kline intervals, tick
// fields, error and close codes, permissions, the id rule, topic keys, the
// NATS subjects collectors publish to, and the validation of everything a
// publisher sends (the publish API and feed ingest share it). It is a leaf:
// the feed, the engine, the gateway and the JavaScript client (through the
// generated clients/js/protocol.js) take their names from here.
package protocol

import (
	"slices"
	"time"
)

// Kind groups channels by how their messages travel.
type Kind uint8

const (
	// KindMarket channels carry state (ticks, books, bars): conflated for slow
	// readers, numbered per node, never resumed.
	KindMarket Kind = iota
	// KindPrivate channels carry one user's events: never conflated or
	// dropped, numbered per topic within an epoch, resumable.
	KindPrivate
	// KindSignals channels carry a strategy's events to every reader with read:signals:
	// reliable and resumable like private channels.
	KindSignals
)

// Channel describes one subscribable channel.
type Channel struct {
	// Push is the channel name on pushed messages and in topic keys.
	Push string
	// Names are what a request (subscribe, unsubscribe, publish) may call
	// the channel; the first is the seed's name.
	Names []string
	// Type is the envelope type of pushed messages (notifications may
	// override it per message).
	Type string
	Kind Kind
	// Snapshot: a subscribe is answered with the topic's latest message.
	Snapshot bool
	// Interval is a kline channel's bar length; zero for other channels.
	Interval time.Duration
	// Permission is what a subscriber needs beyond being authenticated;
	// "" means the user's own topics, checked by user id.
	Permission string
}

// Reliable reports whether the channel's messages are never conflated and
// can be resumed.
func (c *Channel) Reliable() bool { return c.Kind != KindMarket }

// Kline reports whether the channel carries bars.
func (c *Channel) Kline() bool { return c.Interval > 0 }

// Channels of the protocol.
var (
	Tick          = &Channel{Push: "tick", Names: []string{"market_data", "tick"}, Type: TypeMarketData, Kind: KindMarket, Snapshot: true, Permission: PermReadMarketData}
	Depth         = &Channel{Push: "depth", Names: []string{"depth"}, Type: TypeDepth, Kind: KindMarket, Snapshot: true, Permission: PermReadMarketData}
	Orders        = &Channel{Push: "orders", Names: []string{"orders"}, Type: TypeOrderUpdate, Kind: KindPrivate}
	Positions     = &Channel{Push: "positions", Names: []string{"positions"}, Type: TypePositionUpdate, Kind: KindPrivate, Snapshot: true}
	Account       = &Channel{Push: "account", Names: []string{"account"}, Type: TypeAccountUpdate, Kind: KindPrivate, Snapshot: true}
	Notifications = &Channel{Push: "notifications", Names: []string{"notifications"}, Type: TypeRiskAlert, Kind: KindPrivate}
	Signals       = &Channel{Push: "signals", Names: []string{"strategy_signals", "signals"}, Type: TypeStrategySignal, Kind: KindSignals, Permission: PermReadSignals}
)

// Klines are the kline channels, shortest first.
var Klines = []*Channel{
	kline("kline_1m", time.Minute),
	kline("kline_5m", 5*time.Minute),
	kline("kline_15m", 15*time.Minute),
	kline("kline_30m", 30*time.Minute),
	kline("kline_1h", time.Hour),
	kline("kline_1d", 24*time.Hour),
}

func kline(name string, d time.Duration) *Channel {
	return &Channel{Push: name, Names: []string{name}, Type: TypeKline, Kind: KindMarket, Snapshot: true, Interval: d, Permission: PermReadMarketData}
}

// All lists every channel, market first.
var All = append([]*Channel{Tick, Depth}, append(slices.Clone(Klines), Orders, Positions, Account, Notifications, Signals)...)

var byName = func() map[string]*Channel {
	m := make(map[string]*Channel)
	for _, c := range All {
		for _, n := range c.Names {
			m[n] = c
		}
	}
	return m
}()

// Lookup finds a channel by any of its names.
func Lookup(name string) (*Channel, bool) {
	c, ok := byName[name]
	return c, ok
}

// ChannelNames lists every name a request may use, sorted.
func ChannelNames() []string {
	out := make([]string, 0, len(byName))
	for n := range byName {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// TickFields are a tick's data keys in wire order: what a subscription's
// "fields" may select. The seed's ten come first; then the exchange's
// update time and what a futures terminal shows beside them.
var TickFields = []string{"last_price", "bid_price", "ask_price", "bid_volume", "ask_volume",
	"volume", "turnover", "open_interest", "change", "change_percent",
	"update_time", "open", "high", "low", "pre_settlement", "upper_limit", "lower_limit", "average_price"}

// FieldAliases are the seed's short names for tick keys.
var FieldAliases = map[string]string{"bid": "bid_price", "ask": "ask_price"}
