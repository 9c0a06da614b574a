// Package feed defines where market data comes from: the Source contract,
// the market data shapes of PROTOCOL.md with decimal-string numbers, and
// their conversion into engine messages. Implementations live in
// subpackages (sim: the built-in simulator; kline: bar aggregation).
package feed

import (
	"context"

	"github.com/bytedance/sonic"

	"github.com/marketcast/marketcast/engine"
)

// Publisher is where a source sends its messages. *engine.Hub satisfies it.
type Publisher interface {
	Publish(engine.Message) (engine.Published, error)
	AddSymbol(symbol string)
}

// Source produces market data until ctx ends.
type Source interface {
	// Symbols lists the symbols the source knows before it starts.
	Symbols() []string
	// Run publishes until ctx is done. It returns ctx.Err() on a normal stop.
	Run(ctx context.Context, p Publisher) error
}

// Channels of market data, as they appear on the wire.
const (
	ChannelTick  = "tick"
	ChannelDepth = "depth"
)

// Tick is a quote: the seed's tick keys, every number a decimal string.
type Tick struct {
	Symbol        string `json:"-"`
	LastPrice     string `json:"last_price"`
	BidPrice      string `json:"bid_price"`
	AskPrice      string `json:"ask_price"`
	BidVolume     string `json:"bid_volume"`
	AskVolume     string `json:"ask_volume"`
	Volume        string `json:"volume"`
	Turnover      string `json:"turnover"`
	OpenInterest  string `json:"open_interest"`
	Change        string `json:"change"`
	ChangePercent string `json:"change_percent"`
}

// TickFields lists a tick's data keys in wire order; they are what a
// subscription's "fields" may select.
var TickFields = []string{"last_price", "bid_price", "ask_price", "bid_volume", "ask_volume",
	"volume", "turnover", "open_interest", "change", "change_percent"}

// Depth is an order book: levels best first, each [price, volume].
type Depth struct {
	Symbol string      `json:"-"`
	Bids   [][2]string `json:"bids"`
	Asks   [][2]string `json:"asks"`
	Levels int         `json:"levels"`
}

// Bar is one kline update; Closed marks the bar's final message.
type Bar struct {
	Symbol    string `json:"-"`
	Channel   string `json:"-"` // kline_1m, kline_5m, ...
	Open      string `json:"open"`
	High      string `json:"high"`
	Low       string `json:"low"`
	Close     string `json:"close"`
	Volume    string `json:"volume"`
	Turnover  string `json:"turnover"`
	StartTime string `json:"start_time"`
	EndTime   string `json:"end_time"`
	Closed    bool   `json:"closed"`
}

func encode(v any) []byte {
	b, err := sonic.Marshal(v)
	if err != nil {
		// These are plain structs of strings: failure is a programming error.
		panic("feed: encode: " + err.Error())
	}
	return b
}

// TickMessage converts a tick into the engine message of its topic.
func TickMessage(t *Tick) engine.Message {
	return engine.Message{
		Topic: engine.TopicKey(ChannelTick, t.Symbol), Mode: engine.Conflated,
		Type: "market_data", Channel: ChannelTick, Symbol: t.Symbol, Data: encode(t),
	}
}

// DepthMessage converts a book into the engine message of its topic.
func DepthMessage(d *Depth) engine.Message {
	return engine.Message{
		Topic: engine.TopicKey(ChannelDepth, d.Symbol), Mode: engine.Conflated,
		Type: "depth", Channel: ChannelDepth, Symbol: d.Symbol, Data: encode(d),
	}
}

// BarMessage converts a bar into the engine message of its topic. A closed
// bar is Final: no later update may conflate it away.
func BarMessage(b *Bar) engine.Message {
	return engine.Message{
		Topic: engine.TopicKey(b.Channel, b.Symbol), Mode: engine.Conflated,
		Type: "kline", Channel: b.Channel, Symbol: b.Symbol, Data: encode(b), Final: b.Closed,
	}
}
