package natstest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marketcast/marketcast/internal/lockedbuf"
	"github.com/marketcast/marketcast/internal/testwait"
)

// Real nats-server processes, for tests of what only processes show: a
// server killed (-9) or stopped (SIGSTOP), a JetStream cluster of three
// with a leader that dies or stalls, a replica that lags. The binary is
// built from the nats-server module go.mod already requires, so the tests
// run the same server version the embedded one is, with nothing to
// install.

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// ServerBinary builds the nats-server binary once per test process and
// returns its path; RemoveBinaries (from TestMain) deletes it.
func ServerBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "marketcast-nats-server-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "nats-server")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/nats-io/nats-server/v2").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("build nats-server: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// RemoveBinaries deletes what ServerBinary built.
func RemoveBinaries() {
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
}

// Proc is one nats-server process.
type Proc struct {
	Name        string
	Port        int
	ClusterPort int
	dir         string
	conf        string
	logs        *lockedbuf.Buffer
	cmd         *exec.Cmd
	stopped     bool
	t           testing.TB
	bin         string
}

// ProcOptions shape a set of processes.
type ProcOptions struct {
	// Auth is an authorization block for every server's config (the
	// nats-server syntax); empty: none. User and Password are what the
	// helpers here connect as then.
	Auth           string
	User, Password string
	// RoutedThrough, when set, runs every route of the last server
	// through proxies the test controls (DelayRoutes makes it a replica
	// that lags).
	RoutedThrough bool
}

// Procs is a single server or a JetStream cluster of real processes.
type Procs struct {
	t        testing.TB
	List     []*Proc
	toLast   *Proxy   // with RoutedThrough: in front of the last server's cluster port
	fromLast []*Proxy // and in front of the others', for the last server's routes
	opts     ProcOptions
}

// StartProcs starts n nats-server processes with JetStream: one server,
// or a cluster of n. They stop (SIGKILL) when the test ends.
func StartProcs(t testing.TB, n int, opts ProcOptions) *Procs {
	t.Helper()
	bin := ServerBinary(t)
	ps := &Procs{t: t, opts: opts}
	for i := range n {
		ps.List = append(ps.List, &Proc{Name: fmt.Sprintf("n%d", i+1), Port: freePort(t), ClusterPort: freePort(t),
			dir: t.TempDir(), logs: &lockedbuf.Buffer{}, t: t, bin: bin})
	}
	if opts.RoutedThrough && n > 1 {
		ps.toLast = NewProxy(t, "127.0.0.1:"+strconv.Itoa(ps.List[n-1].ClusterPort))
		for _, p := range ps.List[:n-1] {
			ps.fromLast = append(ps.fromLast, NewProxy(t, "127.0.0.1:"+strconv.Itoa(p.ClusterPort)))
		}
	}
	for i, p := range ps.List {
		p.conf = ps.config(i)
		p.start()
	}
	t.Cleanup(func() {
		for _, p := range ps.List {
			p.kill()
		}
	})
	ps.WaitJetStream()
	return ps
}

// config writes server i's configuration file.
func (ps *Procs) config(i int) string {
	p := ps.List[i]
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: %s\nlisten: 127.0.0.1:%d\n", p.Name, p.Port)
	fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n}\n", p.dir)
	if len(ps.List) > 1 {
		var routes []string
		advertise := ""
		last := len(ps.List) - 1
		for j, o := range ps.List {
			switch {
			case j == i:
			case ps.toLast != nil && i == last:
				routes = append(routes, "nats-route://"+ps.fromLast[j].Addr())
			case ps.toLast != nil && j == last:
				routes = append(routes, "nats-route://"+ps.toLast.Addr())
			default:
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", o.ClusterPort))
			}
		}
		if ps.toLast != nil && i == last {
			advertise = fmt.Sprintf("  advertise: %q\n", ps.toLast.Addr())
		}
		fmt.Fprintf(&b, "cluster {\n  name: mc\n  listen: 127.0.0.1:%d\n  pool_size: -1\n%s  routes: [%s]\n}\n",
			p.ClusterPort, advertise, strings.Join(routes, ", "))
	}
	if ps.opts.Auth != "" {
		b.WriteString(ps.opts.Auth + "\n")
	}
	path := filepath.Join(p.dir, p.Name+".conf")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		ps.t.Fatal(err)
	}
	return path
}

