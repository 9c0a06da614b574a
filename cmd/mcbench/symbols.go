package main

import (
	"sync"

	"github.com/marketcast/marketcast/feed/sim"
)

var universe = struct {
	sync.Mutex
	byN map[int][]string
}{byN: map[int][]string{}}

// simSymbols are the symbols the server's simulator generates for
// feed.sim.symbol_count = n.
func simSymbols(n int) []string {
	universe.Lock()
	defer universe.Unlock()
	if s, ok := universe.byN[n]; ok {
		return s
	}
	s := sim.Universe(n)
	universe.byN[n] = s
	return s
}
