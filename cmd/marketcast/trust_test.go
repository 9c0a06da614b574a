package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketcast/marketcast/engine/auth"
	"github.com/marketcast/marketcast/engine/natsbroker/natstest"
	"github.com/marketcast/marketcast/feed/natsfeed"
	"github.com/marketcast/marketcast/feed/replay"
	"github.com/marketcast/marketcast/internal/testlane"
	"github.com/marketcast/marketcast/internal/testwait"
	"github.com/marketcast/marketcast/protocol"
)

// readiness is what /readyz answers: its status and text.
func readiness(addr string) (int, string) {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// tryPost publishes body through the node's API and returns the status
// and answer.
func tryPost(addr, body string) (int, map[string]any) {
	tok, _ := auth.Issue([]byte(clusterSecret), "backend", []string{protocol.PermPublish}, time.Hour)
	req, _ := http.NewRequest("POST", "http://"+addr+"/api/v1/publish", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, map[string]any{"error": err.Error()}
	}
	defer resp.Body.Close()
	var v map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, v
}

// TestNodeFollowsNATS: a node starts while its NATS is down: it serves
// /healthz, says why it is not ready ("NATS unreachable at <url>", also in
// its log), refuses publishes (503), and is ready on its own once NATS is
// there. When NATS then freezes, publishes fail within the bound (503 not
// stored, or 504 outcome unknown, never a hang) and /readyz goes
// not-ready; after the thaw it is ready again by itself (issue 16 items 6
// and 7).
func TestNodeFollowsNATS(t *testing.T) {
	testlane.MultiProcess(t)
	ns := natstest.New(t, "")
	proxy := natstest.NewProxy(t, ns.Addr())
	addr := freePort(t)
	node := launchBinary(t, addr, "MARKETCAST_NATS_URL="+proxy.URL(), "MARKETCAST_DEV_MODE=false",
		"MARKETCAST_JWT_SECRET="+clusterSecret, "MARKETCAST_NODE_NAME=early")
	if code, _ := http.Get("http://" + addr + "/healthz"); code == nil || code.StatusCode != 200 {
		t.Fatalf("healthz while NATS is down: %v", code)
	}
	code, why := readiness(addr)
	if code != 503 || !strings.Contains(why, "NATS unreachable at "+proxy.URL()) {
		t.Fatalf("readyz while NATS is down: %d %q; want 503 naming %s", code, why, proxy.URL())
	}
	if !strings.Contains(node.logs.String(), "NATS unreachable at "+proxy.URL()) || strings.Contains(node.logs.String(), "outbound buffer") {
		t.Fatalf("log while NATS is down:\n%s", node.logs.String())
	}
	if status, v := tryPost(addr, `{"channel":"orders","user_id":"u1","data":{"n":0}}`); status != 503 {
		t.Fatalf("publish while NATS is down: %d %v; want 503", status, v)
	}
	ns.Start()
	waitReady(t, addr)
	if status, v := tryPost(addr, `{"channel":"orders","user_id":"u1","data":{"n":1}}`); status != 200 {
		t.Fatalf("publish once NATS is there: %d %v", status, v)
	}

	proxy.Freeze()
	for i := 2; i <= 4; i++ {
		status, v := tryPost(addr, fmt.Sprintf(`{"channel":"orders","user_id":"u1","data":{"n":%d}}`, i))
		if status != 503 && status != 504 {
			t.Fatalf("publish to a frozen NATS: %d %v; want 503 or 504", status, v)
		}
	}
	testwait.Check(t, func() error { // still frozen: not ready
		if code, why := readiness(addr); code != 503 || !strings.Contains(why, "cannot publish") {
			return fmt.Errorf("readyz with NATS frozen: %d %q", code, why)
		}
		return nil
	})
	proxy.Thaw()
	waitReady(t, addr)
	if status, v := tryPost(addr, `{"channel":"orders","user_id":"u1","data":{"n":5}}`); status != 200 {
		t.Fatalf("publish after the thaw: %d %v", status, v)
	}
}

// natsUser connects to url as user with password (none: a stranger).
func natsUser(t *testing.T, url, user, password string) (*nats.Conn, chan error) {
	t.Helper()
	errs := make(chan error, 16)
	opts := []nats.Option{nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case errs <- err:
		default:
		}
	})}
	if user != "" {
		opts = append(opts, nats.UserInfo(user, password))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, errs
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

// TestEmbeddedNATSNeedsAuthentication: the NATS server a node embeds (and
// `marketcast nats`) refuses a listen address that is not loopback
// without users, refuses strangers, and gives each user least privilege: a
// collector publishes market data only, a recorder reads market data only
// (issue 16 item 12; security-r2 finding 2).
func TestEmbeddedNATSNeedsAuthentication(t *testing.T) {
	testlane.MultiProcess(t)
	// Without users, a non-loopback address is refused.
	out, err := exec.Command(binary, "nats", "-listen", "0.0.0.0:"+strings.Split(freePort(t), ":")[1]).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "cluster.embedded.listen") {
		t.Fatalf("marketcast nats on 0.0.0.0 without users: %v %s; want a refusal", err, out)
	}
	natsAddr := freePort(t)
	addr := freePort(t)
	cfg := filepath.Join(t.TempDir(), "embedded.yaml")
	if err := os.WriteFile(cfg, []byte("cluster:\n  embedded:\n    listen: \""+natsAddr+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	node := &clusterNode{launchBinaryArgs(t, addr, []string{"-config", cfg}, "MARKETCAST_DATA_DIR="+t.TempDir(), "MARKETCAST_FEED=nats", "MARKETCAST_DEV_MODE=false",
		"MARKETCAST_JWT_SECRET="+clusterSecret, "MARKETCAST_CLUSTER_EMBEDDED_COLLECTOR_PASSWORD=collector-secret",
		"MARKETCAST_CLUSTER_EMBEDDED_RECORDER_PASSWORD=recorder-secret", "MARKETCAST_CLUSTER_EMBEDDED_NODE_PASSWORD=node-secret")}
	waitReady(t, addr)
	url := "nats://" + natsAddr
	if nc, _ := natsUser(t, url, "", ""); nc != nil {
		t.Fatal("a stranger connected to the embedded NATS server")
	}
	if nc, _ := natsUser(t, url, "collector", "wrong"); nc != nil {
		t.Fatal("a wrong password was accepted")
	}
	node.post(t, `{"channel":"orders","user_id":"victim","data":{"order_id":"REAL-1"}}`)

	// The collector publishes market data, and nothing else.
	collector, collectorErrs := natsUser(t, url, "collector", "collector-secret")
	if collector == nil {
		t.Fatal("the collector could not connect")
	}
	if err := collector.Publish("md.tick.X.auth1", []byte(`{"last_price":"1.5"}`)); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "the node to learn the collector's symbol", func() bool { return knowsSymbol(addr, "X.auth1") })
	_ = collector.Publish("mc.priv.orders.victim", []byte(`{"order_id":"FORGED"}`))
	_ = collector.Publish("$JS.API.STREAM.DELETE.MC_PRIV", nil)
	_, _ = collector.Subscribe("mc.live.>", func(*nats.Msg) {})
	_ = collector.Flush()
	testwait.Check(t, func() error {
		if len(collectorErrs) < 3 {
			return fmt.Errorf("%d permission violations reported to the collector; want 3 (node log:\n%s)", len(collectorErrs), node.logs.String())
		}
		return nil
	})
	for range 3 {
		if err := <-collectorErrs; !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Fatalf("collector error %v; want a permissions violation", err)
		}
	}
	// The recorder reads market data, and publishes nothing.
	recorder, recorderErrs := natsUser(t, url, "recorder", "recorder-secret")
	if recorder == nil {
		t.Fatal("the recorder could not connect")
	}
	got := make(chan string, 1)
	if _, err := recorder.Subscribe("md.>", func(m *nats.Msg) { got <- string(m.Data) }); err != nil {
		t.Fatal(err)
	}
	_ = recorder.Flush()
	_ = collector.Publish("md.tick.X.auth1", []byte(`{"last_price":"1.6"}`))
	select {
	case m := <-got:
		if !strings.Contains(m, "1.6") {
			t.Fatalf("recorder got %s", m)
		}
	case <-time.After(testwait.Deadline):
		t.Fatal("the recorder got no market data")
	}
	_ = recorder.Publish("md.tick.X.auth1", []byte(`{"last_price":"9"}`))
	_ = recorder.Flush()
	select {
	case err := <-recorderErrs:
		if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Fatalf("recorder error %v", err)
		}
	case <-time.After(testwait.Deadline):
		t.Fatal("a recorder's publish was not refused")
	}
	// The stream and the victim's orders are untouched; the node user
	// sees them.
	nodeUser, _ := natsUser(t, url, "node", "node-secret")
	js, _ := jetstream.New(nodeUser)
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Deadline)
	defer cancel()
	st, err := js.Stream(ctx, "MC_PRIV")
	if err != nil {
		t.Fatalf("MC_PRIV after the collector's delete: %v", err)
	}
	info, _ := st.Info(ctx, jetstream.WithSubjectFilter("mc.priv.orders.victim"))
	if n := info.State.Subjects["mc.priv.orders.victim"]; n != 1 {
		t.Fatalf("victim's orders: %d messages; want the 1 real one", n)
	}
}

