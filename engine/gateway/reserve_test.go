package gateway_test

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/internal/testwait"
)

// probe asks path on a fresh connection, as an orchestrator's probe does,
// and returns the status line ("" when the connection was refused).
func probe(t *testing.T, addr, path string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		return ""
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return ""
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

// TestHealthAnswersUnderAConnectionFlood is finding 10 of the second
// security test: once the global cap was reached, 63 idle /healthz
// keep-alives (and connections that send nothing) filled the 64-connection
// health reserve, and the orchestrator's probe was refused, so it would
// restart a healthy node. The reserve now answers one request per
// connection and closes it, and a full reserve makes room by closing its
// oldest connection: the probe, the newest, is answered.
func TestHealthAnswersUnderAConnectionFlood(t *testing.T) {
	ts := newTestServer(t, func(c *configs.Config) {
		c.Limits.MaxConnections, c.Limits.MaxConnectionsIP = 20, 0
		c.Auth.Timeout.Duration = time.Hour // the flood's WebSockets stay
	})
	addr := strings.TrimPrefix(ts.http.URL, "http://")
	for range 20 {
		ts.login("holder") // fills the cap
	}
	// The attack: 64 keep-alive /healthz connections that ask once and stay,
	// and 100 that send nothing at all.
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for range 64 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		flood = append(flood, c)
		_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	for range 100 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		flood = append(flood, c)
	}
	testwait.For(t, "the flood accepted", func() bool {
		return ts.srv.ActiveConnections() == 20 && tcpConnections(ts) >= 20+64
	})
	for _, path := range []string{"/healthz", "/readyz"} {
		if line := probe(t, addr, path); !strings.Contains(line, "200") {
			t.Fatalf("%s under the flood: %q; want 200", path, line)
		}
	}
	if line := probe(t, addr, "/ws"); !strings.Contains(line, "503") {
		t.Fatalf("/ws at the cap: %q; want 503", line)
	}
	if n := tcpConnections(ts); n > 20+64+1 {
		t.Fatalf("%v connections held; want at most the cap and the reserve", n)
	}
}

// tcpConnections reads the listener's connection gauge without a
// connection of its own (the server is full).
func tcpConnections(ts *testServer) float64 {
	return float64(ts.srv.TCPConnections())
}
