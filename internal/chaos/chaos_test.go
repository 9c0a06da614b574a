// Package chaos runs marketcast's cluster under faults, as real processes:
// nats-server processes (one, or a JetStream cluster of three with R3),
// three marketcast binaries, writers publishing through every node with and
// without idempotency keys, terminals on every node and roaming ones that
// resume elsewhere. Nodes and NATS servers are killed (-9), stopped
// (SIGSTOP) and restarted. At the end the stream is read back and every
// answer and every delivery is checked against it: no acknowledged publish
// lost, none stored twice, none reordered, no silent gap, every 503 not
// stored, every 200 stored where it said.
//
// The short form runs in the default suite (make test); the long form,
// more rounds of every fault, runs with MARKETCAST_SOAK=1 (make chaos) and
// prints the figures docs/CLUSTER.md quotes. Nothing here measures time
// for a verdict: the steps wait for conditions (answers counted, nodes
// ready, a leader elected), and the durations logged are for the report.
package chaos

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/marketcast/marketcast/engine/natsbroker/natstest"
	"github.com/marketcast/marketcast/internal/natsperm"
	"github.com/marketcast/marketcast/internal/testlane"
	"github.com/marketcast/marketcast/internal/testwait"
)

// run is one topology under faults.
type run struct {
	t        *testing.T
	nats     *natstest.Procs
	nodes    []*node
	users    []string
	replicas int

	mu      sync.Mutex
	answers []answer
	steps   []*step

	stop      chan struct{}
	writers   sync.WaitGroup
	terminals []*terminal
	cancel    context.CancelFunc
	termWG    sync.WaitGroup
}

// step is one fault as the report shows it.
type step struct {
	name           string
	from, reverted time.Time
	during         map[int]int // answers by status while the fault lasted
	ready          time.Duration
	firstOK        time.Duration // after the revert, the first 200 through every serving node
}

// Writers: half send an idempotency key and retry elsewhere until stored;
// half send once, with no key.
const writers = 6

