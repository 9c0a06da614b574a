package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marketcast/marketcast/bench/wsclient"
	"github.com/marketcast/marketcast/engine/auth"
	"github.com/marketcast/marketcast/engine/natsbroker/natstest"
	"github.com/marketcast/marketcast/internal/testlane"
	"github.com/marketcast/marketcast/internal/testwait"
	"github.com/marketcast/marketcast/protocol"
)

const clusterSecret = "cluster-test-secret-0123456789"

// clusterNode is one marketcast binary of a test cluster.
type clusterNode struct {
	*binaryProc
}

func (n *clusterNode) post(t *testing.T, body string) map[string]any {
	t.Helper()
	tok, _ := auth.Issue([]byte(clusterSecret), "backend", []string{protocol.PermPublish}, time.Hour)
	req, _ := http.NewRequest("POST", "http://"+n.addr+"/api/v1/publish", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&v)
	if resp.StatusCode != 200 {
		t.Fatalf("publish on %s: %d %v", n.addr, resp.StatusCode, v)
	}
	return v
}

// login connects to the node as user and returns the client.
func (n *clusterNode) login(t *testing.T, user string) *wsclient.Client {
	t.Helper()
	tok, _ := auth.Issue([]byte(clusterSecret), user, []string{protocol.PermReadMarketData}, time.Hour)
	c, _, err := wsclient.Dial("ws://"+n.addr+"/ws?token="+tok, wsclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if m, err := c.Next(wait); err != nil || m.DataMap()["status"] != "success" {
		t.Fatalf("login on %s: %v %v", n.addr, err, m)
	}
	return c
}

func subscribeTo(t *testing.T, c *wsclient.Client, req map[string]any) map[string]any {
	t.Helper()
	req["type"] = "subscribe"
	if err := c.Send(req); err != nil {
		t.Fatal(err)
	}
	m, err := c.WaitType(wait, "subscribe_response")
	if err != nil {
		t.Fatal(err)
	}
	return m.DataMap()
}

func nextOf(t *testing.T, c *wsclient.Client, typ string) *wsclient.Message {
	t.Helper()
	m, err := c.WaitType(wait, typ)
	if err != nil {
		t.Fatalf("waiting for %s: %v", typ, err)
	}
	return m
}

// TestClusterOfThreeBinaries runs three real marketcast processes on one
// NATS server (embedded in the test, a real nats-server): market data and
// private messages published through any node reach the clients of every
// node; a node killed with -9 loses its clients, who resume on another node
// with nothing lost; NATS restarting with its store keeps the run going.
func TestClusterOfThreeBinaries(t *testing.T) {
	testlane.MultiProcess(t)
	ns := natstest.Start(t, "")
	var nodes []*clusterNode
	for i := range 3 {
		nodes = append(nodes, &clusterNode{startBinary(t, freePort(t), "MARKETCAST_NATS_URL="+ns.URL(),
			"MARKETCAST_DEV_MODE=false", "MARKETCAST_JWT_SECRET="+clusterSecret, fmt.Sprintf("MARKETCAST_NODE_NAME=n%d", i))})
	}
	a, b, c := nodes[0], nodes[1], nodes[2]
	testwait.For(t, "node A to say it joined the cluster", func() bool { return strings.Contains(a.logs.String(), "node joined the cluster") })

	// A symbol published on one node can be subscribed on all.
	b.post(t, `{"channel":"tick","symbol":"X.test1","data":{"last_price":"1.0"}}`)
	testwait.For(t, "node A to learn the symbol published on node B", func() bool { return knowsSymbol(a.addr, "X.test1") })
	ticker := a.login(t, "watcher")
	subscribeTo(t, ticker, map[string]any{"channel": "market_data", "symbols": []string{"X.test1"}})
	if m := nextOf(t, ticker, "market_data"); !m.Snapshot || m.DataMap()["last_price"] != "1.0" {
		t.Fatalf("snapshot on A: %s", m.Raw)
	}
	c.post(t, `{"channel":"tick","symbol":"X.test1","data":{"last_price":"2.0"}}`)
	if m := nextOf(t, ticker, "market_data"); m.DataMap()["last_price"] != "2.0" {
		t.Fatalf("live tick on A published on C: %s", m.Raw)
	}

	// Private: published on B, delivered on A; broadcast from C on A and B.
	onA := a.login(t, "u1")
	first := subscribeTo(t, onA, map[string]any{"channel": "orders"})
	subscribeTo(t, onA, map[string]any{"channel": "notifications"})
	onB := b.login(t, "u2")
	subscribeTo(t, onB, map[string]any{"channel": "notifications"})
	var epoch string
	for i := 1; i <= 3; i++ {
		res := b.post(t, fmt.Sprintf(`{"channel":"orders","user_id":"u1","data":{"n":%d}}`, i))
		epoch = res["results"].([]any)[0].(map[string]any)["epoch"].(string)
	}
	for want := uint64(1); want <= 3; want++ {
		if m := nextOf(t, onA, "order_update"); m.Sequence != want {
			t.Fatalf("order on A: %s; want sequence %d", m.Raw, want)
		}
	}
	if first["sequence"] != 0.0 {
		t.Fatalf("first answer %v", first)
	}
	c.post(t, `{"channel":"notifications","data":{"title":"maintenance"}}`)
	for _, cl := range []*wsclient.Client{onA, onB} {
		if m := nextOf(t, cl, "system_notice"); !strings.Contains(string(m.Raw), `"broadcast":true`) {
			t.Fatalf("broadcast: %s", m.Raw)
		}
	}

	// Node A dies with -9; its client resumes on B with nothing lost.
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	_ = a.cmd.Wait()
	for i := 4; i <= 6; i++ {
		c.post(t, fmt.Sprintf(`{"channel":"orders","user_id":"u1","data":{"n":%d}}`, i))
	}
	again := b.login(t, "u1")
	ans := subscribeTo(t, again, map[string]any{"channel": "orders", "since": 3, "epoch": epoch})
	if ans["recovered"] != true || ans["epoch"] != epoch || ans["sequence"] != 6.0 {
		t.Fatalf("resume on B after A died: %v", ans)
	}
	for want := uint64(4); want <= 6; want++ {
		if m := nextOf(t, again, "order_update"); m.Sequence != want {
			t.Fatalf("replay on B: %s; want %d", m.Raw, want)
		}
	}

	// NATS restarts with its store: the client stays connected and the run
	// goes on in the same epoch.
	ns.Restart(false)
	var res map[string]any
	tok, _ := auth.Issue([]byte(clusterSecret), "backend", []string{protocol.PermPublish}, time.Hour)
	testwait.Check(t, func() error { // 503 until the node is connected again
		req, _ := http.NewRequest("POST", "http://"+c.addr+"/api/v1/publish", strings.NewReader(`{"channel":"orders","user_id":"u1","data":{"n":7}}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		res = nil
		_ = json.NewDecoder(resp.Body).Decode(&res)
		switch resp.StatusCode {
		case 200:
			return nil
		case 503:
			return fmt.Errorf("publish answers 503 after the NATS restart: %v", res)
		}
		t.Fatalf("publish while NATS restarts: %d %v; want 503 until it is back", resp.StatusCode, res)
		return nil
	})
	r := res["results"].([]any)[0].(map[string]any)
	if r["sequence"] != 7.0 || r["epoch"] != epoch {
		t.Fatalf("after the NATS restart: %v; want sequence 7 of %s", r, epoch)
	}
	if m := nextOf(t, again, "order_update"); m.Sequence != 7 {
		t.Fatalf("live after the NATS restart: %s", m.Raw)
	}
}

// TestSingleNodeKeepsHistoryAcrossRestarts: with a data directory, a node
// runs an embedded NATS server with a JetStream store there, so a restart
// keeps every private run: a client resumes across it with nothing lost.
func TestSingleNodeKeepsHistoryAcrossRestarts(t *testing.T) {
	testlane.MultiProcess(t)
	dir := t.TempDir()
	addr := freePort(t)
	env := []string{"MARKETCAST_DATA_DIR=" + dir, "MARKETCAST_DEV_MODE=false", "MARKETCAST_JWT_SECRET=" + clusterSecret, "MARKETCAST_FEED=sim"}
	n := &clusterNode{startBinary(t, addr, env...)}
	var epoch string
	for i := 1; i <= 3; i++ {
		res := n.post(t, fmt.Sprintf(`{"channel":"orders","user_id":"u1","data":{"n":%d}}`, i))
		epoch = res["results"].([]any)[0].(map[string]any)["epoch"].(string)
	}
	n.stop(t)

	n = &clusterNode{startBinary(t, addr, env...)}
	defer n.stop(t)
	res := n.post(t, `{"channel":"orders","user_id":"u1","data":{"n":4}}`)
	if r := res["results"].([]any)[0].(map[string]any); r["sequence"] != 4.0 || r["epoch"] != epoch {
		t.Fatalf("after the restart: %v; want sequence 4 of %s", r, epoch)
	}
	c := n.login(t, "u1")
	ans := subscribeTo(t, c, map[string]any{"channel": "orders", "since": 1, "epoch": epoch})
	if ans["recovered"] != true {
		t.Fatalf("resume across the restart: %v", ans)
	}
	for want := uint64(2); want <= 4; want++ {
		if m := nextOf(t, c, "order_update"); m.Sequence != want {
			t.Fatalf("replay %s; want %d", m.Raw, want)
		}
	}
}
