// Package feed is where market data comes from: the Source contract, the
// market data shapes of PROTOCOL.md with decimal-string numbers, the symbol
// catalogue, and the Market that takes publications from sources and the
// publish API into the hub. Sources live in subpackages (sim: the built-in
// simulator; kline: bar aggregation).
package feed

import (
	"context"

	"github.com/bytedance/sonic"

	"github.com/marketcast/marketcast/protocol"
)

// Sink is where a source sends what it produces: market publications. The
// server's Market is one; it adds a new symbol to the catalogue on its first
// message and publishes through the hub.
type Sink interface {
	Publish(ctx context.Context, p *protocol.Publication) (seq uint64, err error)
}

// BatchSink is a Sink that also takes publications due together at once
// (a snapshot of every contract, what one read from NATS brought), so each
// terminal gets them in one write. Sources use it when their sink has it.
type BatchSink interface {
	Sink
	// PublishBatch publishes ps and says how many it published; the
	// error is the first refusal, the others published all the same.
	PublishBatch(ctx context.Context, ps []*protocol.Publication) (int, error)
}

// PublishAll publishes ps through sink, as one batch when it takes
// batches, and says how many it published and the first refusal.
func PublishAll(ctx context.Context, sink Sink, ps []*protocol.Publication) (int, error) {
	if b, ok := sink.(BatchSink); ok {
		return b.PublishBatch(ctx, ps)
	}
	var (
		n     int
		first error
	)
	for _, p := range ps {
		if _, err := sink.Publish(ctx, p); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		n++
	}
	return n, first
}

// Source produces market data until ctx ends.
type Source interface {
	// Symbols lists the symbols the source knows before it starts.
	Symbols() []string
	// Run publishes until ctx is done. It returns ctx.Err() on a normal stop.
	Run(ctx context.Context, sink Sink) error
}

// Tick is a quote: the seed's tick keys, then the exchange's update time
// and what a futures terminal shows beside them; every number a decimal
// string. Volume and turnover are the trading day's cumulative values.
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
	UpdateTime    string `json:"update_time,omitempty"`
	Open          string `json:"open,omitempty"`
	High          string `json:"high,omitempty"`
	Low           string `json:"low,omitempty"`
	PreSettlement string `json:"pre_settlement,omitempty"`
	UpperLimit    string `json:"upper_limit,omitempty"`
	LowerLimit    string `json:"lower_limit,omitempty"`
	AveragePrice  string `json:"average_price,omitempty"`
}

// Depth is an order book: levels best first, each [price, volume].
type Depth struct {
	Symbol     string      `json:"-"`
	Bids       [][2]string `json:"bids"`
	Asks       [][2]string `json:"asks"`
	Levels     int         `json:"levels"`
	UpdateTime string      `json:"update_time,omitempty"`
}

func encode(v any) []byte {
	b, err := sonic.Marshal(v)
	if err != nil {
		// These are plain structs of strings: failure is a programming error.
		panic("feed: encode: " + err.Error())
	}
	return b
}

// TickPublication is the publication of a tick.
func TickPublication(t *Tick) *protocol.Publication {
	return &protocol.Publication{Channel: protocol.Tick, ID: t.Symbol, Type: protocol.Tick.Type, Data: encode(t)}
}

// DepthPublication is the publication of a book.
func DepthPublication(d *Depth) *protocol.Publication {
	return &protocol.Publication{Channel: protocol.Depth, ID: d.Symbol, Type: protocol.Depth.Type, Data: encode(d)}
}
