package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketcast/marketcast/bench/wsclient"
	"github.com/marketcast/marketcast/engine/auth"
	"github.com/marketcast/marketcast/engine/natsbroker/natstest"
	"github.com/marketcast/marketcast/internal/freeport"
	"github.com/marketcast/marketcast/internal/lockedbuf"
	"github.com/marketcast/marketcast/internal/natsperm"
	"github.com/marketcast/marketcast/internal/testwait"
	"github.com/marketcast/marketcast/protocol"
)

const (
	secret          = "chaos-test-secret-0123456789"
	nodePassword    = "chaos-node-password"
	auditor         = "auditor"
	auditorPassword = "chaos-auditor-password"
)

// binary is the marketcast binary TestMain builds.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "marketcast-chaos-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "marketcast")
	if out, err := exec.Command("go", "build", "-o", binary, "../../cmd/marketcast").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	natstest.RemoveBinaries()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// freePort is an address a node can listen on now and again after it is
// killed and restarted (internal/freeport: below the ephemeral range).
func freePort(t testing.TB) string {
	t.Helper()
	addr, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// node is one marketcast binary of the run.
type node struct {
	t       testing.TB
	name    string
	addr    string
	env     []string
	cmd     *exec.Cmd
	logs    *lockedbuf.Buffer
	mu      sync.Mutex
	up      bool // running (stopped or not)
	stopped bool
}

func startNode(t testing.TB, name, natsURLs string, replicas int) *node {
	t.Helper()
	n := &node{t: t, name: name, addr: freePort(t), logs: &lockedbuf.Buffer{}}
	n.env = append(os.Environ(), "MARKETCAST_LISTEN="+n.addr, "MARKETCAST_NATS_URL="+natsURLs,
		"MARKETCAST_NATS_USER="+natsperm.Node, "MARKETCAST_NATS_PASSWORD="+nodePassword,
		"MARKETCAST_DEV_MODE=false", "MARKETCAST_JWT_SECRET="+secret, "MARKETCAST_NODE_NAME="+name,
		"MARKETCAST_CLUSTER_STREAM_REPLICAS="+strconv.Itoa(replicas), "MARKETCAST_CLUSTER_HEAD_CHECK=2s",
		"MARKETCAST_WEB=false", "MARKETCAST_LOG_LEVEL=warn")
	n.start()
	t.Cleanup(n.kill)
	return n
}

func (n *node) start() {
	n.t.Helper()
	cmd := exec.Command(binary)
	cmd.Env = n.env
	cmd.Stdout, cmd.Stderr = n.logs, n.logs
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.mu.Lock()
	n.cmd, n.up, n.stopped = cmd, true, false
	n.mu.Unlock()
	n.waitReady()
}

// waitReady polls /readyz until the node says it is ready.
func (n *node) waitReady() {
	n.t.Helper()
	testwait.Check(n.t, func() error {
		if code, why := n.readyz(); code != 200 {
			return fmt.Errorf("%s /readyz: %d %s", n.name, code, why)
		}
		return nil
	})
}

func (n *node) readyz() (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + n.addr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func (n *node) kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.up {
		return
	}
	if n.stopped {
		_ = n.cmd.Process.Signal(syscall.SIGCONT)
	}
	_ = n.cmd.Process.Kill()
	_ = n.cmd.Wait()
	n.up, n.stopped = false, false
}

func (n *node) signal(sig syscall.Signal) {
	n.mu.Lock()
	defer n.mu.Unlock()
	_ = n.cmd.Process.Signal(sig)
	n.stopped = sig == syscall.SIGSTOP
}

// serving reports whether the node runs and is not stopped.
func (n *node) serving() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.up && !n.stopped
}

// answer is one publish attempt through the API and what it was told.
type answer struct {
	writer  int
	keyed   bool
	node    string
	topic   string
	data    string
	status  int // 0: no answer (the connection failed or the client gave up)
	seq     uint64
	epoch   string
	message string
}

// publisher sends a writer's messages through the nodes' publish API.
type publisher struct {
	http  *http.Client
	token string
}

func newPublisher() *publisher {
	tok, _ := auth.Issue([]byte(secret), "backend", []string{protocol.PermPublish}, 24*time.Hour)
	return &publisher{http: &http.Client{Timeout: 10 * time.Second}, token: tok}
}