func (p *Proc) start() {
	p.t.Helper()
	p.cmd = exec.Command(p.bin, "-c", p.conf)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.stopped = false
}

// URL is the server's client URL.
func (p *Proc) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(p.Port) }

// URLs are every server's client URLs, comma-separated (a client's list).
func (ps *Procs) URLs() string {
	var out []string
	for _, p := range ps.List {
		out = append(out, p.URL())
	}
	return strings.Join(out, ",")
}

func (p *Proc) kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	if p.stopped {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	p.cmd = nil
}

// Kill ends the process with SIGKILL.
func (p *Proc) Kill() { p.kill() }

// Stop freezes the process (SIGSTOP): its sockets stay open, nothing
// answers.
func (p *Proc) Stop() {
	_ = p.cmd.Process.Signal(syscall.SIGSTOP)
	p.stopped = true
}

// Cont resumes a stopped process.
func (p *Proc) Cont() {
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	p.stopped = false
}

// Restart starts a killed process again, with its store or, wiped, with
// an empty one.
func (p *Proc) Restart(wipe bool) {
	p.t.Helper()
	p.kill()
	if wipe {
		entries, _ := os.ReadDir(p.dir)
		for _, e := range entries {
			if e.Name() != filepath.Base(p.conf) {
				_ = os.RemoveAll(filepath.Join(p.dir, e.Name()))
			}
		}
	}
	p.start()
}

// Alive reports whether the process runs (stopped or not).
func (p *Proc) Alive() bool { return p.cmd != nil }

// Logs is what the process wrote.
func (p *Proc) Logs() string { return p.logs.String() }

// WaitJetStream waits until every running server's JetStream answers (in a
// cluster: a meta leader is elected).
func (ps *Procs) WaitJetStream() {
	ps.t.Helper()
	for _, p := range ps.List {
		if !p.Alive() || p.stopped {
			continue
		}
		err := testwait.Poll(testwait.Deadline, func() error {
			nc, err := ps.connect(p)
			if err != nil {
				return err
			}
			defer nc.Close()
			msg, err := nc.Request("$JS.API.INFO", nil, 2*time.Second)
			if err != nil {
				return err
			}
			var info struct {
				Error *struct{ Description string } `json:"error"`
			}
			_ = json.Unmarshal(msg.Data, &info)
			if info.Error != nil {
				return fmt.Errorf("%s", info.Error.Description)
			}
			return nil
		})
		if err != nil {
			ps.t.Fatalf("%s: JetStream not ready: %v\n%s", p.Name, err, p.Logs())
		}
	}
}

// DelayRoutes delays every byte on the last server's routes by d, both
// ways (0: none): it lags behind the others (RoutedThrough).
func (ps *Procs) DelayRoutes(d time.Duration) {
	ps.toLast.Delay(d)
	for _, p := range ps.fromLast {
		p.Delay(d)
	}
}

// StreamLeader names the server leading stream, asking through any
// running server ("" when none answers or the stream has no leader).
func (ps *Procs) StreamLeader(stream string) string {
	for _, p := range ps.List {
		if !p.Alive() || p.stopped {
			continue
		}
		nc, err := ps.connect(p)
		if err != nil {
			continue
		}
		msg, err := nc.Request("$JS.API.STREAM.INFO."+stream, nil, 2*time.Second)
		nc.Close()
		if err != nil {
			continue
		}
		var info struct {
			Cluster *struct {
				Leader string `json:"leader"`
			} `json:"cluster"`
		}
		if json.Unmarshal(msg.Data, &info) == nil && info.Cluster != nil {
			return info.Cluster.Leader
		}
	}
	return ""
}

// connect connects to p as the test's user.
func (ps *Procs) connect(p *Proc) (*nats.Conn, error) {
	opts := []nats.Option{nats.Timeout(2 * time.Second)}
	if ps.opts.User != "" {
		opts = append(opts, nats.UserInfo(ps.opts.User, ps.opts.Password))
	}
	return nats.Connect(p.URL(), opts...)
}

// ByName returns the process called name, or nil.
func (ps *Procs) ByName(name string) *Proc {
	for _, p := range ps.List {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// StepDown asks stream's leader to hand over, through server p.
func (ps *Procs) StepDown(ctx context.Context, p *Proc, stream string) error {
	nc, err := ps.connect(p)
	if err != nil {
		return err
	}
	defer nc.Close()
	_, err = nc.RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+stream, nil)
	return err
}
