package gateway_test

import (
	"strings"
	"testing"

	"github.com/marketcast/marketcast/engine/gateway"
)

// TestReadLoopPanicIsContained makes a handler panic inside one
// connection's read loop: that connection is closed and counted, and the
// process, its other connections and its gauges carry on.
func TestReadLoopPanicIsContained(t *testing.T) {
	t.Cleanup(gateway.SetTestHookOnMessage(func(b []byte) {
		if strings.Contains(string(b), "boom") {
			panic("boom")
		}
	}))
	ts := newTestServer(t, nil)
	victim, other := dialRaw(t, ts.ws), dialRaw(t, ts.ws)
	victim.mustWrite(textFrame(`{"type":"boom"}`))
	if _, err := victim.closeCode(wait); err != errNoCloseFrame {
		t.Fatalf("victim: %v; want its socket closed", err)
	}
	other.mustWrite(textFrame(`{"type":"ping","id":7}`))
	if b, err := other.text(wait); err != nil || !strings.Contains(string(b), `"pong"`) {
		t.Fatalf("other connection after the panic: %v %s", err, b)
	}
	if n := ts.metric("marketcast_connection_panics_total"); n != 1 {
		t.Fatalf("marketcast_connection_panics_total %v; want 1", n)
	}
	ts.waitConnections(1) // the panicked one released
}
