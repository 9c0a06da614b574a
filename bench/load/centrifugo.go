package load

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/marketcast/marketcast/engine/frame"
)

// Centrifugo runs a Centrifugo v6 binary (installed by bench/centrifugo.sh,
// never committed) with the same client methodology as marketcast: JSON
// protocol over WebSocket, JWT connect, HTTP API publishing.
type Centrifugo struct {
	Bin string
	// Tuned sets what Centrifugo's documentation offers to save memory per
	// connection: 512-byte WebSocket read buffers and a pool of write
	// buffers instead of one per connection. Off: its defaults.
	Tuned bool

	addr, secret, apiKey string
	proc                 *process
	counter
}

func (c *Centrifugo) Endpoint() (string, string) { return c.addr, c.secret }
func (c *Centrifugo) Name() string {
	if c.Tuned {
		return "centrifugo-tuned"
	}
	return "centrifugo"
}
func (c *Centrifugo) PID() int { return c.proc.cmd.Process.Pid }
func (c *Centrifugo) Stop()    { c.proc.stop() }

func (c *Centrifugo) Start(ctx context.Context) error {
	addr, err := freePort()
	if err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(addr)
	c.addr, c.secret, c.apiKey = addr, "mcbench-secret-0123456789abcdef", "mcbench-api-key"
	cfg := map[string]any{
		"http_server": map[string]any{"address": host, "port": atoi(port)},
		"client": map[string]any{"token": map[string]any{"hmac_secret_key": c.secret}, "allowed_origins": []string{"*"},
			"channel_limit": 4096},
		"channel":  map[string]any{"without_namespace": map[string]any{"allow_subscribe_for_client": true}},
		"http_api": map[string]any{"key": c.apiKey},
		"health":   map[string]any{"enabled": true},
		"log":      map[string]any{"level": "error"},
	}
	if c.Tuned {
		cfg["websocket"] = map[string]any{"read_buffer_size": 512, "use_write_buffer_pool": true}
	}
	b, _ := json.Marshal(cfg)
	file := filepath.Join(os.TempDir(), fmt.Sprintf("centrifugo-%d.json", time.Now().UnixNano()))
	if err := os.WriteFile(file, b, 0o600); err != nil {
		return err
	}
	defer os.Remove(file) // read at start; the process is up (or failed) when Start returns
	c.proc, err = startProcess(ctx, c.Bin, []string{"--config", file}, nil, "http://"+addr+"/health")
	return err
}

// channelName maps a topic to a Centrifugo channel (no namespace).
func channelName(t Topic) string { return t.Channel + "_" + strings.ReplaceAll(t.ID, ":", "_") }

var (
	pingFrame = []byte("{}")
	pushKey   = []byte(`{"push":`)
)

func (c *Centrifugo) Dial(src, user string, topics []Topic, deflate bool, onData func([]byte)) (*RawConn, error) {
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": user, "exp": time.Now().Add(24 * time.Hour).Unix()}).
		SignedString([]byte(c.secret))
	if err != nil {
		return nil, err
	}
	cl, err := DialRaw("ws://"+c.addr+"/connection/websocket", src, deflate, func(cl *RawConn, b []byte) {
		// Centrifugo may put several messages in one frame, one per line.
		for len(b) > 0 {
			line := b
			if i := bytes.IndexByte(b, '\n'); i >= 0 {
				line, b = b[:i], b[i+1:]
			} else {
				b = nil
			}
			switch {
			case bytes.Equal(line, pingFrame):
				_ = cl.Send(pingFrame) // pong
			case bytes.HasPrefix(line, pushKey):
				onData(line)
			case bytes.Contains(line, []byte(`"subscribe":`)):
				c.n.Add(1)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	if err := cl.Send(fmt.Appendf(nil, `{"id":1,"connect":{"token":%q}}`, tok)); err != nil {
		cl.Close()
		return nil, err
	}
	for i, t := range topics {
		if err := cl.Send(fmt.Appendf(nil, `{"id":%d,"subscribe":{"channel":%s}}`, i+2, frame.AppendString(nil, channelName(t)))); err != nil {
			cl.Close()
			return nil, err
		}
	}
	return cl, nil
}

func (c *Centrifugo) Publish(msgs []Outgoing) error {
	h := http.Header{"X-Api-Key": {c.apiKey}, "Content-Type": {"application/json"}}
	if len(msgs) == 1 {
		body := fmt.Appendf(nil, `{"channel":%s,"data":%s}`, frame.AppendString(nil, channelName(msgs[0].Topic)), msgs[0].Data)
		return post("http://"+c.addr+"/api/publish", h, body)
	}
	var body bytes.Buffer
	body.WriteString(`{"commands":[`)
	for i, o := range msgs {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"publish":{"channel":%s,"data":%s}}`, frame.AppendString(nil, channelName(o.Topic)), o.Data)
	}
	body.WriteString(`]}`)
	return post("http://"+c.addr+"/api/batch", h, body.Bytes())
}

func atoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}
