package gateway

import (
	"context"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/engine/auth"
)

// TestReadLoopPanicIsContained makes a handler panic inside one
// connection's read loop: that connection is closed and counted, and the
// process, its other connections and its gauges carry on.
func TestReadLoopPanicIsContained(t *testing.T) {
	testHookOnMessage = func(b []byte) {
		if strings.Contains(string(b), "boom") {
			panic("boom")
		}
	}
	t.Cleanup(func() { testHookOnMessage = nil })
	srv := New(Config{}, engine.NewHub(engine.Config{}), auth.NewVerifier([]byte("test-secret-0123456789abcdef")), nil)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		hs.Close()
	})
	dial := func() net.Conn {
		c, err := net.Dial("tcp", strings.TrimPrefix(hs.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
		buf := make([]byte, 4096)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(buf); err != nil || !strings.Contains(string(buf[:n]), "101") {
			t.Fatalf("upgrade: %v %q", err, buf[:n])
		}
		return c
	}
	masked := func(s string) []byte {
		b := []byte{0x81, 0x80 | byte(len(s)), 0, 0, 0, 0} // zero mask key: payload as is
		return append(b, s...)
	}
	victim, other := dial(), dial()
	defer other.Close()
	if _, err := victim.Write(masked(`{"type":"boom"}`)); err != nil {
		t.Fatal(err)
	}
	// The victim's socket is closed by the recover.
	_ = victim.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(victim); err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("victim: %v", err)
	}
	if _, err := other.Write(masked(`{"type":"ping","id":7}`)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	_ = other.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := other.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), `"pong"`) {
		t.Fatalf("other connection after the panic: %v %q", err, buf[:n])
	}
	if got := srv.readPanics.Get(); got != 1 {
		t.Fatalf("marketcast_connection_panics_total %d; want 1", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for srv.ActiveConnections() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := srv.ActiveConnections(); got != 1 {
		t.Fatalf("open connections %d after the panic; want 1 (the panicked one released)", got)
	}
}