// TestReplayAndRecordStayOnMarketData: `marketcast feed -replay` publishes
// only the market subjects of a recording (a JetStream request or a
// private message in it is skipped), and `marketcast record` refuses to
// record beyond md.> unless told (issue 16 item 14; security-r2 finding 3).
func TestReplayAndRecordStayOnMarketData(t *testing.T) {
	testlane.MultiProcess(t)
	ns := natstest.Start(t, "")
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Deadline)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "MC_PRIV", Subjects: []string{"mc.priv.>"}}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "evil.mcr.gz")
	w, err := replay.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, e := range []struct{ subject, data string }{
		{"md.tick.X.replay1", `{"last_price":"1.0"}`},
		{"$JS.API.STREAM.DELETE.MC_PRIV", ``},
		{"mc.priv.orders.victim", `{"order_id":"FORGED"}`},
		{"md.tick.X.replay1", `{"last_price":"2.0"}`},
	} {
		if err := w.Write(now, e.subject, []byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	tap := tapBus(t, ns.URL())
	runSubcommand(t, ns.URL(), "feed", "-replay", file, "-speed", "0").wait(t)
	testwait.For(t, "both ticks on the bus", func() bool { return tap.len() >= 2 })
	if _, err := js.Stream(ctx, "MC_PRIV"); err != nil {
		t.Fatalf("MC_PRIV after replaying a recording that deletes it: %v", err)
	}
	st, _ := js.Stream(ctx, "MC_PRIV")
	if info, _ := st.Info(ctx); info.State.Msgs != 0 {
		t.Fatalf("MC_PRIV holds %d messages after the replay; want 0", info.State.Msgs)
	}

	out, err := exec.Command(binary, "record", "-out", filepath.Join(t.TempDir(), "r.gz"), "-subjects", ">").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "-allow-private") {
		t.Fatalf("record -subjects '>': %v %s; want a refusal naming -allow-private", err, out)
	}
}

