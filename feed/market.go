package feed

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/marketcast/marketcast/engine"
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

// Market takes market publications (from sources and the publish API) into
// the hub: a new symbol joins the catalogue on its first message.
type Market struct {
	hub     *engine.Hub
	catalog *Catalog
}

// NewMarket returns a market publishing to hub, with a catalogue of at
// most maxSymbols symbols.
func NewMarket(hub *engine.Hub, maxSymbols int) *Market {
	return &Market{hub: hub, catalog: NewCatalog(maxSymbols)}
}

// Publish implements Sink.
func (m *Market) Publish(ctx context.Context, p *protocol.Publication) (uint64, error) {
	if err := m.catalog.Add(p.ID); err != nil {
		return 0, err
	}
	ev, err := m.hub.Publish(ctx, engine.FromPublication(p))
	if err != nil {
		return 0, err
	}
	return ev.Sequence(), nil
}

// AddSymbols puts a source's known symbols in the catalogue before it runs.
func (m *Market) AddSymbols(symbols []string) error {
	for _, s := range symbols {
		if err := m.catalog.Add(s); err != nil {
			return err
		}
	}
	return nil
}

// HasSymbol reports whether the universe knows symbol.
func (m *Market) HasSymbol(symbol string) bool { return m.catalog.Has(symbol) }

// Symbols lists the universe, sorted (shared: do not modify).
func (m *Market) Symbols() []string { return m.catalog.Sorted() }

// SymbolCount is the size of the universe.
func (m *Market) SymbolCount() int { return m.catalog.Len() }

var _ Sink = (*Market)(nil)