func newRun(t *testing.T, natsServers, replicas int) *run {
	t.Helper()
	// The nodes run with a node's least privilege; the test reads the
	// stream back as an auditor.
	block := natsperm.Block("MC_PRIV", natsperm.User{Name: natsperm.Node, Password: nodePassword, Role: natsperm.Node},
		natsperm.User{Name: auditor, Password: auditorPassword})
	r := &run{t: t, nats: natstest.StartProcs(t, natsServers, natstest.ProcOptions{Auth: block, User: auditor, Password: auditorPassword}),
		users: []string{"u0", "u1", "u2"}, stop: make(chan struct{}), replicas: replicas}
	for i := range 3 {
		// Each node prefers another server first.
		var urls []string
		for j := range natsServers {
			urls = append(urls, r.nats.List[(i+j)%natsServers].URL())
		}
		r.nodes = append(r.nodes, startNode(t, fmt.Sprintf("n%d", i+1), strings.Join(urls, ","), replicas))
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	for i := range r.nodes {
		for _, u := range r.users {
			r.terminals = append(r.terminals, newTerminal(t, u, r.nodes, i, false))
		}
	}
	for _, u := range r.users {
		r.terminals = append(r.terminals, newTerminal(t, u, r.nodes, 0, true))
	}
	for _, tm := range r.terminals {
		r.termWG.Add(1)
		go func() { defer r.termWG.Done(); tm.run(ctx) }()
	}
	t.Cleanup(func() { cancel(); r.termWG.Wait() })
	for i := range writers {
		r.writers.Add(1)
		go r.write(i, i < writers/2)
	}
	return r
}

func (r *run) topics() []string {
	var out []string
	for _, u := range r.users {
		out = append(out, "orders:"+u, "positions:"+u)
	}
	return out
}

// write publishes until the run stops, through every node in turn.
func (r *run) write(w int, keyed bool) {
	defer r.writers.Done()
	p := newPublisher()
	topics := r.topics()
	pace := time.NewTicker(40 * time.Millisecond)
	defer pace.Stop()
	for j := 0; ; j++ {
		select {
		case <-r.stop:
			return
		case <-pace.C:
		}
		topic := topics[(w+j)%len(topics)]
		data := fmt.Sprintf(`{"w":%d,"n":%d}`, w, j)
		key := ""
		if keyed {
			key = fmt.Sprintf("w%d-%d", w, j)
		}
		for attempt := 0; ; attempt++ {
			n := r.nodes[(w+j+attempt)%len(r.nodes)]
			a := p.publish(n, topic, data, key)
			a.writer, a.keyed = w, keyed
			r.record(a)
			if a.status == 200 || !keyed {
				break
			}
			// A keyed writer tries the next node, as a back end does, until
			// the message is stored; it stops trying only when the run ends
			// (then what it sent is stored at most once).
			select {
			case <-r.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

func (r *run) record(a answer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answers = append(r.answers, a)
	if len(r.steps) > 0 {
		if s := r.steps[len(r.steps)-1]; s.reverted.IsZero() {
			s.during[a.status]++
		}
	}
}

// count is how many answers were recorded, and how many of them 200.
func (r *run) count() (all, ok int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.answers {
		if a.status == 200 {
			ok++
		}
	}
	return len(r.answers), ok
}

// flow waits until n more publishes are stored.
func (r *run) flow(n int) {
	r.t.Helper()
	_, ok := r.count()
	testwait.For(r.t, fmt.Sprintf("%d more publishes stored", n), func() bool { _, now := r.count(); return now >= ok+n })
}

// answered waits until n more publishes are answered, whatever the answer.
func (r *run) answered(n int) {
	r.t.Helper()
	all, _ := r.count()
	testwait.For(r.t, fmt.Sprintf("%d more publishes answered", n), func() bool { now, _ := r.count(); return now >= all+n })
}

// fault runs one fault: inject, hold it until hold says enough, revert,
// and wait for every node to be ready and to store again.
func (r *run) fault(name string, inject func(), hold func(), revert func()) {
	r.t.Helper()
	s := &step{name: name, during: map[int]int{}}
	r.mu.Lock()
	r.steps = append(r.steps, s)
	r.mu.Unlock()
	s.from = time.Now()
	inject()
	hold()
	revert()
	r.mu.Lock()
	s.reverted = time.Now()
	r.mu.Unlock()
	for _, n := range r.nodes {
		n.waitReady()
	}
	s.ready = time.Since(s.reverted)
	// The first 200 through every node after the revert.
	testwait.For(r.t, "a publish stored through every node after "+name, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		seen := map[string]bool{}
		for i := len(r.answers) - 1; i >= 0; i-- {
			a := r.answers[i]
			if a.status == 200 {
				seen[a.node] = true
			}
			if len(seen) == len(r.nodes) {
				return true
			}
		}
		return false
	})
	s.firstOK = time.Since(s.reverted)
}

// finish stops the writers, lets every terminal catch up with the stream,
// and checks everything against it.
func (r *run) finish() summary {
	r.t.Helper()
	close(r.stop)
	r.writers.Wait()
	for _, n := range r.nodes {
		n.waitReady()
	}
	leader := r.nats.List[0]
	for _, p := range r.nats.List {
		if p.Alive() {
			leader = p
			break
		}
	}
	if name := r.nats.StreamLeader("MC_PRIV"); name != "" {
		leader = r.nats.ByName(name)
	}
	stream := readStream(r.t, leader.URL(), r.topics())
	checkStreams(r.t, leader.URL(), r.replicas)
	heads := map[string]position{}
	for topic, msgs := range stream {
		if len(msgs) > 0 {
			heads[topic] = position{msgs[len(msgs)-1].epoch, msgs[len(msgs)-1].seq}
		}
	}
	testwait.Check(r.t, func() error { // every terminal reaches the head
		for _, tm := range r.terminals {
			for _, topic := range tm.topics {
				if got := tm.standing(topic); got != heads[topic] {
					return fmt.Errorf("%s terminal of %s (roaming %v) at %v of %s; head %v", tm.nodes[tm.at].name, tm.user, tm.roam, got, topic, heads[topic])
				}
			}
		}
		return nil
	})
	r.cancel()
	r.termWG.Wait()
	return r.check(stream)
}

// summary is what a run counted.
type summary struct {
	answers, stored, notStored, unknown, noAnswer, refusedConn int
	keyedMessages, keyedStored                                 int
	resumes, declared                                          int
	closes                                                     map[uint16]int
	steps                                                      []*step
}

func (r *run) check(stream map[string][]stored) summary {
	t := r.t
	s := summary{closes: map[uint16]int{}, steps: r.steps}
	where := map[string]stored{} // data → where stored
	for topic, msgs := range stream {
		for i, m := range msgs {
			if i > 0 && m.epoch != msgs[0].epoch {
				t.Errorf("%s: a second run %s at message %d (no store was lost)", topic, m.epoch, i)
			}
			if m.seq != uint64(i+1) {
				t.Errorf("%s: message %d has sequence %d: stored out of order or twice", topic, i, m.seq)
			}
			if prev, dup := where[m.data]; dup {
				t.Errorf("%s stored twice: %v and %v", m.data, prev, m)
			}
			where[m.data] = m
		}
	}
	topicOf := map[string]string{}
	for topic, msgs := range stream {
		for _, m := range msgs {
			topicOf[m.data] = topic
		}
	}
	keyed := map[string]bool{} // data of keyed messages → stored by some 200
	for _, a := range r.answers {
		s.answers++
		m, isStored := where[a.data]
		switch {
		case a.status == 200:
			s.stored++
			if !isStored || topicOf[a.data] != a.topic || m.seq != a.seq || m.epoch != a.epoch {
				t.Errorf("lost: %s to %s answered 200 at %d of %s via %s; stored %v (%v)", a.data, a.topic, a.seq, a.epoch, a.node, m, isStored)
			}
		case a.status == 503:
			s.notStored++
			if !a.keyed && isStored {
				t.Errorf("%s to %s answered 503 via %s (%s) but stored at %v", a.data, a.topic, a.node, a.message, m)
			}
		case a.status == 504:
			s.unknown++
		case a.status == 0 && strings.Contains(a.message, "connection refused"):
			s.refusedConn++
			if !a.keyed && isStored {
				t.Errorf("%s refused by a node that was down, yet stored", a.data)
			}
		case a.status == 0:
			s.noAnswer++
		default:
			t.Errorf("%s to %s via %s: %d %s", a.data, a.topic, a.node, a.status, a.message)
		}
		if a.keyed {
			keyed[a.data] = keyed[a.data] || a.status == 200
		}
	}
	s.keyedMessages = len(keyed)
	for data, ok := range keyed {
		if ok {
			s.keyedStored++
			if _, stored := where[data]; !stored {
				t.Errorf("keyed %s answered 200, not stored", data)
			}
		}
	}
	for _, tm := range r.terminals {
		for _, p := range tm.problems {
			t.Errorf("terminal: %s", p)
		}
		for topic, got := range tm.delivered {
			for at, data := range got {
				if m, ok := where[data]; !ok || m.epoch != at.epoch || m.seq != at.seq || topicOf[data] != topic {
					t.Errorf("terminal of %s got %s at %v of %s; the stream has %v", tm.user, data, at, topic, m)
				}
			}
		}
		s.resumes += tm.resumes
		s.declared += tm.declared
		for code, n := range tm.closes {
			s.closes[code] += n
		}
	}
	if s.declared != 0 {
		t.Errorf("%d resumes answered recovered: false; no store was lost, so every resume must be recovered", s.declared)
	}
	return s
}

func (s summary) log(t *testing.T, title string) {
	t.Logf("%s: %d publish answers: %d stored (200), %d not stored (503), %d outcome unknown (504), %d no answer (node stopped), "+
		"%d refused (node down); keyed messages %d, all stored %d; resumes %d (recovered false %d); closes %v",
		title, s.answers, s.stored, s.notStored, s.unknown, s.noAnswer, s.refusedConn, s.keyedMessages, s.keyedStored, s.resumes, s.declared, s.closes)
	for _, st := range s.steps {
		codes := make([]int, 0, len(st.during))
		for c := range st.during {
			codes = append(codes, c)
		}
		sort.Ints(codes)
		var parts []string
		for _, c := range codes {
			parts = append(parts, fmt.Sprintf("%d×%d", st.during[c], c))
		}
		t.Logf("  %-40s held %6.1fs; answers meanwhile %s; all nodes ready %.2fs after, stored through every node %.2fs after",
			st.name, st.reverted.Sub(st.from).Seconds(), strings.Join(parts, " "), st.ready.Seconds(), st.firstOK.Seconds())
	}
}

// Faults.

func (r *run) killNode(i int) {
	n := r.nodes[i]
	r.fault("kill -9 node "+n.name+", restart", func() { n.kill() }, func() { r.answered(20) }, func() { n.start() })
}

func (r *run) stopNode(i int) {
	n := r.nodes[i]
	r.fault("SIGSTOP node "+n.name+", SIGCONT", func() { n.signal(syscall.SIGSTOP) }, func() { r.answered(20) },
		func() { n.signal(syscall.SIGCONT) })
}

// stopNATS freezes the one NATS server: every node must say it cannot
// publish while it lasts.
func (r *run) stopNATS(p *natstest.Proc, what string) {
	r.fault("SIGSTOP "+what+", SIGCONT", p.Stop, func() {
		r.answered(20)
		// Every node that talks to it says it cannot publish.
		testwait.For(r.t, "every node not ready with its NATS frozen", func() bool {
			for _, n := range r.nodes {
				if code, _ := n.readyz(); code == 200 {
					return false
				}
			}
			return true
		})
	}, p.Cont)
}

func (r *run) killNATS(p *natstest.Proc, what string) {
	r.fault("kill -9 "+what+", restart with its store", p.Kill, func() { r.answered(20) }, func() {
		p.Restart(false)
		r.nats.WaitJetStream()
	})
}

// stallLeader stops the stream's leader until another is elected.
func (r *run) stallLeader() {
	leader := r.nats.ByName(r.nats.StreamLeader("MC_PRIV"))
	if leader == nil {
		r.t.Fatal("no stream leader")
	}
	r.fault("SIGSTOP stream leader "+leader.Name+" until a new one", leader.Stop, func() {
		testwait.For(r.t, "another stream leader", func() bool {
			l := r.nats.StreamLeader("MC_PRIV")
			return l != "" && l != leader.Name
		})
		r.answered(20)
	}, leader.Cont)
}

// roam makes every roaming terminal move to the next node.
func (r *run) roam() {
	for _, tm := range r.terminals {
		if tm.roam {
			tm.moves.Add(1)
		}
	}
}

// scenario is one round of faults of a topology.
func single(r *run, rounds int) {
	for round := range rounds {
		r.flow(20)
		r.roam()
		r.killNode(round % 3)
		r.roam()
		r.stopNATS(r.nats.List[0], "the NATS server")
		r.roam()
		r.killNATS(r.nats.List[0], "the NATS server")
		r.roam()
		r.stopNode((round + 2) % 3)
		r.flow(20)
	}
}

func cluster3(r *run, rounds int) {
	for round := range rounds {
		r.flow(20)
		r.roam()
		r.stallLeader()
		r.roam()
		p := r.nats.List[round%3]
		r.killNATS(p, "NATS server "+p.Name)
		r.roam()
		r.killNode((round + 1) % 3)
		r.flow(20)
	}
}

// TestChaos is the short form: one round of every fault on one NATS
// server, then on a JetStream cluster of three with R3.
func TestChaos(t *testing.T) {
	testlane.MultiProcess(t)
	t.Run("one NATS server", func(t *testing.T) {
		r := newRun(t, 1, 1)
		single(r, 1)
		r.finish().log(t, "one NATS server")
	})
	t.Run("JetStream cluster of three, R3", func(t *testing.T) {
		r := newRun(t, 3, 3)
		cluster3(r, 1)
		r.finish().log(t, "cluster of three")
	})
}

// TestChaosLong is the long form (make chaos): five rounds of each.
func TestChaosLong(t *testing.T) {
	testlane.Soak(t)
	t.Run("one NATS server", func(t *testing.T) {
		r := newRun(t, 1, 1)
		single(r, 5)
		r.finish().log(t, "one NATS server, 5 rounds")
	})
	t.Run("JetStream cluster of three, R3", func(t *testing.T) {
		r := newRun(t, 3, 3)
		cluster3(r, 5)
		r.finish().log(t, "cluster of three, 5 rounds")
	})
}
