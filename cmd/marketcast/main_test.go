package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marketcast/marketcast/bench/wsclient"
	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/engine/auth"
	"github.com/marketcast/marketcast/feed/kline"
	"github.com/marketcast/marketcast/internal/freeport"
	"github.com/marketcast/marketcast/internal/lockedbuf"
	"github.com/marketcast/marketcast/internal/testwait"
	"github.com/marketcast/marketcast/protocol"
)

// wait bounds one step of a test (a message, an exit): a hang guard,
// generous for a busy machine, never a measurement.
const wait = testwait.Deadline

var (
	decimal  = regexp.MustCompile(`^-?\d+(\.\d+)?$`)
	wireTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)
)

// startServer runs Serve with the embedded default config on a free
// loopback port, the way `make run` does, and stops it at cleanup.
func startServer(t *testing.T) (string, *configs.Config) {
	t.Helper()
	cfg, err := configs.Load("", func(k string) string {
		if k == "MARKETCAST_LISTEN" {
			return "127.0.0.1:0"
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Feed.Sim.Rate = 20             // livelier than the default, so a test sees many ticks quickly
	cfg.Feed.Sim.Backfill.Duration = 0 // no simulated past: books and ticks are live from the start
	return serveConfig(t, cfg), cfg
}

func login(t *testing.T, addr string, cfg *configs.Config, deflate bool) *wsclient.Client {
	t.Helper()
	tok, err := auth.Issue([]byte(cfg.Auth.JWTSecret), "1", []string{protocol.PermReadMarketData}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := wsclient.Dial("ws://"+addr+"/ws", wsclient.Options{Deflate: deflate})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	// The seed's client shape, verbatim.
	if err := c.Send(map[string]any{"type": "auth", "token": tok}); err != nil {
		t.Fatal(err)
	}
	m, err := c.Next(wait)
	if err != nil || m.Type != "auth_response" || m.DataMap()["status"] != "success" {
		t.Fatalf("auth: %v %v", err, m)
	}
	return c
}

// TestSimulatorEndToEnd subscribes to the seed's own examples and checks the
// shapes of what the built-in feed produces.
func TestSimulatorEndToEnd(t *testing.T) {
	addr, cfg := startServer(t)
	for _, deflate := range []bool{false, true} {
		t.Run(fmt.Sprintf("deflate=%v", deflate), func(t *testing.T) {
			c := login(t, addr, cfg, deflate)
			_ = c.Send(map[string]any{"type": "subscribe", "channel": "market_data",
				"symbols": []string{"SHFE.rb2405", "SHFE.hc2405"}, "fields": []string{"last_price", "volume", "bid", "ask"}})
			_ = c.Send(map[string]any{"type": "subscribe", "channel": "depth", "symbols": []string{"SHFE.rb2405"}})
			_ = c.Send(map[string]any{"type": "subscribe", "channel": "kline_1m", "symbols": []string{"SHFE.rb2405"}})

			lastSeq := map[string]uint64{}
			var ticks, books, bars, live int
			deadline := time.Now().Add(wait)
			for (ticks < 6 || books < 2 || bars < 2 || live < 4) && time.Now().Before(deadline) {
				m, err := c.Next(wait)
				if err != nil {
					t.Fatal(err)
				}
				if strings.HasSuffix(m.Type, "_response") {
					continue
				}
				if !wireTime.MatchString(m.Timestamp) {
					t.Fatalf("timestamp %q", m.Timestamp)
				}
				key := m.Channel + ":" + m.Symbol
				if m.Sequence <= lastSeq[key] {
					t.Fatalf("%s: sequence %d after %d", key, m.Sequence, lastSeq[key])
				}
				lastSeq[key] = m.Sequence
				if !m.Snapshot {
					live++
				}
				d := m.DataMap()
				switch m.Type {
				case "market_data":
					ticks++
					if len(d) != 4 {
						t.Fatalf("projected tick has %d keys: %s", len(d), m.Raw)
					}
					for _, k := range []string{"last_price", "volume", "bid_price", "ask_price"} {
						if s, ok := d[k].(string); !ok || !decimal.MatchString(s) {
							t.Fatalf("%s = %v: want a decimal string", k, d[k])
						}
					}
					if bid, ask := d["bid_price"].(string), d["ask_price"].(string); bid >= ask && len(bid) == len(ask) {
						t.Fatalf("crossed quote bid %s ask %s", bid, ask)
					}
				case "depth":
					books++
					if d["levels"].(float64) != 5 || len(d["bids"].([]any)) != 5 || len(d["asks"].([]any)) != 5 {
						t.Fatalf("book: %s", m.Raw)
					}
				case "kline":
					bars++
					for _, k := range []string{"open", "high", "low", "close", "volume", "turnover"} {
						if !decimal.MatchString(d[k].(string)) {
							t.Fatalf("bar %s = %v", k, d[k])
						}
					}
					st, _ := time.Parse(time.RFC3339, d["start_time"].(string))
					en, _ := time.Parse(time.RFC3339, d["end_time"].(string))
					if en.Sub(st) != time.Minute || !st.Equal(kline.BarStart(st, time.Minute)) {
						t.Fatalf("bar window %v..%v", st, en)
					}
				default:
					t.Fatalf("unexpected %s", m.Raw)
				}
			}
			if ticks < 6 || books < 2 || bars < 2 || live < 4 {
				t.Fatalf("after %v: %d ticks, %d books, %d bars (%d live)", wait, ticks, books, bars, live)
			}
		})
	}
}

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "marketcast-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "marketcast")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort is a loopback address for a binary to listen on (see
// internal/freeport: not one an outgoing connection can take meanwhile).
func freePort(t *testing.T) string {
	t.Helper()
	addr, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// TestBinarySIGTERM runs the real binary, connects a client, sends SIGTERM
// and expects close 1001 and exit status 0.
func TestBinarySIGTERM(t *testing.T) {
	addr := freePort(t)
	p := startBinary(t, addr, "MARKETCAST_JWT_SECRET=sigterm-test-secret-0123456789", "MARKETCAST_DEV_MODE=false", "MARKETCAST_FEED=sim")
	cmd, logs := p.cmd, p.logs
	if strings.Contains(logs.String(), "DEVELOPMENT MODE") || strings.Contains(logs.String(), "token=") {
		t.Fatalf("development mode announced, or a token printed, outside development mode:\n%s", logs.String())
	}
	cfg := &configs.Config{}
	cfg.Auth.JWTSecret = "sigterm-test-secret-0123456789"
	c := login(t, addr, cfg, false)

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, err := c.WaitClose(wait)
	if err != nil || code != protocol.CloseGoingAway {
		t.Fatalf("close %d %v; want 1001", code, err)
	}
	errc := make(chan error, 1)
	go func() { errc <- p.wait() }()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
	case <-time.After(wait):
		t.Fatal("did not exit after SIGTERM")
	}
	t.Logf("drained and exited in %v", time.Since(start))
}

func TestBinaryAnnouncesDevSecretAndToken(t *testing.T) {
	addr := freePort(t)
	p := startBinary(t, addr)
	var token string
	testwait.For(t, "the development token in the log", func() bool {
		_, rest, ok := strings.Cut(p.logs.String(), " token=")
		token, _, _ = strings.Cut(rest, "\n")
		token, _, _ = strings.Cut(token, " ")
		return ok
	})
	if !strings.Contains(p.logs.String(), "DEVELOPMENT MODE") {
		t.Fatalf("development mode not announced:\n%s", p.logs.String())
	}
	c, _, err := wsclient.Dial("ws://"+addr+"/ws?token="+token, wsclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if m, err := c.Next(wait); err != nil || m.DataMap()["status"] != "success" {
		t.Fatalf("printed token does not authenticate: %v %v", err, m)
	}
}

func TestTokenCommand(t *testing.T) {
	out, err := exec.Command(binary, "token", "-user", "42", "-permissions", "read:market_data,publish", "-ttl", "2h").Output()
	if err != nil {
		t.Fatal(err)
	}
	id, err := auth.NewVerifier([]byte(configs.DevSecret)).Verify(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	if id.UserID != "42" || !id.Has("publish") || time.Until(id.ExpiresAt) < 119*time.Minute {
		t.Fatalf("token identity %+v", id)
	}
	f := func(want string, args ...string) {
		t.Helper()
		out, err := exec.Command(binary, args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), want) {
			t.Fatalf("%v: got %v %q; want failure mentioning %q", args, err, out, want)
		}
	}
	f("-user is required", "token")
	// A real secret with development mode on (the embedded default) is
	// refused: /dev/token would sign real tokens for anyone.
	refused := exec.Command(binary)
	refused.Env = append(os.Environ(), "MARKETCAST_LISTEN="+freePort(t), "MARKETCAST_JWT_SECRET=a-real-secret-0123456789abcdef")
	if out, err := refused.CombinedOutput(); err == nil || !strings.Contains(string(out), "dev_mode: development mode signs tokens") {
		t.Fatalf("a real secret in development mode: %v %s; want a refusal", err, out)
	}
	f("-ttl must be > 0", "token", "-user", "1", "-ttl", "-1h")
	f(`unknown command "serv"`, "serv")
	f("missing.yaml", "-config", "missing.yaml")
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(bad, []byte("limits:\n  max_subscriptions: 0\n"), 0o600)
	f("limits.max_subscriptions: want > 0, got 0", "-config", bad)
}

// binaryProc is the real server binary running on addr.
type binaryProc struct {
	cmd    *exec.Cmd
	logs   *lockedbuf.Buffer
	addr   string
	copied chan struct{} // closed once the log is read to its end (launchBinary)
}

// wait waits for the process to exit, its log read to the last line
// first: cmd.Wait closes the log's pipe, losing what was not yet read.
func (p *binaryProc) wait() error {
	if p.copied != nil { // nil: cmd.Stderr is the log itself, which Wait waits for
		<-p.copied
	}
	return p.cmd.Wait()
}

// startBinary runs the binary on addr with extra environment and waits
// until it is ready.
func startBinary(t *testing.T, addr string, env ...string) *binaryProc {
	t.Helper()
	p := launchBinary(t, addr, env...)
	if err := testwait.Poll(testwait.Deadline, func() error {
		if code := readyz(addr); code != 200 {
			return fmt.Errorf("%s/readyz answers %d", addr, code)
		}
		return nil
	}); err != nil {
		t.Fatalf("the server never became ready: %v\n%s", err, p.logs.String())
	}
	return p
}

// launchBinary runs the binary on addr with extra environment and waits
// until it listens (ready or not).
func launchBinary(t *testing.T, addr string, env ...string) *binaryProc {
	t.Helper()
	return launchBinaryArgs(t, addr, nil, env...)
}

// launchBinaryArgs is launchBinary with command-line arguments.
func launchBinaryArgs(t *testing.T, addr string, args []string, env ...string) *binaryProc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), append([]string{"MARKETCAST_LISTEN=" + addr}, env...)...)
	logs := &lockedbuf.Buffer{}
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &binaryProc{cmd: cmd, logs: logs, addr: addr, copied: make(chan struct{})}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = p.wait() })
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		logs.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "marketcast listening") {
			break
		}
	}
	go func() { // the scanner may hold lines already read: keep using it
		defer close(p.copied)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
		}
	}()
	return p
}

