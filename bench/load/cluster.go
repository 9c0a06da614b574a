package load

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
)

// Cluster is marketcast on NATS: the binary's own NATS server with
// JetStream and Nodes marketcast processes on it, every one a real process
// (pinned with the others to the server's cores when ServerCPUs is set, so
// CPU per delivery compares with one node's). Connections and publishes go
// round-robin over the nodes.
type Cluster struct {
	Bin    string
	Nodes  int
	Config string // YAML for every node

	nats    *process
	natsURL string
	store   string // NATS's JetStream directory, removed at Stop
	nodes   []*Marketcast
	dials   atomic.Int64
	pubs    atomic.Int64
}

func (c *Cluster) Name() string { return "cluster" }

// Start runs NATS, then the nodes.
func (c *Cluster) Start(ctx context.Context) error {
	addr, err := freePort()
	if err != nil {
		return err
	}
	store, err := os.MkdirTemp("", "mcbench-nats")
	if err != nil {
		return err
	}
	c.store = store
	c.natsURL = "nats://" + addr
	// The NATS monitoring port is not enabled; healthy once a node can
	// connect, which the nodes' own health check waits for.
	c.nats, err = startProcess(ctx, c.Bin, []string{"nats", "-listen", addr, "-store", store}, nil, "")
	if err != nil {
		return err
	}
	for i := 0; i < c.Nodes; i++ {
		m := &Marketcast{Bin: c.Bin, Config: c.Config, Env: []string{"MARKETCAST_NATS_URL=" + c.natsURL,
			fmt.Sprintf("MARKETCAST_NODE_NAME=bench%d", i)}}
		if err := m.Start(ctx); err != nil {
			c.Stop()
			return err
		}
		c.nodes = append(c.nodes, m)
	}
	return nil
}

// Stop stops the nodes, then NATS.
func (c *Cluster) Stop() {
	for _, m := range c.nodes {
		if m.proc != nil {
			m.Stop()
		}
	}
	c.nats.stop()
	if c.store != "" {
		os.RemoveAll(c.store)
	}
}

// PID is the first node's; PIDs lists every process for CPU and memory.
func (c *Cluster) PID() int { return c.nodes[0].PID() }

// PIDs lists NATS and every node.
func (c *Cluster) PIDs() []int {
	out := []int{c.nats.cmd.Process.Pid}
	for _, m := range c.nodes {
		if m.proc != nil {
			out = append(out, m.PID())
		}
	}
	return out
}

// Node is the i-th node.
func (c *Cluster) Node(i int) *Marketcast { return c.nodes[i] }

// Kill ends node i with SIGKILL, as a crash would.
func (c *Cluster) Kill(i int) {
	p := c.nodes[i].proc
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
	os.RemoveAll(p.dir)
	c.nodes[i].proc = nil
}

func (c *Cluster) Dial(src, user string, topics []Topic, deflate bool, onData func([]byte)) (*RawConn, error) {
	return c.live(&c.dials).Dial(src, user, topics, deflate, onData)
}

func (c *Cluster) Publish(msgs []Outgoing) error { return c.live(&c.pubs).Publish(msgs) }

// live picks the next node still running, round-robin.
func (c *Cluster) live(counter *atomic.Int64) *Marketcast {
	for {
		if m := c.nodes[int(counter.Add(1)-1)%len(c.nodes)]; m.proc != nil {
			return m
		}
	}
}

func (c *Cluster) Ready() int64 {
	var n int64
	for _, m := range c.nodes {
		n += m.Ready()
	}
	return n
}

func (c *Cluster) Endpoint() (string, string) { return c.nodes[0].Endpoint() }

// NATSURL is the cluster's NATS server, for a collector to publish to.
func (c *Cluster) NATSURL() string { return c.natsURL }

// NATSPID is the NATS server's process.
func (c *Cluster) NATSPID() int { return c.nats.cmd.Process.Pid }
