package main

import "github.com/marketcast/marketcast/feed/sim"

// simSymbols are the symbols the server's simulator generates for
// feed.sim.symbol_count = n.
func simSymbols(n int) []string { return sim.Universe(n) }