func (p *publisher) publish(n *node, topic, data, key string) answer {
	channel, user, _ := strings.Cut(topic, ":")
	body := fmt.Sprintf(`{"channel":%q,"user_id":%q,"data":%s`, channel, user, data)
	if key != "" {
		body += fmt.Sprintf(`,"idempotency_key":%q`, key)
	}
	body += "}"
	a := answer{node: n.name, topic: topic, data: data}
	req, _ := http.NewRequest("POST", "http://"+n.addr+"/api/v1/publish", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := p.http.Do(req)
	if err != nil {
		a.message = err.Error()
		return a
	}
	defer resp.Body.Close()
	a.status = resp.StatusCode
	var v struct {
		Results []struct {
			Sequence uint64 `json:"sequence"`
			Epoch    string `json:"epoch"`
		} `json:"results"`
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&v)
	if len(v.Results) == 1 {
		a.seq, a.epoch = v.Results[0].Sequence, v.Results[0].Epoch
	}
	a.message = v.Error.Message
	return a
}

// stored is a message of MC_PRIV as read back.
type stored struct {
	data, epoch string
	seq         uint64
}

// readStream reads every message of the topics' subjects through url,
// oldest first per topic.
func readStream(t testing.TB, url string, topics []string) map[string][]stored {
	t.Helper()
	nc, err := nats.Connect(url, nats.UserInfo(auditor, auditorPassword))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	out := map[string][]stored{}
	for _, topic := range topics {
		channel, user, _ := strings.Cut(topic, ":")
		subj := "mc.priv." + channel + "." + protocol.SubjectToken(user)
		err := testwait.Poll(testwait.Deadline, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st, err := js.Stream(ctx, "MC_PRIV")
			if err != nil {
				return err
			}
			info, err := st.Info(ctx, jetstream.WithSubjectFilter(subj))
			if err != nil {
				return err
			}
			want := int(info.State.Subjects[subj])
			cons, err := js.OrderedConsumer(ctx, "MC_PRIV", jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}})
			if err != nil {
				return err
			}
			var got []stored
			for len(got) < want {
				batch, err := cons.Fetch(want-len(got), jetstream.FetchMaxWait(2*time.Second))
				if err != nil {
					return err
				}
				n := 0
				for m := range batch.Messages() {
					seq, _ := strconv.ParseUint(m.Headers().Get("Mc-Seq"), 10, 64)
					got = append(got, stored{data: string(m.Data()), seq: seq, epoch: m.Headers().Get("Mc-Epoch")})
					n++
				}
				if n == 0 {
					return fmt.Errorf("%s: read %d of %d", topic, len(got), want)
				}
			}
			out[topic] = got
			return nil
		})
		if err != nil {
			t.Fatalf("reading %s back: %v", topic, err)
		}
	}
	return out
}

// position is where a terminal stands on a topic.
type position struct {
	epoch string
	seq   uint64
}

// terminal is a trading terminal of one user: it follows the user's
// private topics on a node, checks every message against what it has
// (no duplicate, no reorder, no gap, no change of run it was not told
// of), and when its connection ends it resumes on another node with since
// and epoch. A roaming terminal also moves on by itself now and then.
type terminal struct {
	t      testing.TB
	user   string
	topics []string // channel:user
	nodes  []*node
	at     int // the node it is on
	roam   bool

	mu        sync.Mutex
	pos       map[string]position
	delivered map[string]map[position]string // topic → position → data
	problems  []string
	resumes   int // resubscribes with since
	declared  int // resumes answered recovered: false
	closes    map[uint16]int
	moves     atomic.Int64 // roaming: ask it to move on
}

func newTerminal(t testing.TB, user string, nodes []*node, at int, roam bool) *terminal {
	return &terminal{t: t, user: user, topics: []string{"orders:" + user, "positions:" + user}, nodes: nodes, at: at, roam: roam,
		pos: map[string]position{}, delivered: map[string]map[position]string{}, closes: map[uint16]int{}}
}

func (tm *terminal) problem(format string, args ...any) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	if len(tm.problems) < 50 {
		tm.problems = append(tm.problems, fmt.Sprintf("%s on %s: ", tm.user, tm.nodes[tm.at].name)+fmt.Sprintf(format, args...))
	}
}

// run keeps the terminal connected until ctx ends.
func (tm *terminal) run(ctx context.Context) {
	tok, _ := auth.Issue([]byte(secret), tm.user, nil, 24*time.Hour)
	for ctx.Err() == nil {
		n := tm.nodes[tm.at]
		if !n.serving() {
			tm.at = (tm.at + 1) % len(tm.nodes)
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond): // look again: a paced reconnect
			}
			continue
		}
		tm.session(ctx, n, tok)
		tm.at = (tm.at + 1) % len(tm.nodes)
	}
}

