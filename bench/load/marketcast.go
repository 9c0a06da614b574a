package load

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/marketcast/marketcast/engine/auth"
	"github.com/marketcast/marketcast/protocol"
)

// Marketcast runs the marketcast binary.
type Marketcast struct {
	Bin string
	// Config is YAML merged over the embedded default (feed, limits...).
	Config string
	// Env adds environment variables (a cluster node's NATS URL).
	Env []string

	addr, secret, pubToken string
	proc                   *process
	counter
}

func (m *Marketcast) Endpoint() (string, string) { return m.addr, m.secret }
func (m *Marketcast) Name() string               { return "marketcast" }
func (m *Marketcast) PID() int                   { return m.proc.cmd.Process.Pid }
func (m *Marketcast) Stop()                      { m.proc.stop() }

func (m *Marketcast) Start(ctx context.Context) error {
	addr, err := freePort()
	if err != nil {
		return err
	}
	m.addr, m.secret = addr, "mcbench-secret-0123456789abcdef"
	cfg := filepath.Join(os.TempDir(), fmt.Sprintf("mcbench-%d.yaml", time.Now().UnixNano()))
	if err := os.WriteFile(cfg, []byte(m.Config), 0o600); err != nil {
		return err
	}
	defer os.Remove(cfg) // read at start; the process is up (or failed) when Start returns
	m.proc, err = startProcess(ctx, m.Bin, []string{"-config", cfg},
		append([]string{"MARKETCAST_LISTEN=" + addr, "MARKETCAST_JWT_SECRET=" + m.secret}, m.Env...), "http://"+addr+"/healthz")
	if err != nil {
		return err
	}
	m.pubToken, err = auth.Issue([]byte(m.secret), "mcbench", []string{protocol.PermPublish}, 24*time.Hour)
	return err
}

func (m *Marketcast) Dial(src, user string, topics []Topic, deflate bool, onData func([]byte)) (*RawConn, error) {
	tok, err := auth.Issue([]byte(m.secret), user, []string{protocol.PermReadMarketData, protocol.PermReadSignals}, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	c, err := DialRaw("ws://"+m.addr+"/ws?token="+tok, src, deflate, func(_ *RawConn, b []byte) {
		if bytes.HasPrefix(b, []byte(`{"type":"subscribe_response"`)) {
			m.n.Add(1)
			return
		}
		if bytes.HasPrefix(b, []byte(`{"type":"auth_response"`)) || bytes.HasPrefix(b, []byte(`{"type":"error"`)) {
			return
		}
		onData(b)
	})
	if err != nil {
		return nil, err
	}
	// One request per channel, symbols grouped, so a client stays far
	// under the rate limit.
	byChannel := map[string][]string{}
	for _, t := range topics {
		byChannel[t.Channel] = append(byChannel[t.Channel], t.ID)
	}
	var reqs []map[string]any
	for ch, ids := range byChannel {
		switch ch {
		case "orders", "positions", "account", "notifications": // the user's own topic
			reqs = append(reqs, map[string]any{"type": "subscribe", "channel": ch})
		case "strategy_signals":
			for _, id := range ids {
				reqs = append(reqs, map[string]any{"type": "subscribe", "channel": ch, "strategy_id": id})
			}
		default: // one answer for all symbols
			reqs = append(reqs, map[string]any{"type": "subscribe", "channel": ch, "symbols": ids})
			m.n.Add(int64(len(ids) - 1))
		}
	}
	for _, req := range reqs {
		b, _ := json.Marshal(req)
		if err := c.Send(b); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func (m *Marketcast) Publish(msgs []Outgoing) error {
	items := make([]json.RawMessage, len(msgs))
	for i, o := range msgs {
		key := "symbol"
		switch o.Topic.Channel {
		case "orders", "positions", "account", "notifications":
			key = "user_id"
		case "strategy_signals":
			key = "strategy_id"
		}
		items[i] = fmt.Appendf(nil, `{"channel":%q,%q:%q,"data":%s}`, o.Topic.Channel, key, o.Topic.ID, o.Data)
	}
	body, _ := json.Marshal(items)
	return post("http://"+m.addr+"/api/v1/publish", http.Header{
		"Authorization": {"Bearer " + m.pubToken}, "Content-Type": {"application/json"}}, body)
}

// BaseConfig is the marketcast configuration used by the scenarios: no
// simulator unless asked, client limits out of the way (the load generator
// opens 10,000 connections per source address), logs quiet.
func BaseConfig(simSymbols int, simRate float64) string {
	feed := "feed:\n  kind: none\n"
	if simSymbols > 0 {
		feed = fmt.Sprintf("feed:\n  kind: sim\n  sim:\n    symbol_count: %d\n    rate: %g\n", simSymbols, simRate)
	}
	return "dev_mode: false\npprof: true\n" + feed +
		"limits:\n  rate_per_minute: 100000\n  rate_burst: 1000\n  frame_burst: 2000\n  frames_per_second: 10000\n  max_subscriptions: 4096\n  max_connections_per_ip: 0\n" +
		"log:\n  level: warn\n"
}
