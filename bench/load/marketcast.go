package load

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
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
	// TLS serves wss:// with a self-signed certificate (the operations
	// endpoints stay plain HTTP on a port of their own).
	TLS bool
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
	env, health := append([]string{"MARKETCAST_LISTEN=" + addr, "MARKETCAST_JWT_SECRET=" + m.secret}, m.Env...), "http://"+addr+"/healthz"
	if m.TLS {
		certs, err := selfSigned()
		if err != nil {
			return err
		}
		defer os.RemoveAll(certs) // read at start too
		ops, err := freePort()
		if err != nil {
			return err
		}
		env = append(env, "MARKETCAST_TLS_CERT="+filepath.Join(certs, "cert.pem"), "MARKETCAST_TLS_KEY="+filepath.Join(certs, "key.pem"),
			"MARKETCAST_OPS_LISTEN="+ops)
		health = "http://" + ops + "/healthz"
	}
	m.proc, err = startProcess(ctx, m.Bin, []string{"-config", cfg}, env, health)
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
	scheme := "ws://"
	if m.TLS {
		scheme = "wss://"
	}
	c, err := DialRaw(scheme+m.addr+"/ws?token="+tok, src, deflate, func(_ *RawConn, b []byte) {
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
	scheme := "http://"
	if m.TLS {
		scheme = "https://"
	}
	return post(scheme+m.addr+"/api/v1/publish", http.Header{
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

// selfSigned writes a P-256 certificate for 127.0.0.1 and its key into a
// new directory, for a TLS run.
func selfSigned() (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mcbench"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "mcbench-tls")
	if err != nil {
		return "", err
	}
	err = errors.Join(os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600),
		os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600))
	return dir, err
}