// session is one connection: subscribe (resuming where the terminal
// stands), then read until it ends, the run ends or the roamer moves on.
func (tm *terminal) session(ctx context.Context, n *node, tok string) {
	c, _, err := wsclient.Dial("ws://"+n.addr+"/ws?token="+tok, wsclient.Options{Buffer: 4096})
	if err != nil {
		return
	}
	defer c.Close()
	if m, err := c.Next(10 * time.Second); err != nil || m.DataMap()["status"] != "success" {
		return
	}
	pending := map[string]bool{}
	for i, topic := range tm.topics {
		channel, _, _ := strings.Cut(topic, ":")
		req := map[string]any{"type": "subscribe", "id": i + 1, "channel": channel}
		tm.mu.Lock()
		if p, ok := tm.pos[topic]; ok && p.seq > 0 {
			req["since"], req["epoch"] = p.seq, p.epoch
		}
		tm.mu.Unlock()
		if err := c.Send(req); err != nil {
			return
		}
		pending[channel] = true
	}
	moves := tm.moves.Load()
	for ctx.Err() == nil {
		if tm.roam && tm.moves.Load() != moves {
			return
		}
		m, err := c.Next(500 * time.Millisecond)
		if err != nil {
			select {
			case <-c.Closed():
				tm.mu.Lock()
				tm.closes[c.CloseCode()]++
				tm.mu.Unlock()
				return
			default:
				continue // quiet: nothing published to this user lately
			}
		}
		var env struct {
			Type     string `json:"type"`
			Channel  string `json:"channel"`
			Epoch    string `json:"epoch"`
			Sequence uint64 `json:"sequence"`
			Snapshot bool   `json:"snapshot"`
			Data     struct {
				Status    string `json:"status"`
				Channel   string `json:"channel"`
				Epoch     string `json:"epoch"`
				Sequence  uint64 `json:"sequence"`
				Recovered *bool  `json:"recovered"`
				Code      string `json:"code"`
				Message   string `json:"message"`
			} `json:"data"`
		}
		if err := json.Unmarshal(m.Raw, &env); err != nil {
			tm.problem("undecodable frame %s", m.Raw)
			continue
		}
		switch env.Type {
		case "subscribe_response":
			tm.answered(env.Data.Channel, env.Data.Epoch, env.Data.Sequence, env.Data.Recovered)
			delete(pending, env.Data.Channel)
		case "error":
			if env.Data.Code != protocol.CodeUnavailable && env.Data.Code != protocol.CodeRateLimited {
				tm.problem("error answer %s", m.Raw)
			}
			return // UNAVAILABLE: the node cannot read the stream now; try another
		case "order_update", "position_update":
			var data json.RawMessage
			_ = json.Unmarshal(m.Raw, &struct {
				Data *json.RawMessage `json:"data"`
			}{&data})
			tm.message(env.Channel+":"+tm.user, position{env.Epoch, env.Sequence}, env.Snapshot, string(data))
		}
	}
}

// answered records a subscribe answer: a resume recovered, or a declared
// loss from which the terminal starts again.
func (tm *terminal) answered(channel, epoch string, seq uint64, recovered *bool) {
	topic := channel + ":" + tm.user
	tm.mu.Lock()
	defer tm.mu.Unlock()
	if recovered != nil {
		tm.resumes++
		if *recovered {
			return
		}
		tm.declared++
	}
	tm.pos[topic] = position{epoch, seq}
}

// message checks one delivered message against the terminal's position.
func (tm *terminal) message(topic string, at position, snapshot bool, data string) {
	tm.mu.Lock()
	p, known := tm.pos[topic]
	switch {
	case snapshot:
		// The state: where the stream stands, not a step of it.
	case !known || p.epoch == "":
		// The first message of a run this terminal had no epoch of.
		if at.seq != p.seq+1 && known {
			tm.mu.Unlock()
			tm.problem("%s: first message %v after position %v", topic, at, p)
			tm.mu.Lock()
		}
	case at.epoch != p.epoch:
		tm.mu.Unlock()
		tm.problem("%s: message of run %s while following %s (not told)", topic, at.epoch, p.epoch)
		tm.mu.Lock()
	case at.seq <= p.seq:
		tm.mu.Unlock()
		tm.problem("%s: %d after %d: duplicate or reordered", topic, at.seq, p.seq)
		tm.mu.Lock()
	case at.seq > p.seq+1:
		tm.mu.Unlock()
		tm.problem("%s: %d after %d: silent gap", topic, at.seq, p.seq)
		tm.mu.Lock()
	}
	if tm.delivered[topic] == nil {
		tm.delivered[topic] = map[position]string{}
	}
	tm.delivered[topic][at] = data
	if !known || at.epoch != p.epoch || at.seq > p.seq {
		tm.pos[topic] = at
	}
	tm.mu.Unlock()
}

// standing returns the terminal's position on topic.
func (tm *terminal) standing(topic string) position {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.pos[topic]
}

// checkStreams checks that the nodes keep all three streams in files with
// the configured replicas (the last values and the bars too, not only the
// private streams), after every fault.
func checkStreams(t testing.TB, url string, replicas int) {
	t.Helper()
	nc, err := nats.Connect(url, nats.UserInfo(auditor, auditorPassword))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	testwait.Check(t, func() error {
		for _, name := range []string{"MC_PRIV", "MC_MD_LAST", "MC_BARS"} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			st, err := js.Stream(ctx, name)
			cancel()
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if c := st.CachedInfo().Config; c.Replicas != replicas || c.Storage != jetstream.FileStorage {
				return fmt.Errorf("%s: %d replicas in %v; want %d in files", name, c.Replicas, c.Storage, replicas)
			}
		}
		return nil
	})
}
