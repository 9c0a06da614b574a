package natsbroker_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/engine/brokertest"
	"github.com/marketcast/marketcast/engine/natsbroker"
	"github.com/marketcast/marketcast/engine/natsbroker/natstest"
	"github.com/marketcast/marketcast/internal/testwait"
)

// TestConformance runs the broker conformance suite against the JetStream
// broker on a real NATS server embedded in the test.
func TestConformance(t *testing.T) {
	brokertest.Run(t, func(t *testing.T, limits engine.HistoryLimits) brokertest.Backend {
		return &natsBackend{srv: natstest.Start(t, ""), limits: limits}
	})
}

// natsBackend is one NATS server with JetStream; each node is a connection
// and a broker on it, as a marketcast process has them.
type natsBackend struct {
	srv    *natstest.Server
	limits engine.HistoryLimits
	conns  []*nats.Conn
}

func (be *natsBackend) Node(t *testing.T) engine.Broker {
	t.Helper()
	cfg := brokerConfig()
	cfg.History = be.limits
	var b *natsbroker.Broker
	nc, err := nats.Connect(be.srv.URL(), nats.MaxReconnects(-1), nats.ReconnectBufSize(-1),
		nats.ReconnectWait(50*time.Millisecond), nats.ReconnectHandler(func(*nats.Conn) {
			if b != nil {
				b.Reconnected()
			}
		}), nats.DisconnectErrHandler(func(*nats.Conn, error) {
			if b != nil {
				b.Disconnected()
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	be.conns = append(be.conns, nc)
	b, err = natsbroker.New(context.Background(), nc, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(); nc.Close() })
	return b
}

func (be *natsBackend) Nodes() int { return 3 }

// Advance: JetStream ages messages by its own clock.
func (be *natsBackend) Advance(time.Duration) bool { return false }

// Forget purges the topic's subject, as the stream's maximum age does for
// a topic idle that long.
func (be *natsBackend) Forget(t *testing.T, topic string) {
	t.Helper()
	nc, err := nats.Connect(be.srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	req, _ := json.Marshal(map[string]string{"filter": natsbroker.Subject(topic)})
	resp, err := nc.Request("$JS.API.STREAM.PURGE.MC_PRIV", req, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var ans struct {
		Success bool `json:"success"`
		Purged  int  `json:"purged"`
	}
	if json.Unmarshal(resp.Data, &ans) != nil || !ans.Success || ans.Purged == 0 {
		t.Fatalf("purge %s: %s", topic, resp.Data)
	}
}

// LoseStore restarts the server without its store; the nodes stay.
func (be *natsBackend) LoseStore(*testing.T) bool {
	be.srv.Restart(true)
	return true
}

// Break stops the server until restore starts it again with its store;
// it returns once every node has seen the connection go.
func (be *natsBackend) Break(t *testing.T) func() {
	be.srv.Stop()
	testwait.For(t, "every node to see NATS gone", func() bool {
		for _, nc := range be.conns {
			if nc.IsConnected() {
				return false
			}
		}
		return true
	})
	return func() { be.srv.Restart(false) }
}

// FindsLostLast: the broker checks every watched topic's head.
func (be *natsBackend) FindsLostLast() bool { return true }
