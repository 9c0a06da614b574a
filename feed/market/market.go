// Package market takes market data from every source of a node (the
// simulator, NATS ingest, the publish API) into its hub. A new symbol joins
// the catalogue on its first message; a tick or book older than its
// symbol's latest, or a copy of it, is counted and goes no further; bars of
// every interval are built from the ticks (feed/kline), unless the feed
// sends a symbol's bars itself.
//
// The work is sharded by symbol: each shard has its own lock, its own bar
// builder and the latest of its symbols, so ingest scales with cores while
// each symbol's messages and bars stay in order.
package market

import (
	"fmt"
	"slices"
	"sync"

	"github.com/marketcast/marketcast/protocol"
)

// Catalog is the market universe: the symbols a subscription may name. It
// is bounded, so a publisher cannot make the server remember symbols
// without end, and its sorted list is kept ready, so listing it costs
// nothing per request.
type Catalog struct {
	max int

	mu     sync.RWMutex
	set    map[string]struct{}
	sorted []string // rebuilt lazily after an Add
	dirty  bool
}

// NewCatalog returns an empty catalogue of at most max symbols.
func NewCatalog(max int) *Catalog {
	return &Catalog{max: max, set: make(map[string]struct{}), sorted: []string{}}
}

// Add puts symbol in the universe. It fails, naming the limit, once the
// catalogue is full; a symbol already there always succeeds.
func (c *Catalog) Add(symbol string) error {
	c.mu.RLock()
	_, ok := c.set[symbol]
	c.mu.RUnlock()
	if ok {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.set[symbol]; ok {
		return nil
	}
	if len(c.set) >= c.max {
		return fmt.Errorf("%w: the symbol catalogue holds its maximum of %d symbols (limits.max_symbols); %q not added",
			protocol.ErrRejected, c.max, symbol)
	}
	c.set[symbol] = struct{}{}
	c.dirty = true
	return nil
}

// Has reports whether symbol is in the universe.
func (c *Catalog) Has(symbol string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	_, ok := c.set[symbol]
	return ok
}

// Len is the number of symbols.
func (c *Catalog) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.set)
}

// Sorted lists the universe in order. The slice is shared: do not modify it.
func (c *Catalog) Sorted() []string {
	c.mu.RLock()
	if !c.dirty {
		defer c.mu.RUnlock()
		return c.sorted
	}
	c.mu.RUnlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dirty {
		out := make([]string, 0, len(c.set))
		for s := range c.set {
			out = append(out, s)
		}
		slices.Sort(out)
		c.sorted, c.dirty = out, false
	}
	return c.sorted
}