// waitReady polls the server at addr until /readyz answers 200: a server
// is used only once it says it is ready.
func waitReady(t *testing.T, addr string) {
	t.Helper()
	testwait.Check(t, func() error {
		if code := readyz(addr); code != 200 {
			return fmt.Errorf("%s/readyz answers %d", addr, code)
		}
		return nil
	})
}

// stop sends SIGTERM and waits for a clean exit.
func (p *binaryProc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.logs.String())
	}
}

// publishOrders posts orders to user through the binary's publish API.
func publishOrders(t *testing.T, addr, secret, user string, ids ...string) {
	t.Helper()
	tok, _ := auth.Issue([]byte(secret), "backend", []string{protocol.PermPublish}, time.Hour)
	for _, id := range ids {
		req, _ := http.NewRequest("POST", "http://"+addr+"/api/v1/publish",
			strings.NewReader(fmt.Sprintf(`{"channel":"orders","user_id":%q,"data":{"order_id":%q}}`, user, id)))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("publish: %d", resp.StatusCode)
		}
	}
}

// TestBinaryRestartIsNeverRecovered runs the real binary, lets a client see
// two orders, restarts the binary (history is in memory), publishes three
// orders in the new run, so it has passed the client's since, then resumes:
// recovered must be false, and the answer names the new epoch. A resume
// without epoch is not recovered either (issue 17 item 11).
func TestBinaryRestartIsNeverRecovered(t *testing.T) {
	const secret = "restart-test-secret-0123456789"
	addr := freePort(t)
	env := []string{"MARKETCAST_JWT_SECRET=" + secret, "MARKETCAST_DEV_MODE=false", "MARKETCAST_FEED=sim"}
	subscribe := func(req map[string]any) (*wsclient.Client, map[string]any) {
		t.Helper()
		tok, _ := auth.Issue([]byte(secret), "u1", nil, time.Hour)
		c, _, err := wsclient.Dial("ws://"+addr+"/ws?token="+tok, wsclient.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		if m, err := c.Next(wait); err != nil || m.Type != "auth_response" {
			t.Fatalf("auth: %v %v", err, m)
		}
		req["type"], req["channel"] = "subscribe", "orders"
		if err := c.Send(req); err != nil {
			t.Fatal(err)
		}
		m, err := c.WaitType(wait, "subscribe_response")
		if err != nil {
			t.Fatal(err)
		}
		return c, m.DataMap()
	}

	srv := startBinary(t, addr, env...)
	c, _ := subscribe(map[string]any{})
	publishOrders(t, addr, secret, "u1", "A1", "A2")
	var seen struct {
		seq   uint64
		epoch string
	}
	for seen.seq < 2 {
		m, err := c.WaitType(wait, "order_update")
		if err != nil {
			t.Fatal(err)
		}
		var env struct{ Epoch string }
		_ = json.Unmarshal(m.Raw, &env)
		seen.seq, seen.epoch = m.Sequence, env.Epoch
	}
	c.Close()
	srv.stop(t)

	srv = startBinary(t, addr, env...)
	defer srv.stop(t)
	publishOrders(t, addr, secret, "u1", "B1", "B2", "B3")
	_, a := subscribe(map[string]any{"since": seen.seq, "epoch": seen.epoch})
	if a["recovered"] != false || a["epoch"] == seen.epoch || a["epoch"] == "" || a["sequence"] != 3.0 {
		t.Fatalf("resume after a restart: %v; want recovered false in a new epoch at sequence 3", a)
	}
	// Without epoch the new run at 3, past since 2, would pass for the old
	// one: the server cannot prove nothing is missing, so it says so.
	_, legacy := subscribe(map[string]any{"since": seen.seq})
	if legacy["recovered"] != false || legacy["sequence"] != 3.0 {
		t.Fatalf("legacy resume without epoch after a restart: %v; want recovered false", legacy)
	}
}