// TestMarketStreamsSurviveNATSRestart: the last values are kept in files,
// so after NATS restarts a node started afterwards knows every symbol at
// once; after NATS comes back without its store, the nodes make the
// last-value and bar streams again by themselves (issue 16 item 8).
func TestMarketStreamsSurviveNATSRestart(t *testing.T) {
	testlane.MultiProcess(t)
	ns := natstest.Start(t, "")
	env := []string{"MARKETCAST_NATS_URL=" + ns.URL(), "MARKETCAST_DEV_MODE=false", "MARKETCAST_JWT_SECRET=" + clusterSecret}
	a := startBinary(t, freePort(t), append(env, "MARKETCAST_NODE_NAME=a")...)
	nc, err := nats.Connect(ns.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	streamInfo := func(name string) (*jetstream.StreamInfo, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, name)
		if err != nil {
			return nil, err
		}
		return st.Info(ctx)
	}
	testwait.Check(t, func() error {
		for _, name := range []string{natsfeed.LastStream, natsfeed.BarStream} {
			info, err := streamInfo(name)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if info.Config.Storage != jetstream.FileStorage {
				return fmt.Errorf("%s is stored in %v; want files", name, info.Config.Storage)
			}
		}
		return nil
	})
	if err := nc.Publish("md.tick.X.keep1", []byte(`{"last_price":"3.0"}`)); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "node a to learn the symbol", func() bool { return knowsSymbol(a.addr, "X.keep1") })

	ns.Restart(false) // same store
	b := startBinary(t, freePort(t), append(env, "MARKETCAST_NODE_NAME=b")...)
	testwait.For(t, "node b, started after the restart, to know the symbol", func() bool { return knowsSymbol(b.addr, "X.keep1") })

	ns.Restart(true) // the store is lost
	testwait.Check(t, func() error {
		for _, name := range []string{natsfeed.LastStream, natsfeed.BarStream, "MC_PRIV"} {
			if _, err := streamInfo(name); err != nil {
				if errors.Is(err, jetstream.ErrStreamNotFound) {
					return fmt.Errorf("%s not made again yet", name)
				}
				return err
			}
		}
		return nil
	})
}
