package load

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/marketcast/marketcast/internal/freeport"
)

// Target is a server under test, run as a real process.
type Target interface {
	Name() string
	// Start launches the server and waits until it answers.
	Start(ctx context.Context) error
	Stop()
	PID() int
	// Dial opens a connection from source IP src, authenticates it and
	// subscribes it to channels (each a market symbol for marketcast, a
	// channel name for Centrifugo). onData sees every data message.
	Dial(src string, user string, topics []Topic, deflate bool, onData func([]byte)) (*RawConn, error)
	// Publish sends messages through the server's HTTP API.
	Publish(msgs []Outgoing) error
	// Ready reports how many subscriptions the server confirmed.
	Ready() int64
	// Endpoint is the address and secret a worker process needs to dial.
	Endpoint() (addr, secret string)
}

// Attach returns a dial-only target for a server another process started:
// load-generator workers use it to open their share of connections.
func Attach(kind, addr, secret string) (Target, error) {
	switch kind {
	case "marketcast":
		return &Marketcast{addr: addr, secret: secret}, nil
	case "centrifugo", "centrifugo-tuned":
		return &Centrifugo{addr: addr, secret: secret}, nil
	}
	return nil, fmt.Errorf("unknown target %q", kind)
}

// Topic is one subscription: a channel and an id (symbol or user).
type Topic struct{ Channel, ID string }

// Outgoing is one message to publish; Data is a JSON object.
type Outgoing struct {
	Topic Topic
	Data  []byte
}

// freePort is a free loopback address for a server under test (see
// internal/freeport).
func freePort() (string, error) { return freeport.Get() }

// ServerCPUs, when > 0, runs the server under test on CPUs 0 to
// ServerCPUs-1 alone (taskset) with GOMAXPROCS=ServerCPUs; the load
// generator keeps the others.
var ServerCPUs = 0

// process runs a server binary and waits for a health URL.
type process struct {
	cmd *exec.Cmd
	dir string
}

func startProcess(ctx context.Context, bin string, args, env []string, health string) (*process, error) {
	dir, err := os.MkdirTemp("", "mcbench")
	if err != nil {
		return nil, err
	}
	if abs, err := filepath.Abs(bin); err == nil && !strings.Contains(filepath.Base(bin), string(filepath.Separator)) {
		bin = abs
	}
	var cmd *exec.Cmd
	if ServerCPUs > 0 {
		// The server gets cores of its own so its CPU time and latency are
		// not mixed with the load generator's.
		cpus := "0"
		if ServerCPUs > 1 {
			cpus = "0-" + strconv.Itoa(ServerCPUs-1)
		}
		cmd = exec.CommandContext(ctx, "taskset", append([]string{"-c", cpus, bin}, args...)...)
		env = append(env, "GOMAXPROCS="+strconv.Itoa(ServerCPUs))
	} else {
		cmd = exec.CommandContext(ctx, bin, args...)
	}
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = dir
	logf, _ := os.Create(filepath.Join(dir, "server.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &process{cmd: cmd, dir: dir}
	if health == "" {
		time.Sleep(300 * time.Millisecond) // no health URL: give it a moment
		return p, nil
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(health)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return p, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.stop()
	log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
	return nil, fmt.Errorf("%s did not become healthy:\n%s", bin, log)
}

func (p *process) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
	os.RemoveAll(p.dir)
}

// httpClient keeps many idle connections so publishers reuse them.
var httpClient = &http.Client{
	Timeout: 30 * time.Second,
	// Self-signed certificates of -tls runs: the load generator measures
	// the server, not its certificate.
	Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec
}

func post(url string, header http.Header, body []byte) error {
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header = header
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("publish: %d %s", resp.StatusCode, b)
	}
	if bytes.Contains(b, []byte(`"error"`)) {
		return fmt.Errorf("publish: %s", b)
	}
	return nil
}

// counter is a shared subscription-confirmation count.
type counter struct{ n atomic.Int64 }

func (c *counter) Ready() int64 { return c.n.Load() }
