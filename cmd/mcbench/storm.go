package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marketcast/marketcast/bench/load"
)

// storm measures a reconnect storm, what a restarted node sees: o.conns
// terminals connect, authenticate and subscribe at once (o.concurrency at a
// time; 0: all), and the clock runs until the server has confirmed every
// subscription. Beside the time: the server's CPU, and the kernel's TCP
// retransmissions and listen-queue overflows during the storm (loopback:
// every one is a SYN or segment the server side dropped).
func storm(ctx context.Context, o options) error {
	n := o.conns
	if n == 0 {
		n = 10000
	}
	if n > perProcess {
		return fmt.Errorf("storm: at most %d connections (one process)", perProcess)
	}
	conc := o.concurrency
	if conc <= 0 || conc > n {
		conc = n
	}
	b, topic, err := startSeeded(ctx, o, 500*time.Millisecond)
	if err != nil {
		return err
	}
	defer b.close()
	b.clients = make([]*load.RawConn, n)
	tcp0, ext0 := netCounters()
	cpu0, _ := b.serverCPU()
	begin := time.Now()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		first   error
		sem     = make(chan struct{}, conc)
		retries atomic.Int64
	)
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			// Spread over eight source addresses: a scenario run just
			// before leaves its ports in TIME_WAIT on the first.
			src := fmt.Sprintf("127.0.0.%d", 1+i%8)
			var (
				c   *load.RawConn
				err error
			)
			// A terminal whose connect fails tries again after a second
			// or so, as real ones do; the clock keeps running.
			for try := 0; try < 5; try++ {
				if c, err = b.t.Dial(src, "u"+strconv.Itoa(i), []load.Topic{topic}, false, func([]byte) {}); err == nil {
					break
				}
				retries.Add(1)
				time.Sleep(time.Second + time.Duration(rand.IntN(1000))*time.Millisecond)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil && first == nil {
				first = fmt.Errorf("dial %d, 5 tries: %w", i, err)
			}
			b.clients[i] = c
		}()
		if ctx.Err() != nil {
			break
		}
	}
	wg.Wait()
	if first != nil {
		return first
	}
	for b.t.Ready() < int64(n) {
		if time.Since(begin) > 2*time.Minute || ctx.Err() != nil {
			return fmt.Errorf("storm: %d of %d subscriptions confirmed", b.t.Ready(), n)
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(begin)
	cpu1, _ := b.serverCPU()
	cpu := cpu1 - cpu0
	tcp1, ext1 := netCounters()
	rss, _ := load.RSS(b.t.PID())
	fmt.Printf("BenchmarkStorm/target=%s/conns=%d/concurrency=%d 1 %.3f s-to-all-live %.0f conns/s %d redials %.3f server-cpu-s %d retransmits %d syn-retransmits %d listen-overflows %d syn-cookies %.1f rss-MiB\n",
		o.target, n, conc, elapsed.Seconds(), float64(n)/elapsed.Seconds(), retries.Load(), cpu.Seconds(),
		tcp1["RetransSegs"]-tcp0["RetransSegs"], ext1["TCPSynRetrans"]-ext0["TCPSynRetrans"],
		ext1["ListenOverflows"]-ext0["ListenOverflows"], ext1["SyncookiesSent"]-ext0["SyncookiesSent"], float64(rss)/(1<<20))
	return nil
}

// netCounters reads the kernel's TCP counters (/proc/net/snmp "Tcp:") and
// extended ones (/proc/net/netstat "TcpExt:").
func netCounters() (tcp, ext map[string]int64) {
	return procTable("/proc/net/snmp", "Tcp:"), procTable("/proc/net/netstat", "TcpExt:")
}

// procTable reads a /proc/net table: a header line of names and a line of
// values, both starting with prefix.
func procTable(path, prefix string) map[string]int64 {
	out := map[string]int64{}
	b, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != prefix {
			continue
		}
		if names == nil {
			names = f[1:]
			continue
		}
		for i, v := range f[1:] {
			if i < len(names) {
				out[names[i]], _ = strconv.ParseInt(v, 10, 64)
			}
		}
		break
	}
	return out
}
