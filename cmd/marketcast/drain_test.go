package main

import (
	"net/http"
	"strings"
	"syscall"
	"testing"

	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/internal/testwait"
	"github.com/marketcast/marketcast/protocol"
)

// TestDrainForLoadBalancers runs the real binary with a shutdown delay and
// asserts the order of a shutdown, never its timing: after SIGTERM /readyz
// fails first while the connected client keeps receiving and a new client
// can still connect (the balancer has not noticed yet); only then (here: at
// a second SIGTERM, which ends the wait) do clients get 1001; then the
// process exits 0. The delay is ten minutes (the most allowed) so that nothing but the signal can
// end it within the test.
func TestDrainForLoadBalancers(t *testing.T) {
	addr := freePort(t)
	p := startBinary(t, addr, "MARKETCAST_SHUTDOWN_UNREADY_DELAY=10m", "MARKETCAST_LOG_FORMAT=json")
	cfg := configs.Default()
	subscribe := func() {
		t.Helper()
		c := login(t, addr, cfg, false)
		if err := c.Send(map[string]any{"type": "subscribe", "channel": "market_data", "symbols": []string{"SHFE.rb2405"}}); err != nil {
			t.Fatal(err)
		}
	}
	c := login(t, addr, cfg, false)
	if err := c.Send(map[string]any{"type": "subscribe", "channel": "market_data", "symbols": []string{"SHFE.rb2405"}}); err != nil {
		t.Fatal(err)
	}
	nextTick := func(when string) {
		t.Helper()
		for {
			m, err := c.Next(wait)
			if err != nil {
				t.Fatalf("%s: %v", when, err)
			}
			if m.Type == "market_data" && !m.Snapshot {
				return
			}
		}
	}
	nextTick("before SIGTERM")
	exited := make(chan error, 1)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// 1. Not ready, and saying why.
	status := func(path string) int {
		res, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0
		}
		res.Body.Close()
		return res.StatusCode
	}
	testwait.For(t, "/readyz to fail after SIGTERM", func() bool { return status("/readyz") == http.StatusServiceUnavailable })
	// 2. Still serving: live data to the connected client, a new client,
	// health.
	nextTick("while not ready")
	subscribe()
	if code := status("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz %d while not ready", code)
	}
	go func() { exited <- p.wait() }()

	// 3. The second signal ends the wait: clients get 1001, then the
	// process exits 0.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, err := c.WaitClose(wait)
	if err != nil || code != protocol.CloseGoingAway {
		t.Fatalf("close %d, %v; want 1001", code, err)
	}
	if err := <-exited; err != nil {
		t.Fatalf("exit: %v\n%s", err, p.logs.String())
	}
	logs := p.logs.String()
	order := []string{`"msg":"shutting down: /readyz fails`, `"unready_delay":"10m0s"`, `"msg":"shutting down: second signal`,
		`"msg":"shutting down: draining clients","grace":"5s"`, `"msg":"stopped"`}
	at := 0
	for _, want := range order {
		i := strings.Index(logs[at:], want)
		if i < 0 {
			t.Fatalf("the log lacks %s after position %d (the order: %v):\n%s", want, at, order, logs)
		}
		at += i
	}
}
