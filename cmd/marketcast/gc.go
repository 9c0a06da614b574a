package main

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/debug"
	"time"
)

// GC headroom. Per-connection state dominates the heap and steady-state
// garbage is per event, not per delivery, so a small headroom trims RSS per
// idle connection (19,000 connections: 11.6 KB at GOGC 50, 9.8 KB at 25)
// with no fan-out throughput lost in measurement. But while connections
// arrive in bulk (a reconnect storm after a restart) the live heap grows
// fast, and at 25 the collector runs a cycle every 25 % of growth, each
// scanning every goroutine's stack: 10,000 connections took 2.7 server
// CPU-seconds instead of 1.7 at 100. So the headroom widens while
// connections pour in and narrows once they stop.
const (
	gcSteady = 25  // GOGC between storms
	gcStorm  = 100 // GOGC while connections pour in
	// stormRate is how many new connections in one gcTick count as a
	// storm; gcCalm is how long without one before narrowing again.
	stormRate = 200
	gcTick    = 100 * time.Millisecond
	gcCalm    = 2 * time.Second
)

// gcManaged is set when this process chose its GC headroom (the operator
// did not set GOGC), so the headroom may follow connection storms.
var gcManaged bool

// followStorms widens the GC headroom while connections (the count conns
// reports) rise by stormRate a tick, until ctx ends. It does nothing when
// the operator set GOGC.
func followStorms(ctx context.Context, conns func() int, log *slog.Logger) {
	if !gcManaged {
		return
	}
	t := time.NewTicker(gcTick)
	defer t.Stop()
	last, wide, calmSince := conns(), false, time.Time{}
	for {
		select {
		case <-ctx.Done():
			if wide {
				debug.SetGCPercent(gcSteady)
			}
			return
		case now := <-t.C:
			n := conns()
			switch {
			case n-last >= stormRate:
				if !wide {
					debug.SetGCPercent(gcStorm)
					wide = true
					log.Info("connection storm: GC headroom widened", "connections", n, "gogc", gcStorm)
				}
				calmSince = now
			case wide && now.Sub(calmSince) >= gcCalm:
				debug.SetGCPercent(gcSteady)
				// Collect now and return what the storm's headroom held:
				// idle connections allocate nothing, so no cycle would
				// come to shrink the heap by itself. The first cycle also
				// halves the stacks the connections' goroutines grew while
				// handshaking (8 KiB each, a quarter of it in use once
				// idle); the second returns them to the system.
				runtime.GC()
				debug.FreeOSMemory()
				wide = false
				log.Info("connection storm over: GC headroom back", "connections", n, "gogc", gcSteady)
			}
			last = n
		}
	}
}
